"""The Redis backend: limits, the brute-force guard and stored tokens shared by replicas.

Key layout (``p`` is ``shared_state.key_prefix``; ``kid`` the first 32 hex digits of
SHA-256 over an API key's name and configured digest; ``rid`` a random id per process):

    p rl:{kid}:chg        ZSET   grant ids scored by time          TTL window (60 s) + lease
    p rl:{kid}:req        HASH   grant id -> requests               TTL window + lease
    p rl:{kid}:tok        HASH   grant id -> tokens                 TTL window + lease
    p rl:{kid}:rt / :tt   STRING requests / tokens in the window    TTL window + lease
    p replicas            SET    replica ids holding places         (pruned when dead)
    p live:{rid}          STRING "1", refreshed by the heartbeat    TTL liveness_ttl_s
    p inflight:{rid}      HASH   kid -> places this replica holds  TTL 1 day (refreshed)
    p af:{cid}            ZSET   failed authentications by time    TTL window
    p af:locked           ZSET   cid scored by the end of its lock  TTL window
    p tok:{sha256(id)}    STRING owner digest + " " + JWS token     TTL attestation.store_ttl_s

``cid`` is an HMAC of the client address (keyed by the Redis password when there is one).
No API key, key name, client address or request content is ever written. Errors that mean
"Redis did not answer" become ``SharedStateUnavailable``; refusals are ``GatewayError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from gateway.config import APIKeyConfig, SharedStateConfig
from gateway.errors import GatewayError
from gateway.shared_state import scripts
from gateway.shared_state.base import (
    WINDOW_S,
    Admission,
    SharedStateUnavailable,
    in_flight_limit,
    plan_reservation,
    rate_limited,
    too_many_failures,
    too_many_in_flight,
)
from gateway.shared_state.batching import ScriptBatcher
from gateway.shared_state.leases import MIN_SLICE, Ask, Grant, KeyLease

PLACES_TTL_MS = 86_400_000
# Finishes of requests whose grant was already settled are settled together this soon after.
SETTLE_DELAY_S = 0.05


def connect(config: SharedStateConfig, password: str | None) -> Redis:
    """A client (and its connection pool) for ``config``; nothing is sent yet."""
    options: dict[str, Any] = {
        "password": password,
        "username": config.username,
        "socket_timeout": config.timeout_s,
        "socket_connect_timeout": config.timeout_s,
        # One retry: a pooled connection that the server closed (a restart) is replaced.
        "retry": Retry(NoBackoff(), 1),
    }
    if config.ca_file is not None:
        options["ssl_ca_certs"] = str(config.ca_file)
    return Redis.from_url(config.url, **options)


class RedisConnection:
    """One replica's client, its scripts and key prefix, shared by every Redis store.

    ``batch`` carries the request path (a start awaited, a finish queued), one round trip
    for every request that starts in the same turn of the event loop.
    """

    def __init__(
        self,
        client: Redis,
        prefix: str,
        *,
        retry_interval_s: float = 1.0,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self._scripts = {name: client.register_script(body) for name, body in scripts.ALL.items()}
        self.batch = ScriptBatcher(client, scripts.ALL, retry_interval_s=retry_interval_s)

    async def run(self, script: str, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        try:
            answer = await self._scripts[script](keys=list(keys), args=list(args))
        except (RedisError, OSError, TimeoutError) as exc:
            raise await self._lost(exc) from None
        if self.batch.on_answer is not None:
            self.batch.on_answer()
        return answer

    async def get(self, key: str) -> bytes | str | None:
        try:
            value: bytes | str | None = await self.client.get(key)
        except (RedisError, OSError, TimeoutError) as exc:
            raise await self._lost(exc) from None
        if self.batch.on_answer is not None:
            self.batch.on_answer()
        return value

    async def _lost(self, error: BaseException) -> SharedStateUnavailable:
        # Every pooled connection is suspect now (a restarted server closed them all):
        # drop them, so the next command after recovery starts on a fresh one.
        with contextlib.suppress(RedisError, OSError):
            await self.client.connection_pool.disconnect()
        return SharedStateUnavailable(type(error).__name__)

    async def close(self) -> None:
        await self.batch.close()
        await self.client.aclose()


def key_id(key: APIKeyConfig) -> str:
    """A key's name in the store: unguessable (its digest is in it) and not reversible."""
    material = f"cg-limits\0{key.name}\0{key.sha256}".encode()
    return hashlib.sha256(material).hexdigest()[:32]


def _now_arg(now: float) -> str:
    return repr(now)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _limit(key: APIKeyConfig, kind: bytes | str) -> int:
    limit = key.requests_per_minute if _text(kind) == "requests" else key.tokens_per_minute
    assert limit is not None
    return limit


class RedisRateLimiter:
    """``Limiter`` over Redis: one view of every key's usage for all replicas.

    Requests draw on this replica's lease of their key (``leases``) and make no round trip
    while it lasts; a request the lease does not cover waits for one grant (``LEASE``) that
    covers it, which refills the lease too. Near a limit grants are exact, so every request
    there is decided by Redis. Places in flight are counted per replica under that
    replica's liveness key, so a replica that dies (no heartbeat for ``liveness_ttl_s``)
    stops holding any; this replica's own count of the places it holds is the truth
    ``resync`` writes back after an outage.
    """

    def __init__(
        self,
        redis: RedisConnection,
        *,
        default_max_in_flight: int = 64,
        liveness_ttl_s: float = 15.0,
        lease_s: float = 1.0,
        replica_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._default_in_flight = default_max_in_flight
        self._liveness_ms = int(liveness_ttl_s * 1000)
        self._window_ms = int(WINDOW_S * 1000) + 1000
        self._lease_s = lease_s
        self.replica_id = replica_id or secrets.token_hex(8)
        self._now = clock
        self._ids = itertools.count()
        self._leases: dict[tuple[str, str], KeyLease] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._refills: set[asyncio.Task[None]] = set()
        # Retired grants whose usage changed since they were settled, settled together soon.
        self._unsettled: dict[str, tuple[KeyLease, Grant]] = {}
        self._settle_timer: asyncio.TimerHandle | None = None

    def _lease(self, key: APIKeyConfig) -> KeyLease:
        known = self._leases.get((key.name, key.sha256))
        if known is None:
            known = self._leases[(key.name, key.sha256)] = KeyLease(key_id(key), self._lease_s)
        return known

    def _grant_keys(self, kid: str) -> list[str]:
        return [
            f"{self._redis.prefix}rl:{kid}:{part}" for part in ("chg", "req", "tok", "rt", "tt")
        ]

    def _member(self) -> str:
        return f"{self.replica_id}:{next(self._ids)}"

    def _ask_redis(
        self,
        key: APIKeyConfig,
        lease: KeyLease,
        ask: Ask,
        now: float,
        grant_id: str,
        *,
        places: int,
        on_result: Callable[[Any, bool], None],
        admit: bool = False,
    ) -> Awaitable[Any]:
        rpm, tpm = key.requests_per_minute, key.tokens_per_minute
        prefix = self._redis.prefix
        return self._redis.batch.call(
            "lease",
            [
                *self._grant_keys(lease.kid),
                f"{prefix}replicas",
                f"{prefix}inflight:{self.replica_id}",
                self._live_key(),
            ],
            [
                _now_arg(now),
                WINDOW_S,
                -1 if rpm is None else rpm,
                -1 if tpm is None else tpm,
                grant_id,
                self._window_ms,
                self._lease_s,
                ask.need_r,
                ask.want_r,
                MIN_SLICE,
                ask.need_t,
                ask.want_t,
                ask.min_t,
                places,
                ask.need_p,
                ask.want_p,
                MIN_SLICE,
                self.replica_id,
                lease.kid,
                self._liveness_ms,
                prefix,
                PLACES_TTL_MS,
                "1" if admit else "0",
            ],
            on_result=on_result,
        )

    def _granted(
        self, lease: KeyLease, now: float, grant_id: str, result: Any, ask: Ask, ok: bool
    ) -> Grant | None:
        """Take in the grant in ``result``, drawn on for what ``ask`` needed (its tokens only
        when ``ok``), and the places it gives; the grant, if it counted anything."""
        r, t = ask.need_r, ask.need_t if ok else 0
        granted_r, granted_t, granted_p = int(result[3]), int(result[4]), int(result[5])
        lease.places += granted_p
        if granted_p > ask.need_p:
            lease.spare_until = now + self._lease_s  # a slice of places: kept a while
        if ask.want_r > ask.need_r or ask.want_t > ask.need_t:
            slice_given = granted_r > ask.need_r or granted_t > ask.need_t
            lease.exact_until = 0.0 if slice_given else now + self._lease_s
        if granted_r == 0 and granted_t == 0:
            return None
        grant = Grant(grant_id, now + self._lease_s, granted_r, granted_t)
        grant.take(min(r, granted_r), min(t, granted_t))
        replaced = lease.granted(grant, r, t)
        if replaced is not None:
            self._settle(lease, replaced)
        if lease.grant is grant or lease.spare_until > now:
            self._tick_later(lease)
        return grant

    async def _from_redis(
        self,
        key: APIKeyConfig,
        lease: KeyLease,
        ask: Ask,
        now: float,
        *,
        places: int,
        on_result: Callable[[Grant | None, Any, bool], None],
        admit: bool = False,
        event: asyncio.Event | None = None,
    ) -> Any:
        """One grant for ``ask``; a call that asks for a slice is the key's pending one
        (``event``, when its caller registered it already)."""
        grant_id = self._member()
        slicing = ask.want_r > ask.need_r or ask.want_t > ask.need_t or ask.want_p > ask.need_p
        if slicing and event is None:
            event = lease.pending = asyncio.Event()

        def answered(result: Any, abandoned: bool) -> None:
            ok = int(result[0]) == 1
            on_result(self._granted(lease, now, grant_id, result, ask, ok), result, abandoned)

        try:
            return await self._ask_redis(
                key, lease, ask, now, grant_id, places=places, on_result=answered, admit=admit
            )
        finally:
            if event is not None:
                event.set()
                if lease.pending is event:
                    lease.pending = None

    async def admit(self, key: APIKeyConfig) -> None:
        rpm, tpm = key.requests_per_minute, key.tokens_per_minute
        if rpm is None and tpm is None:
            return
        lease = self._lease(key)
        now = self._now()
        need_r = 0 if rpm is None else 1
        lease.note(now, need_r, 0)

        def local() -> bool:
            # A grant still running says the tokens were not used up when it was given (at
            # most lease_s ago): enough for a request that will use none.
            current = lease.grant
            return (
                current is not None and current.has(now, need_r, 0) and lease.local(now, need_r, 0)
            )

        if local():
            return
        while lease.pending is not None:
            await lease.pending.wait()  # the slice on its way may cover this one
            now = self._now()
            if local():
                return
        ask = lease.ask(need_r, 0, 0, exact=now < lease.exact_until)
        result = await self._from_redis(
            key, lease, ask, now, places=-1, on_result=lambda *_: None, admit=True
        )
        if int(result[0]) != 1:
            raise rate_limited(_text(result[1]), _limit(key, result[1]), float(result[2]))

    async def begin(
        self, key: APIKeyConfig, prompt_tokens: int, max_tokens: int | None
    ) -> Admission:
        rpm, tpm = key.requests_per_minute, key.tokens_per_minute
        now = self._now()
        admission = Admission(key, now, 0)
        if tpm is not None:
            try:
                plan = plan_reservation(tpm, prompt_tokens, max_tokens)
            except GatewayError:
                await self.admit(key)  # counted, as any request; a used-up limit's 429 first
                raise
            admission.tokens, admission.completion_budget = plan.wanted, plan.budget
        lease = self._lease(key)
        places = in_flight_limit(key, self._default_in_flight)
        need_r, need_t = (0 if rpm is None else 1), admission.tokens
        lease.note(now, need_r, need_t)
        covered = placed = False

        def local(now: float) -> None:
            nonlocal covered, placed
            if not covered and lease.local(now, need_r, need_t):
                covered = True
                admission.grant = lease.grant if need_r or need_t else None
            placed = placed or lease.place()

        answered = undone = admitted = False

        def undo() -> None:
            """Give back what this request took locally: it ends without an answer."""
            nonlocal undone
            undone = True
            if placed:
                self._leave(lease)
            if covered and admission.grant is not None:
                self._adjust(lease, admission.grant, -admission.tokens)
                admission.grant = None

        def taken(grant: Grant | None, result: Any, abandoned: bool) -> None:
            # Here, not after the await: a caller cancelled meanwhile still holds the place.
            nonlocal answered, admitted
            answered = True
            ok = admitted = int(result[0]) == 1
            if undone:  # its caller is gone and gave back what it held: only the grant's
                if ok and not covered and grant is not None:  # share for it goes back too
                    self._adjust(lease, grant, -ask.need_t)
                return
            if not covered and ok:
                admission.grant = grant
            if ok and not placed:
                lease.in_use += 1
            if not ok:
                undo()  # a refusal reserves nothing
            elif abandoned:
                self.finish(admission, 0)

        local(now)
        try:
            while not (covered and placed) and lease.pending is not None:
                await lease.pending.wait()  # the slice on its way may cover this one
                now = self._now()
                local(now)
            if covered and placed:
                if lease.prefetch(now):
                    self._refill(key, lease, places)
                return admission
            ask_r, ask_t = (0, 0) if covered else (need_r, need_t)
            ask = lease.ask(ask_r, ask_t, 0 if placed else 1, exact=now < lease.exact_until)
            result = await self._from_redis(key, lease, ask, now, places=places, on_result=taken)
        except BaseException:  # Redis lost, or the caller cancelled: nothing stays taken
            if not answered and not undone:
                undo()
            elif admitted:  # let in, then cancelled before it could resume
                self.finish(admission, 0)
            raise
        if int(result[0]) == 1:
            return admission
        kind = _text(result[1])
        if kind == "places":
            raise too_many_in_flight(places)
        raise rate_limited(kind, _limit(key, kind), float(result[2]))

    def _refill(self, key: APIKeyConfig, lease: KeyLease, places: int) -> None:
        """Ask for the next slice in the background, before the current one runs out."""
        ask = lease.ask(0, 0, 0)
        if ask.want_r == 0 and ask.want_t == 0:
            return
        # Registered now, not when the task runs: requests meanwhile wait for this one.
        pending = lease.pending = asyncio.Event()

        async def run() -> None:
            # _from_redis sets the event whatever happens: nobody waits for it any longer.
            with contextlib.suppress(SharedStateUnavailable):  # reported by the batch
                await self._from_redis(
                    key,
                    lease,
                    ask,
                    self._now(),
                    places=places,
                    on_result=lambda *_: None,
                    event=pending,
                )

        task = asyncio.get_running_loop().create_task(run())
        self._refills.add(task)
        task.add_done_callback(self._refills.discard)

    def finish(self, admission: Admission, used: int | None) -> None:
        if admission.finished:
            return
        admission.finished = True
        key = admission.key
        lease = self._lease(key)
        self._leave(lease)
        grant = admission.grant
        if used is None or key.tokens_per_minute is None or grant is None:
            return
        # Retried after an outage (settling twice changes nothing); else kept till it expires.
        self._adjust(lease, grant, used - admission.tokens)
        admission.tokens = used

    def _leave(self, lease: KeyLease) -> None:
        if lease.in_use > 0:
            lease.in_use -= 1  # the truth first: a lost release is repaired by resync
        self._leave_spare(lease)

    def _adjust(self, lease: KeyLease, grant: Grant, tokens: int) -> None:
        grant.tokens_used += tokens
        if grant.retired:  # settled again, once for every finish within SETTLE_DELAY_S
            if not self._unsettled:
                loop = asyncio.get_running_loop()
                self._settle_timer = loop.call_later(SETTLE_DELAY_S, self._settle_all)
            self._unsettled[grant.id] = (lease, grant)

    def _settle_all(self) -> None:
        self._settle_timer = None
        unsettled, self._unsettled = self._unsettled, {}
        for lease, grant in unsettled.values():
            self._settle(lease, grant)

    def _settle(self, lease: KeyLease, grant: Grant) -> None:
        """Settle ``grant`` in Redis to what it used (its unused part given back)."""
        self._redis.batch.send(
            "settle",
            self._grant_keys(lease.kid),
            [_now_arg(self._now()), WINDOW_S, grant.id, grant.requests_used, grant.tokens_used],
            retry=True,
        )

    def _tick_later(self, lease: KeyLease) -> None:
        """Retire the lease's grant and its spare places when their time is up."""
        due = max(lease.spare_until, lease.grant.deadline if lease.grant else 0.0)
        timer = self._timers.get(lease.kid)
        if timer is not None:
            timer.cancel()
        delay = max(0.0, due - self._now()) + 0.001
        self._timers[lease.kid] = asyncio.get_running_loop().call_later(delay, self._tick, lease)

    def _tick(self, lease: KeyLease) -> None:
        self._timers.pop(lease.kid, None)
        now = self._now()
        expired = lease.expire(now)
        if expired is not None:
            self._settle(lease, expired)
        if lease.spare_until <= now:
            lease.spare_until = 0.0
            self._leave_spare(lease)
        if (lease.grant is not None and not lease.grant.retired) or lease.spare_until > now:
            self._tick_later(lease)

    def _leave_spare(self, lease: KeyLease) -> None:
        spare = lease.spare(self._now())
        if spare:
            inflight = f"{self._redis.prefix}inflight:{self.replica_id}"
            self._redis.batch.send("release", [inflight], [lease.kid, spare], retry=False)

    async def flush(self) -> None:
        if self._refills:
            await asyncio.gather(*self._refills, return_exceptions=True)
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_all()
        await self._redis.batch.flush()

    async def close(self) -> None:
        """Give every lease's unused part and spare places back (at shutdown)."""
        for lease in self._leases.values():
            timer = self._timers.pop(lease.kid, None)
            if timer is not None:
                timer.cancel()
            grant = lease.grant
            if grant is not None and not grant.retired:
                grant.retired = True
                lease.grant = None
                self._settle(lease, grant)
            lease.spare_until = 0.0
            self._leave_spare(lease)
        await self.flush()

    def _live_key(self) -> str:
        return f"{self._redis.prefix}live:{self.replica_id}"

    async def heartbeat(self) -> None:
        await self._redis.run(
            "heartbeat",
            [self._live_key(), f"{self._redis.prefix}replicas"],
            [self._liveness_ms, self.replica_id],
        )

    async def resync(self) -> None:
        """Write this replica's places back from its own count (batched: after the releases
        queued before it, which it then overrides, and before those queued after it)."""

        def arguments() -> list[str | int]:
            # Taken when the batch is built: every earlier grant's places are counted by then.
            pairs: list[str | int] = []
            for lease in self._leases.values():
                if lease.places:
                    pairs += [lease.kid, lease.places]
            return [self._liveness_ms, self.replica_id, PLACES_TTL_MS, *pairs]

        prefix = self._redis.prefix
        await self._redis.batch.call(
            "resync",
            [f"{prefix}inflight:{self.replica_id}", self._live_key(), f"{prefix}replicas"],
            arguments,
            barrier=True,
        )


class RedisAuthFailureGuard:
    """``FailureGuard`` over Redis: failures per client address per window, all replicas.

    Every failure is counted in Redis, and a client that reaches the limit joins the set
    of locked clients there. Each replica checks a request against its own copy of that
    set, read again in the background every ``refresh_s`` (and learns at once of a lock
    its own failure caused), so a request that authenticates makes no round trip. A locked
    client is refused on every replica within ``refresh_s``; until then a replica that has
    not seen one of its failures yet may let one more attempt be checked.
    """

    def __init__(
        self,
        redis: RedisConnection,
        *,
        secret: bytes,
        max_failures: int = 20,
        window_s: float = 60.0,
        refresh_s: float = 0.5,
        max_locked: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._secret = secret
        self._max = max_failures
        self._window = window_s
        self._refresh_s = refresh_s
        self._max_locked = max_locked
        self._now = clock
        self._ids = itertools.count()
        self._member_prefix = secrets.token_hex(8)
        self._locked: dict[str, float] = {}  # client id -> end of its lock (the clock's time)
        self._complete = True  # False: more clients are locked than the copy holds
        self._read_at = -math.inf  # time.monotonic() of the last read of the locked set
        self._reading: asyncio.Task[None] | None = None

    def _client_id(self, client: str) -> str:
        # An address has little entropy: a keyed hash, so a dump of Redis does not name it.
        digest = hmac.new(self._secret, client.encode("utf-8", "surrogateescape"), "sha256")
        return digest.hexdigest()[:32]

    def _locked_key(self) -> str:
        return f"{self._redis.prefix}af:locked"

    async def check(self, client: str) -> None:
        if time.monotonic() - self._read_at >= self._refresh_s:
            if self._read_at == -math.inf or self._refresh_s == 0:
                await self.refresh()  # the first read (or every one, refresh_s 0) is awaited
            elif self._reading is None or self._reading.done():
                self._reading = asyncio.get_running_loop().create_task(self._refresh_quietly())
        cid = self._client_id(client)
        until = self._locked.get(cid)
        if until is None and not self._complete:
            # The copy holds only the newest max_locked locks (a flood of them is going on):
            # a client it does not name is asked about directly.
            answer = await self._redis.run("guard_lock_end", [self._locked_key()], [cid])
            until = float(answer) if answer else None
        if until is not None:
            now = self._now()
            if until > now:
                raise too_many_failures(until - now)
            self._locked.pop(cid, None)

    async def refresh(self) -> None:
        """Read the set of locked clients again."""
        answer = await self._redis.run(
            "guard_locked", [self._locked_key()], [_now_arg(self._now()), self._max_locked]
        )
        pairs = iter(answer)
        self._locked = {_text(cid): float(until) for cid, until in zip(pairs, pairs, strict=True)}
        self._complete = len(self._locked) < self._max_locked
        self._read_at = time.monotonic()

    async def _refresh_quietly(self) -> None:
        with contextlib.suppress(SharedStateUnavailable):
            await self.refresh()  # the copy stays as it was; a failure's write reports it

    async def failed(self, client: str) -> None:
        cid = self._client_id(client)
        member = f"{self._member_prefix}:{next(self._ids)}"
        window_ms = int(self._window * 1000) + 1000
        _, until = await self._redis.run(
            "guard_failed",
            [f"{self._redis.prefix}af:{cid}", self._locked_key()],
            [_now_arg(self._now()), self._window, window_ms, self._max, member, cid],
        )
        if float(until) > 0:
            self._locked[cid] = float(until)


def owner_digest(owner: str) -> str:
    return hashlib.sha256(f"cg-token-owner\0{owner}".encode()).hexdigest()


class RedisTokenStore:
    """``TokenKeeper`` over Redis: a token stored by one replica is read from any other."""

    def __init__(self, redis: RedisConnection, *, ttl_s: float) -> None:
        self._redis = redis
        self._ttl_ms = max(1, int(ttl_s * 1000))

    def _key(self, completion_id: str) -> str:
        # Hashed: the id in a GET comes from the client; the key length stays fixed.
        digest = hashlib.sha256(completion_id.encode("utf-8", "surrogateescape")).hexdigest()
        return f"{self._redis.prefix}tok:{digest}"

    async def put(self, completion_id: str, owner: str, token: str) -> bool:
        value = f"{owner_digest(owner)} {token}"
        # In the next batch: one round trip carries the tokens of every request finishing
        # in the same turn of the event loop (the write is off the response's path anyway).
        stored = await self._redis.batch.call(
            "token_put", [self._key(completion_id)], [value, self._ttl_ms]
        )
        return int(stored) == 1

    async def get(self, completion_id: str, owner: str) -> str | None:
        value = await self._redis.get(self._key(completion_id))
        if value is None:
            return None
        text = value.decode("ascii") if isinstance(value, bytes) else value
        stored_owner, _, token = text.partition(" ")
        return token if hmac.compare_digest(stored_owner, owner_digest(owner)) else None
