"""The llama.cpp engine process: continuous batching over one GGUF model."""
