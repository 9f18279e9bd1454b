"""A reusable ``llama_batch``: tokens of many sequences submitted in one ``llama_decode``."""

from __future__ import annotations

from typing import Any

import llama_cpp


class DecodeBatch:
    """Owns one heap-allocated ``llama_batch`` of ``capacity`` tokens, one sequence each."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._batch: Any = llama_cpp.llama_batch_init(capacity, 0, 1)
        self.size = 0

    def clear(self) -> None:
        self.size = 0

    @property
    def room(self) -> int:
        return self.capacity - self.size

    def add(self, token: int, pos: int, seq_id: int, *, want_logits: bool) -> int:
        """Append one token; returns its index (the index to sample from when logits are on)."""
        i = self.size
        if i >= self.capacity:
            raise IndexError("decode batch is full")
        b = self._batch
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq_id
        b.logits[i] = want_logits
        self.size = i + 1
        return i

    def submit(self) -> Any:
        """The ``llama_batch`` value to pass to ``llama_decode``, sized to what was added."""
        self._batch.n_tokens = self.size
        return self._batch

    def close(self) -> None:
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
