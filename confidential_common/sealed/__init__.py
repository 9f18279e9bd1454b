"""Sealed model weights: the encrypted file format and opening it in memory."""
