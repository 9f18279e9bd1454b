"""deploy/kubernetes is validated offline (no cluster, no kustomize, no kubectl here): every
overlay is rendered by deploy/kubernetes/render.py, every manifest is checked against the
Kubernetes OpenAPI schemas (kubernetes-validate), and the security and wiring policies hold:
the gateway's ConfigMap is valid gateway configuration that finds the engines' headless
Service, and the engines' arguments parse with the engine's own command line."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deploy.kubernetes.render import (
    OVERLAYS,
    ROOT,
    RenderError,
    decode_initdata,
    load_kustomization,
    merge,
    render,
)
from gateway.config import DiscoveredDeployment, parse_config

K8S_VERSION = "1.30.0"
NAMESPACE = "confidential-gateway"
OVERLAY_NAMES = ["dev", "tdx", "snp"]
RUNTIME_CLASS = {"dev": None, "tdx": "kata-qemu-tdx", "snp": "kata-qemu-snp"}
# In a Kata guest a container cannot read configfs-tsm: the guest's Attestation Agent attests.
ATTESTATION = {"dev": "simulated", "tdx": "aa", "snp": "aa"}
KERNEL_PARAMS = "io.katacontainers.config.hypervisor.kernel_params"
CRDS = {"keda.sh/v1alpha1": {"ScaledObject"}, "monitoring.coreos.com/v1": {"ServiceMonitor"}}
WORKLOADS = {"Deployment", "StatefulSet"}


def rendered(overlay: str) -> list[dict[str, Any]]:
    return render(OVERLAYS / overlay)


def one(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def expand_kubernetes_vars(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of container args from the container's env."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env[m.group(1)], arg)


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_rendered_manifest_is_valid_against_the_kubernetes_schemas(overlay: str) -> None:
    manifests = rendered(overlay)
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "StatefulSet", "Service", "ConfigMap", "NetworkPolicy"} <= kinds
    assert {"HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    assert {"ScaledObject", "ServiceMonitor"} <= kinds
    for manifest in manifests:
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        if manifest["kind"] in CRDS.get(manifest["apiVersion"], set()):
            continue  # not in the Kubernetes schemas: checked structurally below
        try:
            kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}: {name} is invalid: {exc.message}")


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_crds_name_what_they_scale_and_scrape(overlay: str) -> None:
    manifests = rendered(overlay)
    scaled = one(manifests, "ScaledObject", "smollm2-engine")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]
    engine = one(manifests, target["kind"], target["name"])
    assert engine["kind"] == "StatefulSet"
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    triggers = {t["name"]: t for t in scaled["spec"]["triggers"]}
    assert set(triggers) == {"engine-queue-depth", "requests-in-flight"}
    for trigger in triggers.values():
        assert trigger["type"] == "prometheus"
        assert float(trigger["metadata"]["threshold"]) > 0
    # The series exist in the gateway's metrics (gateway/telemetry.py).
    telemetry = (Path(__file__).resolve().parents[2] / "gateway" / "telemetry.py").read_text()
    assert '"gateway_engine_queue_depth"' in telemetry
    assert '"gateway_request_duration_seconds"' in telemetry
    assert "gateway_engine_queue_depth" in triggers["engine-queue-depth"]["metadata"]["query"]

    monitor = one(manifests, "ServiceMonitor", "gateway")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selected = [
        s
        for s in manifests
        if s["kind"] == "Service"
        and monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected] == ["gateway-metrics"]
    port_names = {p["name"] for p in selected[0]["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert "metrics" in port_names


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_no_pod_is_privileged_and_every_container_is_locked_down(overlay: str) -> None:
    for workload in (m for m in rendered(overlay) if m["kind"] in WORKLOADS):
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
        assert not spec.get("hostIPC"), name
        assert spec.get("automountServiceAccountToken") is False, name
        assert not any("hostPath" in v for v in spec.get("volumes", [])), name
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container["securityContext"]
            where = f"{overlay}: {name}/{container['name']}"
            assert context.get("privileged", False) is False, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["runAsNonRoot"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert not context["capabilities"].get("add"), where
            assert context["seccompProfile"]["type"] == "RuntimeDefault", where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
            assert "readinessProbe" in container and "livenessProbe" in container, where
        # A read-only root: whatever is written goes to memory-backed emptyDirs.
        for volume in spec.get("volumes", []):
            if "emptyDir" in volume:
                assert volume["emptyDir"]["medium"] == "Memory", f"{name}: {volume['name']}"


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_probes_use_the_endpoints_the_processes_serve(overlay: str) -> None:
    manifests = rendered(overlay)
    gateway = pod_spec(one(manifests, "Deployment", "gateway"))["containers"][0]
    assert gateway["readinessProbe"]["httpGet"] == {
        "path": "/ready",
        "port": "https",
        "scheme": "HTTPS",
    }
    assert {p["name"]: p["containerPort"] for p in gateway["ports"]} == {
        "https": 8443,
        "metrics": 9464,
    }
    engine = pod_spec(one(manifests, "StatefulSet", "smollm2-engine"))["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert engine[probe]["httpGet"]["path"] == "/health"
        assert engine[probe]["httpGet"]["scheme"] == "HTTPS"
    assert {p["name"]: p["containerPort"] for p in engine["ports"]} == {"https": 9443}


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_runtime_class_and_attestation_follow_the_overlay(overlay: str) -> None:
    manifests = rendered(overlay)
    for workload in (m for m in manifests if m["kind"] in WORKLOADS):
        assert pod_spec(workload).get("runtimeClassName") == RUNTIME_CLASS[overlay]
        assert all(m["metadata"]["namespace"] == NAMESPACE for m in manifests)
    gateway = pod_spec(one(manifests, "Deployment", "gateway"))["containers"][0]
    assert container_env(gateway)["ATTESTATION"] == ATTESTATION[overlay]
    assert container_env(gateway)["ALLOW_SIMULATED_ENGINES"] == str(overlay == "dev").lower()
    engine = pod_spec(one(manifests, "StatefulSet", "smollm2-engine"))["containers"][0]
    assert container_env(engine)["ENGINE_ATTESTATION"] == ATTESTATION[overlay]


@pytest.mark.parametrize("overlay", ["tdx", "snp"])
def test_confidential_engines_carry_the_coco_annotations_of_their_initdata(overlay: str) -> None:
    engine = one(rendered(overlay), "StatefulSet", "smollm2-engine")
    annotations = engine["spec"]["template"]["metadata"]["annotations"]
    # The CDH's resources (the sealed model's key) and the AA's evidence (the TLS key's).
    assert annotations[KERNEL_PARAMS] == "agent.guest_components_rest_api=all"
    source = (OVERLAYS / overlay / "initdata.toml").read_text()
    encoded = annotations["io.katacontainers.config.hypervisor.cc_init_data"]
    assert decode_initdata(encoded) == source, "run render --initdata and update the patch"
    initdata = tomllib.loads(source)
    assert initdata["version"] == "0.1.0"
    assert initdata["algorithm"] == {"tdx": "sha384", "snp": "sha256"}[overlay]
    aa = tomllib.loads(initdata["data"]["aa.toml"])
    cdh = tomllib.loads(initdata["data"]["cdh.toml"])
    assert aa["token_configs"]["kbs"]["url"] == cdh["kbc"]["url"]
    assert cdh["kbc"]["url"].startswith("https://")
    # The engines' egress reaches that KBS's namespace and port, and nothing else in-cluster.
    host, port = re.match(r"https://[^.]+\.([^.]+)\.svc[^:]*:(\d+)", cdh["kbc"]["url"]).groups()
    policy = one(rendered(overlay), "NetworkPolicy", "engine")
    kbs_rule = policy["spec"]["egress"][0]
    assert kbs_rule["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": host
    }
    assert kbs_rule["ports"] == [{"protocol": "TCP", "port": int(port)}]


@pytest.mark.parametrize("overlay", ["tdx", "snp"])
def test_the_confidential_gateway_gets_evidence_but_no_resources_from_its_guest(
    overlay: str,
) -> None:
    gateway = one(rendered(overlay), "Deployment", "gateway")
    annotations = gateway["spec"]["template"]["metadata"]["annotations"]
    assert annotations[KERNEL_PARAMS] == "agent.guest_components_rest_api=attestation"


def test_the_dev_overlay_sets_no_kata_kernel_params() -> None:
    for workload in (m for m in rendered("dev") if m["kind"] in WORKLOADS):
        assert KERNEL_PARAMS not in workload["spec"]["template"]["metadata"].get("annotations", {})


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_engine_arguments_parse_with_the_engine_cli(overlay: str) -> None:
    from enclave_backend.cli import build_parser, settings_from_args

    manifests = rendered(overlay)
    engine = pod_spec(one(manifests, "StatefulSet", "smollm2-engine"))["containers"][0]
    args = [expand_kubernetes_vars(a, container_env(engine)) for a in engine["args"]]
    assert args[0] == "engine"
    settings = settings_from_args(build_parser().parse_args(args[1:]))
    assert settings.host == "0.0.0.0" and settings.tls_port == 9443
    assert settings.attestation == ATTESTATION[overlay]
    mounts = {m["mountPath"] for m in engine["volumeMounts"]}
    assert any(str(settings.cache_dir).startswith(m) for m in mounts), "cache dir is writable"
    if overlay == "dev":
        assert settings.sealed_model is None
        return
    assert settings.sealed_model is not None and settings.key_broker is not None
    assert settings.key_broker.kind == "cdh" and settings.key_broker.resource
    assert any(str(settings.sealed_model).startswith(m) for m in mounts)


def gateway_config(overlay: str) -> tuple[Any, dict[str, Any]]:
    manifests = rendered(overlay)
    deployment = one(manifests, "Deployment", "gateway")
    container = pod_spec(deployment)["containers"][0]
    command = container["args"]
    config_path = command[command.index("--config") + 1]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == config_path)
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"])
    config_map = one(manifests, "ConfigMap", volume["configMap"]["name"])
    env = container_env(container) | {"GATEWAY_API_KEY_SHA256": "a" * 64}
    data = yaml.safe_load(config_map["data"][mount["subPath"]])
    return parse_config(data, source=f"{overlay}:gateway.yaml", env=env), container


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_gateway_configmap_is_valid_config_for_this_deployment(overlay: str) -> None:
    config, container = gateway_config(overlay)
    assert config.listener.host == "0.0.0.0" and not config.listener.plain_http
    assert config.listener.port == 8443
    assert config.attestation.provider == ATTESTATION[overlay]
    assert config.tls.cert_file is None  # per-replica keys, made in memory: nothing shared
    assert config.telemetry.metrics_port == 9464 and config.telemetry.metrics_host == "0.0.0.0"
    assert config.shared_state.backend == "redis"
    assert config.shared_state.url.startswith("rediss://")
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert str(config.run_dir) in writable
    assert str(config.tls.cert_out.parent) in writable
    read_only = {m["mountPath"] for m in container["volumeMounts"] if m.get("readOnly")}
    assert str(config.shared_state.ca_file.parent) in read_only
    secret_env = {e["name"] for e in container["env"] if "valueFrom" in e}
    assert config.shared_state.password_env in secret_env


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_discovered_deployment_resolves_the_engines_headless_service(overlay: str) -> None:
    config, _ = gateway_config(overlay)
    manifests = rendered(overlay)
    discovered = [
        d for m in config.models for d in m.deployments if isinstance(d, DiscoveredDeployment)
    ]
    assert discovered
    for deployment in discovered:
        assert deployment.attestation.allow_simulated is (overlay == "dev")
        service_name, namespace = deployment.dns_name.split(".")[:2]
        assert deployment.dns_name == f"{service_name}.{namespace}.svc.cluster.local"
        service = one(manifests, "Service", service_name)
        assert service["metadata"]["namespace"] == namespace
        assert service["spec"]["clusterIP"] == "None"
        assert deployment.port in [p["port"] for p in service["spec"]["ports"]]
        pool = next(
            m
            for m in manifests
            if m["kind"] == "StatefulSet" and m["spec"]["serviceName"] == service_name
        )
        assert (
            service["spec"]["selector"].items() <= pool["spec"]["selector"]["matchLabels"].items()
        )
        container = pod_spec(pool)["containers"][0]
        args = container["args"]
        assert args[args.index("--tls-port") + 1] == str(deployment.port)
        assert args[args.index("--model-name") + 1] == (deployment.model or config.models[0].name)


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_load_balancer_passes_tcp_443_through_to_the_pods_8443(overlay: str) -> None:
    manifests = rendered(overlay)
    service = one(manifests, "Service", "gateway")
    assert service["spec"]["type"] in {"LoadBalancer", "NodePort"}
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}
    ]
    # L4: no cloud annotation that would terminate TLS at the load balancer.
    annotations = service["metadata"].get("annotations", {})
    assert not any("ssl" in k or "tls" in k or "certificate" in k for k in annotations)
    gateway = one(manifests, "Deployment", "gateway")
    assert gateway["spec"]["replicas"] >= 2
    hpa = one(manifests, "HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    for name, kind in (("gateway", "Deployment"), ("smollm2-engine", "StatefulSet")):
        pdb = one(manifests, "PodDisruptionBudget", name)
        workload = one(manifests, kind, name)
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def pods_selected(manifests: list[dict[str, Any]], selector: dict[str, Any]) -> set[str]:
    labels = selector.get("matchLabels", {})
    return {
        m["metadata"]["name"]
        for m in manifests
        if m["kind"] in WORKLOADS
        and labels.items() <= m["spec"]["template"]["metadata"]["labels"].items()
    }


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_network_policies_deny_by_default_and_admit_only_the_gateway(overlay: str) -> None:
    manifests = rendered(overlay)
    policies = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "NetworkPolicy"}
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    for target in ("smollm2-engine", "redis"):
        admitting = [
            p
            for p in policies.values()
            if target in pods_selected(manifests, p["spec"]["podSelector"])
            and p["spec"].get("ingress")
        ]
        assert admitting, target
        for policy in admitting:
            for rule in policy["spec"]["ingress"]:
                peers = rule.get("from")
                assert peers, f"{policy['metadata']['name']}: {target} open to everyone"
                for peer in peers:
                    assert set(peer) == {"podSelector"}, peer
                    assert pods_selected(manifests, peer["podSelector"]) == {"gateway"}
    # Peers outside the namespace are chosen by namespace only (commonLabels rewrite pod
    # selectors), and in-cluster egress goes only to the workloads the policy names.
    for policy in policies.values():
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                if "namespaceSelector" in peer:
                    assert "podSelector" not in peer
                if "ipBlock" in peer:
                    assert policy["metadata"]["name"] == "guest-image-pull"
                    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= set(
                        peer["ipBlock"]["except"]
                    )
    engine_egress = policies["engine"]["spec"]["egress"]
    assert all("namespaceSelector" in peer for r in engine_egress for peer in r["to"])


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_kustomization_files_name_what_the_renderer_uses(overlay: str) -> None:
    """kustomize and our renderer read the same files: every resource and patch exists, every
    manifest file in base is listed once, and every patch file is used."""
    base = ROOT / "base"
    listed = load_kustomization(base)["resources"]
    assert len(listed) == len(set(listed))
    on_disk = sorted(p.name for p in base.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk
    directory = OVERLAYS / overlay
    kustomization = load_kustomization(directory)
    assert kustomization["resources"][0] == "../../base"
    assert kustomization["namespace"] == NAMESPACE
    patches = sorted(p["path"] for p in kustomization["patches"])
    assert patches == sorted(
        str(p.relative_to(directory)) for p in (directory / "patches").glob("*.yaml")
    )
    for extra in kustomization["resources"][1:]:
        assert (directory / extra).is_file(), extra
    with_extra = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
    assert with_extra == set(kustomization["resources"][1:])


def test_the_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nconfigMapGenerator: []\n")
    with pytest.raises(RenderError, match="configMapGenerator"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "resources: []\npatches:\n  - path: p.yaml\n    target: {kind: Deployment}\n"
    )
    with pytest.raises(RenderError, match="path"):
        render(tmp_path)


def test_strategic_merge_merges_named_lists_and_deletes_on_request() -> None:
    base = {
        "containers": [{"name": "a", "env": [{"name": "X", "value": "1"}], "args": ["p", "q"]}],
        "volumes": [{"name": "v"}, {"name": "w"}],
        "keep": 1,
        "drop": 2,
    }
    patch = {
        "containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}], "args": ["r"]}],
        "volumes": [{"name": "v", "$patch": "delete"}],
        "drop": None,
    }
    assert merge(base, patch) == {
        "containers": [
            {
                "name": "a",
                "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                "args": ["r"],
            }
        ],
        "volumes": [{"name": "w"}],
        "keep": 1,
    }


def test_secrets_the_manifests_expect_are_named_in_the_operator_guide() -> None:
    secrets = set()
    for manifest in rendered("tdx"):
        if manifest["kind"] not in WORKLOADS:
            continue
        spec = pod_spec(manifest)
        secrets |= {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        for container in spec["containers"]:
            for env in container.get("env", []):
                if "valueFrom" in env:
                    secrets.add(env["valueFrom"]["secretKeyRef"]["name"])
    assert secrets == {"gateway-api-key", "redis-auth", "redis-tls"}
    guide = (Path(__file__).resolve().parents[2] / "docs" / "kubernetes.md").read_text()
    for secret in secrets:
        assert f"secret generic {secret}" in guide or f"secret tls {secret}" in guide, secret
