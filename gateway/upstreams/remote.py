"""Kind ``remote``: any OpenAI-compatible server over TLS, trusted through a CA (a provider's
endpoint, or an engine elsewhere that is not attested): prompts leave this guest."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from gateway.config import ModelConfig, RemoteDeployment
from gateway.upstreams.base import UpstreamDescription
from gateway.upstreams.openai_http import OpenAIUpstream
from gateway.upstreams.router import Member

if TYPE_CHECKING:
    from gateway.upstreams.topology import BuildContext, BuiltMember

DESCRIPTION = UpstreamDescription("remote", in_guest=False, attested=False)


def build(
    context: BuildContext, model: ModelConfig, index: int, deployment: RemoteDeployment
) -> list[BuiltMember]:
    from gateway.upstreams.topology import BuiltMember, TopologyError, secret_from_env

    where = f"models[{model.name}].deployments[{index}]"
    verify: ssl.SSLContext | bool = True
    if deployment.ca_file is not None:
        try:
            verify = ssl.create_default_context(cafile=str(deployment.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise TopologyError(
                f"{where}: cannot load ca_file {deployment.ca_file}: {exc}"
            ) from None
    upstream = OpenAIUpstream(
        f"{model.name}/remote-{index}",
        base_url=deployment.base_url,
        model=deployment.model or model.name,
        api_key=secret_from_env(deployment.api_key_env, where),
        verify=verify,
        timeout_s=deployment.timeout_s,
        connect_timeout_s=context.config.routing.connect_timeout_s,
        max_connections=deployment.max_connections,
    )
    served = deployment.model or model.name
    return [
        BuiltMember(
            Member(upstream, DESCRIPTION),
            lambda: f"remote {deployment.base_url} (model {served})",
        )
    ]
