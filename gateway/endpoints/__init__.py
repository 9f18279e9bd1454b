"""One package per OpenAI endpoint: its wire models (``protocol``) and how it is served."""
