"""Upstreams: the interface (``base``), the router over them (``router``), and one module per
kind (``local_engine``, ``remote``, ``attested_remote``, ``litellm``), each building its router
member from its own config section; ``topology`` holds the table keyed by kind.
"""
