"""Render a kustomize overlay of ``deploy/kubernetes`` without kustomize.

``python -m deploy.kubernetes.render OVERLAY`` (or ``python deploy/kubernetes/render.py
OVERLAY``) prints the overlay's manifests as YAML; OVERLAY is a directory holding a
``kustomization.yaml``, or the name of one under ``deploy/kubernetes/overlays``.
``--initdata FILE`` prints the Confidential Containers annotation value of an init-data TOML
(gzip, then base64) instead.

The same directories build with real kustomize (``kubectl apply -k``). This renderer knows a
small subset of kustomize, and refuses any other key so the two cannot silently differ:

- ``resources``: manifest files (several documents each) or directories with a
  ``kustomization.yaml``, built first, in order.
- ``patches``: ``- path: FILE`` strategic-merge patches, each naming its target by ``kind``
  and ``metadata.name``. Mappings merge key by key; a ``null`` value removes the key. Lists in
  ``MERGE_KEYS`` merge item by item on their key (``containers`` by ``name``, ``volumeMounts``
  by ``mountPath``, ...), other lists are replaced. ``$patch: delete`` in a list item removes
  that item; at a patch's top level it removes the whole resource.
- ``namespace``: set on every namespaced resource.
- ``commonLabels``: added to every resource's labels and to the selectors kustomize extends
  (``SELECTOR_PATHS``; a path is extended only where it exists, except pod template labels).
- ``images``: ``name`` -> ``newName`` / ``newTag`` / ``digest`` for every container.
"""

from __future__ import annotations

import argparse
import base64
import copy
import gzip
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent
OVERLAYS = ROOT / "overlays"

Manifest = dict[str, Any]

KUSTOMIZATION_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "patches",
    "namespace",
    "commonLabels",
    "images",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "RuntimeClass"}
# Lists a strategic-merge patch merges item by item (the Kubernetes patchMergeKey of each).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# Where kustomize's commonLabels reach beyond metadata.labels, for the kinds used here.
SELECTOR_PATHS: dict[str, list[tuple[str, ...]]] = {
    "Service": [("spec", "selector")],
    "PodDisruptionBudget": [("spec", "selector", "matchLabels")],
    "NetworkPolicy": [("spec", "podSelector", "matchLabels")],
    **{kind: [("spec", "selector", "matchLabels")] for kind in WORKLOADS},
}


class RenderError(Exception):
    pass


def load_documents(path: Path) -> list[Manifest]:
    documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    for document in documents:
        if not isinstance(document, dict) or "kind" not in document:
            raise RenderError(f"{path}: every document must be a manifest with a kind")
    return documents


def load_kustomization(directory: Path) -> dict[str, Any]:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise RenderError(f"{directory}: no kustomization.yaml")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = sorted(set(data) - KUSTOMIZATION_KEYS)
    if unknown:
        raise RenderError(f"{path}: keys this renderer does not implement: {unknown}")
    for patch in data.get("patches", []):
        if set(patch) != {"path"}:
            raise RenderError(f"{path}: patches take `path` only, got {sorted(patch)}")
    return data


def render(directory: Path) -> list[Manifest]:
    """The manifests a kustomization directory builds to."""
    kustomization = load_kustomization(directory)
    manifests: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        manifests += render(target) if target.is_dir() else load_documents(target)
    for patch in kustomization.get("patches", []):
        for document in load_documents(directory / patch["path"]):
            manifests = apply_patch(manifests, document, source=patch["path"])
    if "namespace" in kustomization:
        for manifest in manifests:
            if manifest["kind"] not in CLUSTER_SCOPED:
                manifest.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    if "commonLabels" in kustomization:
        for manifest in manifests:
            add_labels(manifest, kustomization["commonLabels"])
    for image in kustomization.get("images", []):
        for manifest in manifests:
            set_image(manifest, image)
    return manifests


def apply_patch(manifests: list[Manifest], patch: Manifest, *, source: str) -> list[Manifest]:
    name = patch.get("metadata", {}).get("name")
    matches = [m for m in manifests if m["kind"] == patch["kind"] and m["metadata"]["name"] == name]
    if len(matches) != 1:
        raise RenderError(f"{source}: {patch['kind']}/{name} matches {len(matches)} resources")
    if patch.get("$patch") == "delete":
        return [m for m in manifests if m is not matches[0]]
    merged = merge(matches[0], patch)
    return [merged if m is matches[0] else m for m in manifests]


def merge(base: Any, patch: Any, key: str | None = None) -> Any:
    """``patch`` laid over ``base`` with the strategic-merge rules of the module docstring."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for name, value in patch.items():
            if value is None:
                out.pop(name, None)
            elif name in out:
                out[name] = merge(out[name], value, name)
            else:
                out[name] = strip_directives(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_KEYS:
        merge_key = MERGE_KEYS[key]
        out_list = list(base)
        for item in patch:
            index = next(
                (i for i, b in enumerate(out_list) if b.get(merge_key) == item.get(merge_key)),
                None,
            )
            if item.get("$patch") == "delete":
                if index is None:
                    raise RenderError(f"{key}: nothing to delete at {merge_key}={item[merge_key]}")
                del out_list[index]
            elif index is None:
                out_list.append(strip_directives(item))
            else:
                out_list[index] = merge(out_list[index], item)
        return out_list
    return strip_directives(patch)


def strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_directives(v) for k, v in value.items() if k != "$patch"}
    if isinstance(value, list):
        return [strip_directives(v) for v in value]
    return copy.deepcopy(value)


def _at(document: Manifest, path: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = document
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


def add_labels(manifest: Manifest, labels: dict[str, str]) -> None:
    manifest.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    kind = manifest["kind"]
    if kind in WORKLOADS:
        template = manifest["spec"]["template"].setdefault("metadata", {})
        template.setdefault("labels", {}).update(labels)
    for path in SELECTOR_PATHS.get(kind, []):
        selector = _at(manifest, path)
        if selector is not None:
            selector.update(labels)
    if kind == "NetworkPolicy":
        for direction, peers in (("ingress", "from"), ("egress", "to")):
            for rule in manifest["spec"].get(direction, []):
                for peer in rule.get(peers, []):
                    selector = _at(peer, ("podSelector", "matchLabels"))
                    if selector is not None:
                        selector.update(labels)


def containers(manifest: Manifest) -> Iterator[dict[str, Any]]:
    if manifest["kind"] not in WORKLOADS:
        return
    spec = manifest["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def image_name(image: str) -> str:
    """``registry/name`` without its tag or digest."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def set_image(manifest: Manifest, image: dict[str, str]) -> None:
    for container in containers(manifest):
        if image_name(container["image"]) != image["name"]:
            continue
        reference = image.get("newName", image["name"])
        if "digest" in image:
            reference += "@" + image["digest"]
        elif "newTag" in image:
            reference += ":" + str(image["newTag"])
        container["image"] = reference


def encode_initdata(text: str) -> str:
    """The ``io.katacontainers.config.hypervisor.cc_init_data`` value: gzip (no timestamp, so
    the same file always gives the same value), then base64."""
    return base64.b64encode(gzip.compress(text.encode("utf-8"), mtime=0)).decode("ascii")


def decode_initdata(value: str) -> str:
    return gzip.decompress(base64.b64decode(value)).decode("utf-8")


def overlay_directory(name: str) -> Path:
    path = Path(name)
    return path if (path / "kustomization.yaml").is_file() else OVERLAYS / name


def to_yaml(manifests: list[Manifest]) -> str:
    return "---\n".join(yaml.safe_dump(m, sort_keys=False) for m in manifests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="render", description="Render a deploy/kubernetes overlay as YAML (no kustomize)."
    )
    parser.add_argument("overlay", nargs="?", help="dev, tdx, snp, or a kustomization directory")
    parser.add_argument("--initdata", type=Path, help="print an init-data TOML's annotation value")
    args = parser.parse_args(argv)
    if args.initdata is not None:
        print(encode_initdata(args.initdata.read_text(encoding="utf-8")))
        return 0
    if args.overlay is None:
        parser.error("give an overlay (or --initdata FILE)")
    try:
        sys.stdout.write(to_yaml(render(overlay_directory(args.overlay))))
    except (RenderError, OSError) as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
