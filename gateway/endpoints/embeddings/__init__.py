"""``POST /v1/embeddings``: vectors for texts (or token ids), from embedding models."""
