"""``confidential-gateway``: serve, engine, hash-key, verify, seal-model, dev-key."""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
from pathlib import Path

import gateway.no_httpx_cli  # noqa: F401  (first: before anything imports httpx)
from gateway.auth import hash_key
from gateway.config import ConfigError, load_config
from gateway.process_hardening import disable_core_dumps
from gateway.seal_cli import add_parser as add_seal_parser
from gateway.telemetry import configure_logging


def _serve(args: argparse.Namespace) -> int:
    disable_core_dumps()  # before the config or any key is read
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"confidential-gateway: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level, config.telemetry.log_format)
    from gateway.server import run

    return run(config, config_path=args.config)


def _engine(args: argparse.Namespace) -> int:
    from enclave_backend.cli import main as engine_main

    return engine_main(args.engine_args)


def _hash_key(args: argparse.Namespace) -> int:
    key = args.key if args.key is not None else getpass.getpass("API key: ")
    if not key:
        print("hash-key: the key is empty", file=sys.stderr)
        return 2
    print(hash_key(key))
    return 0


def _dev_key(args: argparse.Namespace) -> int:
    """For `make run`: $GATEWAY_API_KEY, else a key kept in --out (generated once, mode 0600).

    Prints the key's SHA-256 on stdout (for the config) and the key itself on stderr only
    when it was just generated.
    """
    key = os.environ.get("GATEWAY_API_KEY")
    out: Path = args.out
    if key:
        print("using $GATEWAY_API_KEY", file=sys.stderr)
    elif out.exists():
        key = out.read_text().strip()
        print(f"using the API key in {out}", file=sys.stderr)
    else:
        key = "sk-gw-" + secrets.token_urlsafe(32)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        print(f"generated an API key (also in {out}, mode 0600):\n\n    {key}\n", file=sys.stderr)
    print(hash_key(key))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from gateway.attestation.verify_cli import run_verify

    return run_verify(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="confidential-gateway")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", type=Path, default=Path("config/gateway.yaml"))
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_serve)

    engine = commands.add_parser("engine", help="run one llama.cpp engine (what serve spawns)")
    engine.add_argument("engine_args", nargs=argparse.REMAINDER)
    engine.set_defaults(func=_engine)

    hash_cmd = commands.add_parser("hash-key", help="print the SHA-256 to put in api_keys")
    hash_cmd.add_argument("key", nargs="?", help="the key (prompted for when omitted)")
    hash_cmd.set_defaults(func=_hash_key)

    verify = commands.add_parser(
        "verify", help="verify a gateway's attestation (and optionally one response token)"
    )
    verify.add_argument("--url", required=True, help="gateway base URL, e.g. https://host:8443")
    verify.add_argument("--cacert", type=Path, help="CA or self-signed certificate to trust")
    verify.add_argument(
        "--allow-simulated",
        action="store_true",
        help="accept simulated (software-only) evidence: development only",
    )
    verify.add_argument(
        "--allow-debug", action="store_true", help="accept debug guests: development only"
    )
    verify.add_argument("--snp-min-tcb", help="SEV-SNP TCB floor: raw TCB_VERSION hex, or none")
    verify.add_argument("--tdx-min-tee-tcb-svn", help="TDX TEE_TCB_SVN floor: 32 hex, or none")
    verify.add_argument("--tdx-collateral", type=Path, help="Intel collateral (dcap-qvl JSON)")
    verify.add_argument("--snp-vcek", type=Path, help="VCEK certificate (DER or PEM)")
    verify.add_argument("--snp-chain", type=Path, help="ASK and ARK certificates (PEM)")
    verify.add_argument("--snp-ark-sha256", help="pin the AMD root (SHA-256 of its DER)")
    verify.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="NAME=HEX",
        help="expected measurement (repeatable), e.g. mrtd=..., measurement=...",
    )
    verify.add_argument(
        "--expect-weights-sha256", help="the plaintext weights SHA-256 the token must name"
    )
    verify.add_argument(
        "--require-sealed",
        action="store_true",
        help="the weights must be sealed, their key released by a KBS or the CDH after "
        "attestation (not a development key file)",
    )
    verify.add_argument(
        "--expect-key-id", help="the key id the sealed weights must have been opened with"
    )
    verify.add_argument("--token", help="a response token to check as well")
    verify.add_argument("--request-file", type=Path, help="the exact request body sent")
    verify.add_argument("--response-file", type=Path, help="the exact response body received")
    verify.add_argument("--now", type=int, help="verification time (unix seconds)")
    verify.set_defaults(func=_verify)

    add_seal_parser(commands)

    dev = commands.add_parser("dev-key", help="local development key for make run")
    dev.add_argument("--out", type=Path, default=Path(".run/api-key"))
    dev.set_defaults(func=_dev_key)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
