"""Hardware evidence and the key set it binds: configfs-tsm (TDX, SEV-SNP), the Confidential
Containers Attestation Agent in a Kata guest, or a labelled simulation; quote parsing, and the
evidence document a verifier fetches."""
