"""State shared by gateway replicas: per-key limits, the brute-force guard, stored tokens.

``base`` says what each one offers; ``memory`` is one process's view, ``redis_backend`` the
view every replica shares, ``fallback`` what happens while Redis is unreachable, and
``assembly`` builds the set a configuration asks for.
"""
