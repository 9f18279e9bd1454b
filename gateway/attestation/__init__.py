"""Attestation: hardware evidence, the key it binds, signed response tokens, verification."""
