"""The confidential gateway: the OpenAI-compatible service clients talk to."""

__version__ = "0.1.0"
