"""Sealed model weights: decrypt and verify throughput, memory, and the added start-up time.

    python -m bench.sealed_bench [--rounds N] [--synthetic-gib G] [--json PATH]

Three parts, each against its plain peer in the same run:

- **Throughput, default model** (SmolLM2-135M Q4_1, 94 MiB), in this process, median of
  ``--rounds``: what the plain load does (read and SHA-256 the GGUF) against AES-256-GCM
  decryption alone and the engine's whole unseal (decrypt into a memfd, SHA-256 of the
  plaintext, SHA-256 of the sealed file on a second thread, seal the memfd).
- **A synthetic file** of ``--synthetic-gib`` GiB (default 4), sealed and then decrypted and
  verified chunk by chunk into one reused buffer, each in its own process so its peak RSS
  is its own: memory stays a few chunks whatever the file's size.
- **Start-up**: an engine process from spawn to its first ``/health`` 200, plain GGUF against
  the same model sealed, with the key from a file and from a KBS (the protocol-faithful test
  server in ``tests/support``, simulated TEE, ``accept_sample``: a real attestation round
  trip minus the hardware's quote time). Rounds interleave the variants.

Files are read from the page cache after the first round (as a restarted engine reads them);
nothing here measures the disk.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.paths import default_json
from bench.report import describe, emit, table
from bench.stack import free_port
from bench.stats import format_ratio, median, ratio
from confidential_common.sealed.format import (
    DEFAULT_CHUNK,
    SealedReader,
    generate_key,
    seal_file,
)
from enclave_backend.model_file import packaged_model_path, sha256_file
from enclave_backend.sealed_weights import unseal_into_memory

MIB = 1 << 20
_START_TIMEOUT_S = 120.0


def _rate(size: int, seconds: float) -> float:
    return round(size / MIB / seconds, 1)


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _decrypt_only(path: Path, key: bytes) -> None:
    with SealedReader(path, key) as reader:
        buffer = memoryview(bytearray(reader.header.chunk_size))
        for chunk in reader.decrypt(lambda _offset, length: buffer[:length]):
            chunk.release()
        buffer.release()


def _unseal(path: Path, key: bytes) -> None:
    unseal_into_memory(path, key, key_broker="file").close()


def throughput(model: Path, sealed: Path, key: bytes, rounds: int) -> dict[str, Any]:
    size = model.stat().st_size
    runs: dict[str, list[float]] = {"plain_sha256": [], "decrypt": [], "unseal": []}
    for _ in range(rounds):
        runs["plain_sha256"].append(_timed(lambda: sha256_file(model)))
        runs["decrypt"].append(_timed(lambda: _decrypt_only(sealed, key)))
        runs["unseal"].append(_timed(lambda: _unseal(sealed, key)))
    return {
        "bytes": size,
        "mib_per_s": {name: _rate(size, median(times)) for name, times in runs.items()},
        "seconds": {name: round(median(times), 4) for name, times in runs.items()},
    }


# --- the synthetic file, one phase per process -------------------------------------------


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _write_synthetic(path: Path, size: int) -> None:
    block = bytearray(os.urandom(DEFAULT_CHUNK))
    block[:4] = b"GGUF"
    with path.open("wb") as handle:
        written = 0
        while written < size:
            block[8:16] = written.to_bytes(8, "little")  # no two blocks alike
            piece = memoryview(block)[: min(len(block), size - written)]
            handle.write(piece)
            written += len(piece)


def _worker(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    plain, sealed, key_path = (
        directory / "synthetic.gguf",
        directory / "synthetic.sealed",
        directory / "key",
    )
    size = int(args.synthetic_gib * (1 << 30))
    figures: dict[str, Any] = {}
    if args.worker == "seal":
        _write_synthetic(plain, size)
        key = generate_key()
        key_path.write_bytes(key)
        seconds = _timed(lambda: seal_file(plain, sealed, key))
        plain.unlink()
        # Sealing reads the source twice (hash, then encrypt) and writes the sealed file.
        figures = {"seal_mib_per_s": _rate(size, seconds), "seal_s": round(seconds, 2)}
    else:
        key = key_path.read_bytes()
        digest = hashlib.sha256()

        def verify() -> None:
            with SealedReader(sealed, key) as reader:
                buffer = memoryview(bytearray(reader.header.chunk_size))
                for chunk in reader.decrypt(lambda _o, length: buffer[:length]):
                    digest.update(chunk)
                    chunk.release()
                if digest.hexdigest() != reader.header.plaintext_sha256:
                    raise SystemExit("synthetic file failed verification")

        seconds = _timed(verify)
        figures = {"verify_mib_per_s": _rate(size, seconds), "verify_s": round(seconds, 2)}
    figures["peak_rss_mib"] = _peak_rss_mib()
    print(json.dumps(figures))
    return 0


def synthetic(gib: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sealed-bench-") as directory:
        phases = {}
        for phase in ("seal", "verify"):
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.sealed_bench",
                    "--worker",
                    phase,
                    "--dir",
                    directory,
                    "--synthetic-gib",
                    str(gib),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            phases[phase] = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "gib": gib,
        "chunk_mib": DEFAULT_CHUNK // MIB,
        "seal_mib_per_s": phases["seal"]["seal_mib_per_s"],
        "seal_peak_rss_mib": phases["seal"]["peak_rss_mib"],
        "verify_mib_per_s": phases["verify"]["verify_mib_per_s"],
        "verify_peak_rss_mib": phases["verify"]["peak_rss_mib"],
    }


# --- start-up -----------------------------------------------------------------------------


def _engine_ready_s(arguments: list[str], threads: int) -> float:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "enclave_backend",
        "--port",
        str(port),
        "--threads",
        str(threads),
        "--slots",
        "4",
        "--ctx-per-slot",
        "2048",
        *arguments,
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with httpx.Client(timeout=1.0) as client:
            while True:
                if process.poll() is not None:
                    raise SystemExit(
                        f"engine exited: {process.stderr.read().decode() if process.stderr else ''}"
                    )
                try:
                    if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                if time.perf_counter() - started > _START_TIMEOUT_S:
                    raise SystemExit("engine did not start")
                time.sleep(0.01)
    finally:
        process.terminate()
        process.wait(30)


def startup(
    model: Path, sealed: Path, key_file: Path, rounds: int, threads: int, kbs: str | None
) -> dict[str, Any]:
    variants: dict[str, list[str]] = {
        "plain": ["--model", str(model)],
        "sealed_file_key": [
            "--sealed-model",
            str(sealed),
            "--key-broker",
            "file",
            "--key-file",
            str(key_file),
        ],
    }
    if kbs is not None:
        variants["sealed_kbs"] = [
            "--sealed-model",
            str(sealed),
            "--key-broker",
            "kbs",
            "--key-broker-url",
            kbs,
            "--key-resource",
            "bench/model/key",
            "--attestation",
            "simulated",
        ]
    times: dict[str, list[float]] = {name: [] for name in variants}
    _engine_ready_s(variants["plain"], threads)  # warm the page cache and imports
    for index in range(rounds):
        order = list(variants) if index % 2 == 0 else list(reversed(variants))
        for name in order:
            times[name].append(_engine_ready_s(variants[name], threads))
    plain_s = median(times["plain"])
    return {
        "rounds": rounds,
        "ready_s": {name: round(median(values), 3) for name, values in times.items()},
        "overhead_vs_plain": {
            name: ratio(median(values) - plain_s, plain_s)
            for name, values in times.items()
            if name != "plain"
        },
    }


def kbs_fetch(url: str, rounds: int) -> float:
    """The KBS round trip alone (auth, attest, resource; client and test server), warm."""
    from confidential_common.key_broker.kbs import KbsKeyBroker
    from confidential_common.tee.providers import select_provider
    from enclave_backend.remote_face import CODE_ROOTS

    provider = select_provider("simulated", code_roots=CODE_ROOTS)
    broker = KbsKeyBroker(url, "bench/model/key", provider=provider)
    broker.fetch()
    return round(median(_timed(broker.fetch) for _ in range(rounds)), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sealed_bench")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--synthetic-gib", type=float, default=4.0)
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--no-kbs", action="store_true", help="skip the KBS start-up variant")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=default_json("sealed"))
    parser.add_argument("--worker", choices=["seal", "verify"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)

    model = packaged_model_path()
    with tempfile.TemporaryDirectory(prefix="sealed-bench-") as scratch:
        directory = Path(scratch)
        key = generate_key()
        key_file = directory / "key"
        key_file.write_bytes(key)
        sealed = directory / "model.sealed"
        seal_file(model, sealed, key)
        figures: dict[str, Any] = {"model": model.name}
        figures["throughput"] = throughput(model, sealed, key, args.rounds)
        with contextlib.ExitStack() as stack:
            kbs_url = None
            if not args.no_kbs:
                from tests.support.kbs_process import kbs_server_process, write_policy

                # The test KBS releases the key to simulated evidence (the sample attester).
                policy = write_policy(
                    directory, resources={"bench/model/key": key}, accept_sample=True
                )
                kbs_url = stack.enter_context(kbs_server_process(policy)).url
                figures["kbs_fetch_s"] = kbs_fetch(kbs_url, args.rounds)
            figures["startup"] = startup(
                model, sealed, key_file, args.rounds, args.threads, kbs_url
            )
    if not args.skip_synthetic:
        figures["synthetic"] = synthetic(args.synthetic_gib)
    report = emit("sealed", figures, args.json)
    _print_tables(report)
    return 0


def _print_tables(report: dict[str, Any]) -> None:
    rates = report["throughput"]["mib_per_s"]
    print()
    print(
        table(
            ["default model (94 MiB)", "MiB/s", "vs plain SHA-256"],
            [
                ["plain load: read + SHA-256", rates["plain_sha256"], "1.00x"],
                [
                    "AES-256-GCM decrypt only",
                    rates["decrypt"],
                    format_ratio(ratio(rates["decrypt"], rates["plain_sha256"])),
                ],
                [
                    "unseal: decrypt + 2 hashes + memfd",
                    rates["unseal"],
                    format_ratio(ratio(rates["unseal"], rates["plain_sha256"])),
                ],
            ],
        )
    )
    start = report["startup"]
    print()
    print(
        table(
            ["engine start-up", "spawn to ready (s)", "overhead vs plain"],
            [
                [
                    name,
                    seconds,
                    "-" if name == "plain" else f"{100 * start['overhead_vs_plain'][name]:+.1f}%",
                ]
                for name, seconds in start["ready_s"].items()
            ],
        )
    )
    if "synthetic" in report:
        synth = report["synthetic"]
        print()
        print(
            table(
                [f"synthetic {synth['gib']} GiB", "MiB/s", "peak RSS (MiB)"],
                [
                    [
                        "seal (hash pass + encrypt pass)",
                        synth["seal_mib_per_s"],
                        synth["seal_peak_rss_mib"],
                    ],
                    [
                        "decrypt + verify, streamed",
                        synth["verify_mib_per_s"],
                        synth["verify_peak_rss_mib"],
                    ],
                ],
            )
        )
    if "kbs_fetch_s" in report:
        print(f"\nKBS round trip alone (auth, attest, resource), warm: {report['kbs_fetch_s']} s")
    print()
    print(describe(report))


if __name__ == "__main__":
    raise SystemExit(main())
