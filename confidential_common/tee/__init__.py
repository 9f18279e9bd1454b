"""Hardware evidence and the key set it binds: configfs-tsm (TDX, SEV-SNP) or a labelled
simulation, quote parsing, and the evidence document a verifier fetches."""
