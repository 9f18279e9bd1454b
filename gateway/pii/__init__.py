"""In-enclave PII tokenization: detect, replace with placeholders, restore exactly."""
