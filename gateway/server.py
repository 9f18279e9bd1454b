"""Assemble the gateway from its configuration and serve it until a signal stops it.

Order matters: TLS identity, engines (started and awaited), router, pipeline, app; then
the listener. On shutdown the listener drains in-flight requests first, then the engines
are stopped.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
import uvloop
from prometheus_client import start_http_server

from confidential_common.tee.providers import AttestationUnavailable, select_provider
from confidential_common.tls import TLSIdentity, TLSSetupError
from gateway import __version__
from gateway.app import GatewayApp
from gateway.attestation.service import AttestationService
from gateway.auth import APIKeyStore
from gateway.config import GatewayConfig
from gateway.engines import EngineProcess, EngineStartError
from gateway.listener import ConnectionLimits, GatewayServer
from gateway.pii.detector import DetectionError, PIIDetector, ner_available
from gateway.pii.policy import effective_policies
from gateway.pii.stage import PIIStage
from gateway.pipeline import Pipeline
from gateway.shared_state.assembly import SharedStateSetupError, build_shared_state
from gateway.shared_state.base import TokenKeeper
from gateway.summary import ready_line, startup_summary
from gateway.telemetry import GatewayMetrics, configure_tracing
from gateway.tls import load_identity
from gateway.upstreams.discovered import DiscoveredPool
from gateway.upstreams.router import Router
from gateway.upstreams.topology import TopologyError, build_topology
from gateway.usage import UsageAccounting

log = logging.getLogger("gateway")


class StartupError(Exception):
    """The gateway cannot start; the message says why and what to change."""


PACKAGE_ROOTS = [
    Path(__file__).resolve().parent,
    Path(__file__).resolve().parent.parent / "enclave_backend",
    Path(__file__).resolve().parent.parent / "confidential_common",
]


def build_attestation(
    config: GatewayConfig, identity: TLSIdentity | None, tokens: TokenKeeper | None = None
) -> AttestationService:
    try:
        provider = select_provider(
            config.attestation.provider,
            code_roots=PACKAGE_ROOTS,
            base=config.attestation.configfs_path,
        )
        return AttestationService(
            provider,
            tls_spki_sha256=identity.spki_sha256 if identity else "none:plain-http",
            issuer=config.attestation.issuer,
            token_ttl_s=config.attestation.token_ttl_s,
            store_ttl_s=config.attestation.store_ttl_s,
            tokens=tokens,
        )
    except AttestationUnavailable as exc:
        raise StartupError(f"attestation ({config.attestation.provider}): {exc}") from None


def build_pii_stage(config: GatewayConfig) -> PIIStage:
    ner = config.pii.ner == "on" or (config.pii.ner == "auto" and ner_available())
    try:
        detector = PIIDetector(
            use_ner=ner, min_score=config.pii.min_score, cache_size=config.pii.cache_entries
        )
        # A request's policy covers every group that may serve it, fallbacks included.
        policies = effective_policies(config.models, detector.entity_types, detector.uses_ner)
    except (DetectionError, ValueError) as exc:
        raise StartupError(f"pii: {exc}") from None
    return PIIStage(detector, policies, config.pii)


ENGINE_POLL_S = 2.0


async def _poll_engines(
    engines: list[EngineProcess], pools: list[DiscoveredPool], metrics: GatewayMetrics
) -> None:
    """Keep the engines' slot and queue figures fresh for the metrics endpoint: local engines
    asked here, discovered ones as their pool last polled them (engines gone drop out)."""
    discovered: set[str] = set()
    while True:
        current: dict[str, dict[str, float]] = {}
        for pool in pools:
            current |= pool.figures()
        for name in discovered - set(current):
            metrics.engines.stats.pop(name, None)
        metrics.engines.stats.update(current)
        discovered = set(current)
        for engine in engines:
            stats = {"restarts": float(engine.restarts)}
            health = await engine.health()
            if health is not None:
                stats |= {
                    "busy": float(health["slots"]["busy"]),
                    "total": float(health["slots"]["total"]),
                    "queue": float(health["queue"]["depth"]),
                }
            metrics.engines.stats[engine.name] = stats
        await asyncio.sleep(ENGINE_POLL_S)


async def _start_engines(engines: list[EngineProcess]) -> None:
    results = await asyncio.gather(*(e.start() for e in engines), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await asyncio.gather(*(e.stop() for e in engines))
        first = failures[0]
        if isinstance(first, EngineStartError):
            raise StartupError(str(first))
        raise first


def settle_garbage_collector() -> None:
    """Everything built at start-up (modules, config, detectors, routes) lives as long as the
    process: moved out of the collector's sight (``gc.freeze``), a full collection no longer
    walks it. Each one pauses every open stream; with 300 streams open they took up to 120 ms
    before and 36-67 ms after (docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()


async def serve(config: GatewayConfig, *, config_path: Path) -> None:
    identity: TLSIdentity | None = None
    if not config.listener.plain_http:
        try:
            identity = load_identity(config.tls)
        except TLSSetupError as exc:
            raise StartupError(str(exc)) from None
    if not config.api_keys:
        raise StartupError("api_keys: configure at least one key (`confidential-gateway hash-key`)")
    metrics = GatewayMetrics(models=[m.name for m in config.models])
    try:
        # Redis is not contacted here: a replica starts (degraded) while it is unreachable.
        shared = build_shared_state(config, metrics)
    except SharedStateSetupError as exc:
        raise StartupError(str(exc)) from None
    attestation = build_attestation(config, identity, shared.tokens)
    pii = build_pii_stage(config)
    try:
        topology = build_topology(config)
    except TopologyError as exc:
        raise StartupError(str(exc)) from None
    waiting = time.monotonic()
    await _start_engines(topology.engines)
    # Remote engines are verified before the first request; one that fails stays out.
    await asyncio.gather(*(remote.attest() for remote in topology.attested))
    # Discovered engines: a first resolution (each found engine starts attesting at once).
    await asyncio.gather(*(pool.refresh() for pool in topology.discovered))
    engines_s = time.monotonic() - waiting
    tracing = configure_tracing(
        exporter=config.telemetry.traces,
        service_name=config.telemetry.service_name,
        otlp_endpoint=config.telemetry.otlp_endpoint,
        console_file=config.telemetry.console_file,
        export_interval_ms=config.telemetry.export_interval_ms,
    )
    if config.telemetry.metrics_port is not None:
        start_http_server(
            config.telemetry.metrics_port,
            addr=config.telemetry.metrics_host,
            registry=metrics.registry,
        )
    router = Router(
        topology.groups,
        config.routing,
        on_failure=lambda name: metrics.upstream_errors.labels(name).inc(),
    )
    pipeline = Pipeline(router, [pii, UsageAccounting()])

    @asynccontextmanager
    async def lifespan(_: object) -> AsyncIterator[None]:
        # uvicorn runs this shutdown after draining in-flight requests, and before it
        # re-raises the signal that stopped it, so engines always get a clean stop.
        router.start_probing()
        for remote in topology.attested:
            remote.start(config.routing.probe_interval_s)
        for pool in topology.discovered:
            pool.start()
        poller = asyncio.create_task(_poll_engines(topology.engines, topology.discovered, metrics))
        await shared.start()
        try:
            yield
        finally:
            poller.cancel()
            await shared.close()
            await router.close()
            await asyncio.gather(*(pool.close() for pool in topology.discovered))
            await asyncio.gather(*(e.stop() for e in topology.engines))
            if tracing is not None:
                tracing.shutdown()

    app = GatewayApp(
        keys=APIKeyStore(config.api_keys),
        limiter=shared.limiter,
        router=router,
        pipeline=pipeline,
        max_body_bytes=config.listener.max_body_bytes,
        version=__version__,
        attestation=attestation,
        metrics=metrics,
        metrics_key_sha256=config.telemetry.metrics_key_sha256,
        body_timeout_s=config.listener.body_timeout_s,
        auth_guard=shared.auth_guard,
    ).build(lifespan)
    context = identity.context if identity else None
    listener = uvicorn.Config(
        app,
        host=config.listener.host,
        port=config.listener.port,
        # Our hardened context, built around a key that never touched the disk.
        ssl_context_factory=(lambda _config, _default: context) if context else None,
        log_level="warning",
        log_config=None,  # our JSON logging, configured at start-up, stays in charge
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(config.listener.graceful_shutdown_s),
        timeout_keep_alive=30,
        # GatewayServer's protocol (httptools-based) caps connections and requests in flight,
        # answering in OpenAI's error shape; uvicorn's own plain-text 503 stays off.
        http="httptools",
        limit_concurrency=None,
        # Forwarded headers count only from configured proxies (uvicorn trusts loopback).
        proxy_headers=bool(config.listener.trusted_proxies),
        forwarded_allow_ips=list(config.listener.trusted_proxies) or [],
    )
    summary = startup_summary(config, config_path, identity, topology.summaries, pii, attestation)
    settle_garbage_collector()
    # Printed once the socket listens, with how long that took and the memory it holds.
    server = GatewayServer(
        listener,
        ConnectionLimits.of(config.listener),
        on_listening=lambda: print(summary + "\n" + ready_line(engines_s), flush=True),
    )
    try:
        await server.serve()
    finally:
        # Only reached here if serving failed before the lifespan ran (e.g. port in use).
        await asyncio.gather(*(e.stop() for e in topology.engines))


def run(config: GatewayConfig, *, config_path: Path) -> int:
    try:
        # uvloop's event loop (libuv): asyncio's own runs its socket and TLS transports in
        # Python, about a fifth of the stream path's samples in a profile at 300 streams.
        uvloop.run(serve(config, config_path=config_path))
    except StartupError as exc:
        print(f"confidential-gateway: cannot start: {exc}", file=sys.stderr)
        return 2
    return 0
