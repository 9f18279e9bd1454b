"""Engines found through DNS (a Kubernetes headless Service), each attested before use.

A ``discovered`` deployment names a DNS name and a port. Every ``resolve_interval_s`` the
pool asks the DNS server for the name's addresses and brings the group's members in line:

- **A new address** becomes an attested remote engine (``AttestedRemoteUpstream``: fresh
  nonce, evidence checked with the deployment's policy, its TLS key pinned). It joins the
  group at once but is not ready, so the router gives it no prompt, until that verification
  succeeds; it is re-attested like any attested remote.
- **A removed address** is drained: no new requests, in-flight ones finish (up to
  ``drain_timeout_s``), then the member leaves the group and its connections close. An
  address that comes back while draining is simply taken back.
- **A failed lookup** keeps the current set (logged once per outage): a DNS blip must not
  empty a healthy pool.

Load is spread by the free slots each engine reports on ``/health`` (polled over the pinned
connection at the same interval), less the requests this gateway has sent it since.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.config import DiscoveredDeployment, ModelConfig, RemoteAttestationConfig
from gateway.upstreams.attested_remote import DESCRIPTION, AttestedRemoteUpstream
from gateway.upstreams.base import Operation
from gateway.upstreams.dns_resolver import Nameserver, ResolveError, resolve, system_nameserver
from gateway.upstreams.router import Group, Member

if TYPE_CHECKING:
    from gateway.upstreams.topology import BuildContext, BuiltMember

log = logging.getLogger("gateway.discovered")


@dataclass(frozen=True)
class DiscoverySettings:
    dns_name: str
    port: int
    model: str  # the id the engines serve
    attestation: RemoteAttestationConfig
    resolve_interval_s: float = 5.0
    nameserver: Nameserver | None = None  # None: /etc/resolv.conf's first
    ipv6: bool = False
    timeout_s: float = 600.0
    connect_timeout_s: float = 5.0
    drain_timeout_s: float = 600.0
    operations: frozenset[Operation] = frozenset({"chat/completions", "completions"})


@dataclass(eq=False)
class _Engine:
    address: str
    upstream: AttestedRemoteUpstream
    member: Member
    free_slots: int | None = None
    # The last /health figures (slots busy and total, queue depth), for the metrics.
    figures: dict[str, float] = field(default_factory=dict)
    draining_since: float | None = None
    drainer: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def draining(self) -> bool:
        return self.draining_since is not None


def _origin(address: str, port: int) -> str:
    host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    return f"https://{host}:{port}"


class DiscoveredPool:
    def __init__(self, name: str, settings: DiscoverySettings) -> None:
        self.name = name  # the group's members are named f"{name}/{address}"
        self.settings = settings
        self._engines: dict[str, _Engine] = {}
        self._group: Group | None = None
        self._task: asyncio.Task[None] | None = None
        self._lookup_failing = False
        self.resolutions = 0

    def attach(self, group: Group) -> None:
        """The router group whose members this pool keeps in line with DNS."""
        self._group = group

    @property
    def addresses(self) -> list[str]:
        """Addresses in service (not draining), for the summary and tests."""
        return sorted(a for a, e in self._engines.items() if not e.draining)

    def figures(self) -> dict[str, dict[str, float]]:
        """Slots and queue depth per engine in service (the gateway exports them, e.g. for
        a KEDA ScaledObject on queue depth); an engine drained away drops out."""
        return {
            engine.upstream.name: dict(engine.figures)
            for engine in self._engines.values()
            if engine.figures and not engine.draining
        }

    def summary(self) -> str:
        ready = sum(1 for e in self._engines.values() if e.upstream.verified and not e.draining)
        return (
            f"discovered engines {self.settings.dns_name}:{self.settings.port}, "
            f"{ready} attested of {len(self.addresses)} in DNS, re-resolved every "
            f"{self.settings.resolve_interval_s:g}s"
        )

    def engine(self, address: str) -> _Engine | None:
        return self._engines.get(address)

    def _nameserver(self) -> Nameserver:
        return self.settings.nameserver or system_nameserver()

    async def refresh(self) -> None:
        """Resolve once and add, attest, take back or drain members accordingly."""
        try:
            found = set(
                await resolve(self.settings.dns_name, self._nameserver(), ipv6=self.settings.ipv6)
            )
        except ResolveError as exc:
            if not self._lookup_failing:
                log.warning(
                    "%s: %s; keeping the %d engines known", self.name, exc, len(self._engines)
                )
            self._lookup_failing = True
            return
        if self._lookup_failing:
            log.info("%s: DNS answers again", self.name)
        self._lookup_failing = False
        self.resolutions += 1
        for address in sorted(found - set(self._engines)):
            self._add(address)
        for address, engine in list(self._engines.items()):
            if address in found and engine.draining:
                self._take_back(engine)
            elif address not in found and not engine.draining:
                self._drain(engine)
        serving = [e for e in self._engines.values() if e.upstream.verified and not e.draining]
        await asyncio.gather(*(self._poll(e) for e in serving))

    def _add(self, address: str) -> None:
        settings = self.settings
        upstream = AttestedRemoteUpstream(
            f"{self.name}/{address}",
            base_url=f"{_origin(address, settings.port)}/v1",
            model=settings.model,
            config=settings.attestation,
            timeout_s=settings.timeout_s,
            connect_timeout_s=settings.connect_timeout_s,
        )
        engine = _Engine(address, upstream, member=Member(upstream, DESCRIPTION))
        engine.member.is_ready = lambda: upstream.verified and not engine.draining
        engine.member.free_slots = lambda: engine.free_slots
        engine.member.operations = settings.operations
        self._engines[address] = engine
        if self._group is not None:
            self._group.members.append(engine.member)
        # Attests now, then again every reattest_s and after any connection failure.
        upstream.start(settings.resolve_interval_s)
        log.info("%s: engine %s found; attesting it before it gets a prompt", self.name, address)

    def _take_back(self, engine: _Engine) -> None:
        engine.draining_since = None
        if engine.drainer is not None:
            engine.drainer.cancel()
            engine.drainer = None
        log.info("%s: engine %s is back in DNS; draining stopped", self.name, engine.address)

    def _drain(self, engine: _Engine) -> None:
        engine.draining_since = time.monotonic()
        log.info(
            "%s: engine %s left DNS; draining its %d requests in flight",
            self.name,
            engine.address,
            engine.member.outstanding,
        )
        engine.drainer = asyncio.create_task(
            self._finish_drain(engine), name=f"drain-{engine.address}"
        )

    async def _finish_drain(self, engine: _Engine) -> None:
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while engine.member.outstanding > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if engine.member.outstanding > 0:
            log.warning(
                "%s: engine %s still had %d requests after %.0fs of draining; removed anyway",
                self.name,
                engine.address,
                engine.member.outstanding,
                self.settings.drain_timeout_s,
            )
        if self._group is not None and engine.member in self._group.members:
            self._group.members.remove(engine.member)
        self._engines.pop(engine.address, None)
        await engine.upstream.close()
        log.info("%s: engine %s drained and removed", self.name, engine.address)

    async def _poll(self, engine: _Engine) -> None:
        health = await engine.upstream.health()
        slots = (health or {}).get("slots") or {}
        queue = (health or {}).get("queue") or {}
        free = slots.get("free")
        engine.free_slots = free if isinstance(free, int) and free >= 0 else None
        engine.figures = {
            name: float(value)
            for name, value in (
                ("busy", slots.get("busy")),
                ("total", slots.get("total")),
                ("queue", queue.get("depth")),
            )
            if isinstance(value, int) and value >= 0
        }

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"discover-{self.name}")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resolve_interval_s)
            try:
                await self.refresh()
            except Exception:  # one bad round must not end discovery
                log.exception("%s: discovery round failed", self.name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for engine in list(self._engines.values()):
            if engine.drainer is not None:
                engine.drainer.cancel()
            await engine.upstream.close()
        self._engines.clear()


def build(
    context: BuildContext, model: ModelConfig, index: int, deployment: DiscoveredDeployment
) -> list[BuiltMember]:
    """No members yet: the pool adds them as DNS names engines (``attach`` after the group)."""
    settings = DiscoverySettings(
        dns_name=deployment.dns_name,
        port=deployment.port,
        model=deployment.model or model.name,
        attestation=deployment.attestation,
        resolve_interval_s=deployment.resolve_interval_s,
        nameserver=Nameserver.parse(deployment.dns_server) if deployment.dns_server else None,
        ipv6=deployment.ipv6,
        timeout_s=deployment.timeout_s,
        connect_timeout_s=context.config.routing.connect_timeout_s,
        drain_timeout_s=deployment.drain_timeout_s,
        operations=frozenset({"embeddings"})
        if deployment.embedding
        else frozenset({"chat/completions", "completions"}),
    )
    pool = DiscoveredPool(f"{model.name}/discovered-{index}", settings)
    context.discovered.append((model.name, pool))
    return []
