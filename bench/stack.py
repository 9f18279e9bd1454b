"""Processes the benchmarks run against: the instant mock upstream and a gateway.

Each helper starts a real process, waits until it answers, and returns what a client needs.
``stop`` ends every process it is given, killing what does not stop in time.
"""

from __future__ import annotations

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

ROOT = Path(__file__).resolve().parent.parent


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


def start_mock(log: IO[bytes]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "mock_upstream.py"), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/v1/models", False, 30)
    return process, url


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


def cpu_name() -> str:
    """The CPU model, for the report: figures differ by vendor and generation."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def commit() -> str:
    """The checkout's short commit, for the report."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
