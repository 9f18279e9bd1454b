"""Limits of the OpenAI wire format that the gateway's edge and the engine both enforce.

One definition, so a request the gateway accepts is never refused by the engine behind it
for a limit the gateway did not know (and a client talking to an engine directly meets the
same limits). ``tests/unit/test_wire_contract.py`` checks that both request models use them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

# Choices per request: each one holds an engine slot for the whole generation.
MAX_CHOICES = 8
MAX_STOP_SEQUENCES = 16
# OpenAI's own bound on ``top_logprobs``.
MAX_TOP_LOGPROBS = 20
MAX_SCHEMA_NAME_LENGTH = 64

# ``response_format.json_schema.name``: required, as OpenAI requires it.
SchemaName = Annotated[str, Field(min_length=1, max_length=MAX_SCHEMA_NAME_LENGTH)]
