"""One replica's slices of its keys' limits (leases): what it may still use without asking
Redis, and how much to ask for next.

A grant from Redis (``scripts.LEASE``) gives a request what it needs and, while the key is
far from its limit, a slice more: requests and tokens this replica may hand out locally
until the grant's ``deadline`` (``lease_s`` after it was given), and places in flight it
keeps reserved. Most requests then make no round trip at all; the sum across replicas
still never exceeds a limit, because every slice is counted in Redis when it is given.
What a slice did not use is given back when it is retired (a newer grant took its place,
or its deadline passed); places held spare are given back at the deadline too.

Pure bookkeeping: no I/O here, the Redis limiter drives it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

# A slice is only given when it is at least this many requests or places (tokens: this
# many requests' worth): below that a key is near its limit and every request asks Redis.
MIN_SLICE = 16
# The most a slice asks for, in requests: bounds what one replica can hold unused.
MAX_SLICE_REQUESTS = 10_000


@dataclass(eq=False)
class Grant:
    """Requests and tokens Redis counted for this replica under one id.

    ``tokens_used`` holds the reservations of requests still running plus the settled usage
    of those that finished; it is what the grant is settled to when retired.
    """

    id: str
    deadline: float
    requests: int
    tokens: int
    requests_used: int = 0
    tokens_used: int = 0
    retired: bool = False  # its unused part was given back: nothing more is drawn from it

    def has(self, now: float, requests: int, tokens: int) -> bool:
        return (
            not self.retired
            and now < self.deadline
            and self.requests - self.requests_used >= requests
            and self.tokens - self.tokens_used >= tokens
        )

    def take(self, requests: int, tokens: int) -> None:
        self.requests_used += requests
        self.tokens_used += tokens


@dataclass(frozen=True)
class Ask:
    """What one call to Redis asks for: ``need_*`` for the request at hand (0: met
    locally), ``want_*`` with the slice on top (want >= need), ``min_*`` the smallest slice
    worth giving."""

    need_r: int
    want_r: int
    need_t: int
    want_t: int
    min_t: int
    need_p: int
    want_p: int


@dataclass
class KeyLease:
    """One key on this replica: its current grant, its places, and its recent demand."""

    kid: str
    lease_s: float
    grant: Grant | None = None
    places: int = 0  # reserved in Redis for this replica (the truth ``resync`` writes back)
    in_use: int = 0
    spare_until: float = 0.0  # places above in_use are kept until then, else given back
    # Set once the call asking Redis for this key's next slice has its answer; None when no
    # such call is out. Requests the lease does not cover wait for it before asking.
    pending: asyncio.Event | None = None
    # Until then the key is near a limit (Redis gave no slice when asked): requests ask for
    # exactly what they need, side by side, instead of waiting for a slice in turn.
    exact_until: float = 0.0
    _period_start: float = 0.0
    _recent_r: int = 0  # requests in the current period
    _recent_t: int = 0
    _last_r: int = 0  # in the period before
    _last_t: int = 0
    _largest_t: int = 0

    def note(self, now: float, requests: int, tokens: int) -> None:
        """Count a request's demand (for sizing the next slice)."""
        if now - self._period_start >= self.lease_s:
            gone = now - self._period_start >= 2 * self.lease_s
            self._last_r, self._last_t = (0, 0) if gone else (self._recent_r, self._recent_t)
            self._recent_r = self._recent_t = 0
            self._period_start = now
        self._recent_r += requests
        self._recent_t += tokens
        self._largest_t = max(self._largest_t, tokens)

    def local(self, now: float, requests: int, tokens: int) -> bool:
        """Whether the current grant covers a request (then it has been drawn on)."""
        if requests == 0 and tokens == 0:
            return True
        grant = self.grant
        if grant is None or not grant.has(now, requests, tokens):
            return False
        grant.take(requests, tokens)
        return True

    def place(self) -> bool:
        if self.in_use < self.places:
            self.in_use += 1
            return True
        return False

    def ask(self, need_r: int, need_t: int, need_p: int, *, exact: bool = False) -> Ask:
        """A call for what is missing plus, when leasing (and not ``exact``), twice the
        recent demand."""
        if self.lease_s <= 0 or exact:
            return Ask(need_r, need_r, need_t, need_t, 0, need_p, need_p)
        recent_r = self._recent_r + self._last_r
        recent_t = self._recent_t + self._last_t
        return Ask(
            need_r=need_r,
            want_r=need_r + min(MAX_SLICE_REQUESTS, 2 * recent_r) if need_r or recent_r else 0,
            need_t=need_t,
            want_t=need_t + min(MAX_SLICE_REQUESTS * self._largest_t, 2 * recent_t),
            min_t=MIN_SLICE * max(need_t, self._largest_t, 1),
            need_p=need_p,
            want_p=need_p + max(2 * self.in_use, MIN_SLICE) if need_p else 0,
        )

    def prefetch(self, now: float) -> bool:
        """Whether the current grant runs low (or out of time) and a refill should start."""
        grant = self.grant
        if self.pending is not None or self.lease_s <= 0 or grant is None or grant.retired:
            return False
        if now >= grant.deadline - self.lease_s / 4:
            return True
        low_r = grant.requests and grant.requests - grant.requests_used < grant.requests / 2
        low_t = grant.tokens and grant.tokens - grant.tokens_used < grant.tokens / 2
        return bool(low_r or low_t)

    def granted(self, grant: Grant, needed_r: int, needed_t: int) -> Grant | None:
        """Take in a new grant; the one it replaces (to settle), if any.

        A grant with a surplus becomes the current one; one without is the request's alone.
        """
        if grant.requests <= needed_r and grant.tokens <= needed_t:
            grant.retired = True  # nothing to draw on: settled on its own as it finishes
            return None
        previous, self.grant = self.grant, grant
        if previous is not None and not previous.retired:
            previous.retired = True
            return previous
        return None

    def expire(self, now: float) -> Grant | None:
        """Retire the current grant once past its deadline; it, to settle, if so."""
        grant = self.grant
        if grant is None or grant.retired or now < grant.deadline:
            return None
        grant.retired = True
        self.grant = None
        return grant

    def spare(self, now: float) -> int:
        """Places to give back now: those held above what is in use, once none are meant
        to be kept spare."""
        if now < self.spare_until or self.places <= self.in_use:
            return 0
        spare = self.places - self.in_use
        self.places = self.in_use
        return spare
