"""The upstreams a configuration describes, built through one table keyed by ``kind``.

Each kind's module turns its own config section into router members (and, for kinds with
something to run, registers it: local engines to start and supervise, attested remotes to
verify); ``build_topology`` is a loop over models and deployments.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.config import GatewayConfig, LocalDeployment, ModelConfig
from gateway.engines import EngineProcess
from gateway.upstreams import attested_remote, discovered, litellm, local_engine, remote
from gateway.upstreams.attested_remote import AttestedRemoteUpstream
from gateway.upstreams.discovered import DiscoveredPool
from gateway.upstreams.router import Group, Member


class TopologyError(Exception):
    """The configuration names something that cannot be built; the message says what."""


@dataclass
class BuildContext:
    """What every kind's builder may read, and where it registers what must run.

    Chat engines share the cores between them; an embedding engine (bursty, idle between
    batches) gets half of them, so a busy one slows a chat engine less than an equal share
    of threads would (ggml threads spin while they wait)."""

    config: GatewayConfig
    threads_per_engine: int
    threads_per_embedding_engine: int
    engines: list[EngineProcess] = field(default_factory=list)
    attested: list[AttestedRemoteUpstream] = field(default_factory=list)
    # DNS-discovered engine pools, with the model whose group they keep in line.
    discovered: list[tuple[str, DiscoveredPool]] = field(default_factory=list)


@dataclass
class BuiltMember:
    """A router member and its line for the start-up summary."""

    member: Member
    summary: Callable[[], str]


Builder = Callable[[BuildContext, ModelConfig, int, Any], list[BuiltMember]]

# The one place a kind word meets the code that builds it.
BUILDERS: dict[str, Builder] = {
    "local": local_engine.build,
    "remote": remote.build,
    "attested-remote": attested_remote.build,
    "litellm": litellm.build,
    "discovered": discovered.build,
}


@dataclass
class Topology:
    groups: dict[str, Group]
    engines: list[EngineProcess]
    attested: list[AttestedRemoteUpstream]
    discovered: list[DiscoveredPool]
    # Start-up summary lines per model, in config order.
    summaries: dict[str, list[Callable[[], str]]]


def build_topology(config: GatewayConfig) -> Topology:
    cores = os.cpu_count() or 1
    local = [d for m in config.models for d in m.deployments if isinstance(d, LocalDeployment)]
    chat = sum(d.replicas for d in local if not d.embedding)
    embedding = sum(d.replicas for d in local if d.embedding)
    context = BuildContext(
        config,
        threads_per_engine=max(1, cores // max(1, chat)),
        threads_per_embedding_engine=max(1, cores // 2 // max(1, embedding)),
    )
    groups: dict[str, Group] = {}
    summaries: dict[str, list[Callable[[], str]]] = {}
    for model in config.models:
        built: list[BuiltMember] = []
        for index, deployment in enumerate(model.deployments):
            built += BUILDERS[deployment.upstream_kind](context, model, index, deployment)
        groups[model.name] = Group(model.name, [b.member for b in built], fallback=model.fallback)
        summaries[model.name] = [b.summary for b in built]
    for name, pool in context.discovered:
        pool.attach(groups[name])
        summaries[name].append(pool.summary)
    pools = [pool for _, pool in context.discovered]
    return Topology(groups, context.engines, context.attested, pools, summaries)


def secret_from_env(name: str | None, where: str) -> str | None:
    """An upstream credential named by ``*_api_key_env``; configured but unset is an error."""
    if name is None:
        return None
    value = os.environ.get(name)
    if not value:
        raise TopologyError(f"{where}.api_key_env: environment variable {name} is not set")
    return value
