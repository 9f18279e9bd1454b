"""What the gateway and the engine share, so neither imports the other.

Both processes speak the OpenAI wire format and both can face another machine from inside a
TEE, so a few facts have one definition here: the OpenAI error shape (``errors``), the wire
limits both sides validate with (``wire_limits``), the in-memory TLS identity (``tls``), and
the TEE evidence a key set is bound to (``tee``). Nothing here knows about either package.
"""
