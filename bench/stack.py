"""Processes the benchmarks run against: the instant mock upstream, a gateway, llama-server.

Each helper starts a real process, waits until it answers, and returns what a client needs.
``stop`` ends every process it is given, killing what does not stop in time.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

from bench.paths import ROOT

# Names an already built llama-server binary, instead of building one (see llama_server_binary).
LLAMA_SERVER_ENV = "LLAMA_SERVER"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, verify: ssl.SSLContext | bool, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, verify=verify, timeout=2).status_code == 200:
                return
        except (httpx.TransportError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def rss_kb(pid: int) -> int:
    """Process ``pid``'s resident memory in KiB (0 if /proc does not say)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_upstream(
    module: str, log: IO[bytes] | int, *args: str
) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m module --port PORT *args`` on a free loopback port, once it answers
    ``/v1/models``; returns the process and its base URL (without ``/v1``)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/v1/models", False, 30)
    return process, url


def start_mock(log: IO[bytes]) -> tuple[subprocess.Popen[bytes], str]:
    return start_upstream("bench.mock_upstream", log)


def start_steady_upstream(
    log: IO[bytes] | int, chunks: int, interval_s: float
) -> tuple[subprocess.Popen[bytes], str]:
    """``bench.steady_upstream``: ``chunks`` chunks per stream, one every ``interval_s``."""
    return start_upstream(
        "bench.steady_upstream", log, "--chunks", str(chunks), "--interval", str(interval_s)
    )


def start_gateway(
    tmp: Path,
    name: str,
    config: dict[str, Any],
    log: IO[bytes],
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str, ssl.SSLContext | bool]:
    """Serve ``config`` (its listener port set); returns the process, base URL and trust."""
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(path), "--log-level", "warning"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    listener = config["listener"]
    plain = bool(listener.get("plain_http"))
    base = f"{'http' if plain else 'https'}://127.0.0.1:{listener['port']}"
    verify: ssl.SSLContext | bool = False
    if not plain:
        cert = Path(config["tls"]["cert_out"])
        deadline = time.monotonic() + 120
        while not cert.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway {name} did not start")
            time.sleep(0.1)
        verify = ssl.create_default_context(cafile=str(cert))
    wait_http(base + "/ready", verify, 120)
    return process, base, verify


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_ready(base: str, path: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until ``base + path`` answers 200, failing at once should ``process`` exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(base + path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready")


def llama_server_binary(explicit: Path | None = None) -> tuple[Path | None, str]:
    """llama.cpp's llama-server, the peer in the same run: (its path or None, why not).

    ``explicit`` (a ``--llama-server`` flag) wins, then ``$LLAMA_SERVER``; otherwise
    ``bench/build_llama_server.sh`` builds it once from the llama-cpp-python sdist of the
    installed version (same kernels) into the user's cache and prints the cached path.
    """
    named = explicit
    if named is None and os.environ.get(LLAMA_SERVER_ENV):
        named = Path(os.environ[LLAMA_SERVER_ENV])
    if named is not None:
        if named.is_file() and os.access(named, os.X_OK):
            return named, ""
        return None, f"{named} is not an executable file"
    env = {**os.environ, "PYTHON": sys.executable}
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):  # else the script's pin
        env["LLAMA_CPP_PYTHON_VERSION"] = importlib.metadata.version("llama-cpp-python")
    build = subprocess.run(
        ["bash", str(ROOT / "bench" / "build_llama_server.sh")],
        capture_output=True,
        text=True,
        env=env,
    )
    if build.returncode != 0:
        return None, build.stderr[-500:]
    return Path(build.stdout.strip()), ""
