"""The Redis backend: limits, the brute-force guard and stored tokens shared by replicas.

Key layout (``p`` is ``shared_state.key_prefix``; ``kid`` the first 32 hex digits of
SHA-256 over an API key's name and configured digest; ``rid`` a random id per process):

    p rl:{kid}:req        ZSET   request ids scored by time        TTL window (60 s)
    p rl:{kid}:chg        ZSET   token charge ids scored by time   TTL window
    p rl:{kid}:amt        HASH   charge id -> tokens                TTL window
    p rl:{kid}:tot        STRING tokens charged in the window       TTL window
    p replicas            SET    replica ids holding places         (pruned when dead)
    p live:{rid}          STRING "1", refreshed by the heartbeat    TTL liveness_ttl_s
    p inflight:{rid}      HASH   kid -> places this replica holds  TTL 1 day (refreshed)
    p af:{cid}            ZSET   failed authentications by time    TTL window
    p tok:{sha256(id)}    STRING owner digest + " " + JWS token     TTL attestation.store_ttl_s

``cid`` is an HMAC of the client address (keyed by the Redis password when there is one).
No API key, key name, client address or request content is ever written. Errors that mean
"Redis did not answer" become ``SharedStateUnavailable``; refusals are ``GatewayError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
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

PLACES_TTL_MS = 86_400_000


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
        coalesce: bool = True,
        retry_interval_s: float = 1.0,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self._scripts = {name: client.register_script(body) for name, body in scripts.ALL.items()}
        self.batch = ScriptBatcher(
            client, scripts.ALL, coalesce=coalesce, retry_interval_s=retry_interval_s
        )

    async def run(self, script: str, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        try:
            return await self._scripts[script](keys=list(keys), args=list(args))
        except (RedisError, OSError, TimeoutError) as exc:
            raise await self._lost(exc) from None

    async def set_new(self, key: str, value: str, ttl_ms: int) -> bool:
        """SET NX PX: True if ``key`` was free and now holds ``value``."""
        try:
            return bool(await self.client.set(key, value, px=ttl_ms, nx=True))
        except (RedisError, OSError, TimeoutError) as exc:
            raise await self._lost(exc) from None

    async def get(self, key: str) -> bytes | str | None:
        try:
            value: bytes | str | None = await self.client.get(key)
        except (RedisError, OSError, TimeoutError) as exc:
            raise await self._lost(exc) from None
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

    Its places in flight are counted per replica under that replica's liveness key, so a
    replica that dies (no heartbeat for ``liveness_ttl_s``) stops holding any. This replica's
    own count of the places it holds is the truth ``resync`` writes back after an outage.
    """

    def __init__(
        self,
        redis: RedisConnection,
        *,
        default_max_in_flight: int = 64,
        liveness_ttl_s: float = 15.0,
        replica_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._default_in_flight = default_max_in_flight
        self._liveness_ms = int(liveness_ttl_s * 1000)
        self._window_ms = int(WINDOW_S * 1000) + 1000
        self.replica_id = replica_id or secrets.token_hex(8)
        self._now = clock
        self._ids = itertools.count()
        self._kids: dict[tuple[str, str], str] = {}
        self._held: Counter[str] = Counter()

    def _kid(self, key: APIKeyConfig) -> str:
        known = self._kids.get((key.name, key.sha256))
        if known is None:
            known = self._kids[(key.name, key.sha256)] = key_id(key)
        return known

    def _keys(self, kid: str, *parts: str) -> list[str]:
        return [f"{self._redis.prefix}rl:{kid}:{part}" for part in parts]

    def _member(self) -> str:
        return f"{self.replica_id}:{next(self._ids)}"

    async def admit(self, key: APIKeyConfig) -> None:
        rpm, tpm = key.requests_per_minute, key.tokens_per_minute
        if rpm is None and tpm is None:
            return
        result = await self._redis.batch.call(
            "admit",
            self._keys(self._kid(key), "req", "chg", "amt", "tot"),
            [
                _now_arg(self._now()),
                WINDOW_S,
                -1 if rpm is None else rpm,
                -1 if tpm is None else tpm,
                self._member(),
                self._window_ms,
            ],
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
            admission.charge_id = self._member()
        places = in_flight_limit(key, self._default_in_flight)
        kid = self._kid(key)
        prefix = self._redis.prefix

        def taken(result: Any, abandoned: bool) -> None:
            # Here, not after the await: a caller cancelled meanwhile still holds the place.
            if int(result[0]) == 1:
                self._held[kid] += 1
                if abandoned:
                    self.finish(admission, 0)

        result = await self._redis.batch.call(
            "begin",
            [
                *self._keys(kid, "req", "chg", "amt", "tot"),
                f"{prefix}replicas",
                f"{prefix}inflight:{self.replica_id}",
                self._live_key(),
            ],
            [
                _now_arg(now),
                WINDOW_S,
                -1 if rpm is None else rpm,
                -1 if tpm is None else tpm,
                self._member(),
                self._window_ms,
                admission.tokens,
                admission.charge_id or "-",
                self.replica_id,
                kid,
                places,
                self._liveness_ms,
                prefix,
                PLACES_TTL_MS,
            ],
            on_result=taken,
        )
        if int(result[0]) == 1:
            return admission
        kind = _text(result[1])
        if kind == "places":
            raise too_many_in_flight(places)
        raise rate_limited(kind, _limit(key, kind), float(result[2]))

    def finish(self, admission: Admission, used: int | None) -> None:
        if admission.finished:
            return
        admission.finished = True
        key = admission.key
        kid = self._kid(key)
        if self._held[kid] > 0:
            self._held[kid] -= 1  # the truth first: a lost leave is repaired by resync
            if self._held[kid] == 0:
                del self._held[kid]
            inflight = f"{self._redis.prefix}inflight:{self.replica_id}"
            self._redis.batch.send("leave", [inflight], [kid], retry=False)
        if used is None or key.tokens_per_minute is None or not admission.charge_id:
            return
        # Retried after an outage (settling twice changes nothing); else kept till it expires.
        self._redis.batch.send(
            "settle",
            self._keys(kid, "chg", "amt", "tot"),
            [_now_arg(self._now()), WINDOW_S, admission.charge_id, used, self._window_ms],
            retry=True,
        )
        admission.tokens = used

    async def flush(self) -> None:
        await self._redis.batch.flush()

    def _live_key(self) -> str:
        return f"{self._redis.prefix}live:{self.replica_id}"

    async def heartbeat(self) -> None:
        await self._redis.run(
            "heartbeat",
            [self._live_key(), f"{self._redis.prefix}replicas"],
            [self._liveness_ms, self.replica_id],
        )

    async def resync(self) -> None:
        """Write this replica's places back from its own count (batched: after the leaves
        queued before it, which it then overrides, and before those queued after it)."""
        pairs: list[str | int] = []
        for kid, count in self._held.items():
            pairs += [kid, count]
        prefix = self._redis.prefix
        await self._redis.batch.call(
            "resync",
            [f"{prefix}inflight:{self.replica_id}", self._live_key(), f"{prefix}replicas"],
            [self._liveness_ms, self.replica_id, PLACES_TTL_MS, *pairs],
        )


class RedisAuthFailureGuard:
    """``FailureGuard`` over Redis: failures per client address per window, all replicas."""

    def __init__(
        self,
        redis: RedisConnection,
        *,
        secret: bytes,
        max_failures: int = 20,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._secret = secret
        self._max = max_failures
        self._window = window_s
        self._now = clock
        self._ids = itertools.count()
        self._member_prefix = secrets.token_hex(8)

    def _key(self, client: str) -> str:
        # An address has little entropy: a keyed hash, so a dump of Redis does not name it.
        digest = hmac.new(self._secret, client.encode("utf-8", "surrogateescape"), "sha256")
        return f"{self._redis.prefix}af:{digest.hexdigest()[:32]}"

    async def check(self, client: str) -> None:
        result = await self._redis.run(
            "guard_check", [self._key(client)], [_now_arg(self._now()), self._window, self._max]
        )
        if int(result[0]) != 1:
            raise too_many_failures(float(result[1]))

    async def failed(self, client: str) -> None:
        member = f"{self._member_prefix}:{next(self._ids)}"
        await self._redis.run(
            "guard_failed",
            [self._key(client)],
            [_now_arg(self._now()), int(self._window * 1000) + 1000, self._max, member],
        )


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
        return await self._redis.set_new(self._key(completion_id), value, self._ttl_ms)

    async def get(self, completion_id: str, owner: str) -> str | None:
        value = await self._redis.get(self._key(completion_id))
        if value is None:
            return None
        text = value.decode("ascii") if isinstance(value, bytes) else value
        stored_owner, _, token = text.partition(" ")
        return token if hmac.compare_digest(stored_owner, owner_digest(owner)) else None
