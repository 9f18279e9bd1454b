"""Issue 13: the engine socket, core dumps and engine logs, on real processes.

As root, a real gateway (with its real engine child) runs without capabilities: then whether
a process is dumpable shows from outside. A same-uid process without CAP_SYS_PTRACE may read
``/proc/<pid>/environ`` of a dumpable process and not of one that is not (a control process
proves the probe tells the two apart). Another uid (``nobody``) tries the engine socket.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from enclave_backend.private_socket import peer_allowed, peer_uid
from enclave_backend.process_hardening import MessageFreeExceptions, describe_exception
from tests.engine.conftest import MODEL, start_engine, stop_engine
from tests.gateway.conftest import free_port, gateway_config, start_gateway, stop_gateway

STRANGER = 65534  # nobody: neither the engine's uid (root here) nor root
_PR_CAPBSET_DROP = 24
_CAP_VERSION_3 = 0x20080522
IS_ROOT = os.geteuid() == 0
LINUX = sys.platform.startswith("linux")


def core_limit(pid: int) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            soft, hard = line.split()[4:6]
            return soft, hard
    raise AssertionError("no core limit line")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32)]
    _fields_ += [("inheritable", ctypes.c_uint32)]


def drop_all_capabilities() -> None:
    """Root without any capability, now and after exec (the bounding set emptied too)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the last one: fine
    if libc.capset(ctypes.byref(_CapHeader(_CAP_VERSION_3, 0)), (_CapData * 2)()) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def in_child(action: Callable[[], bytes]) -> str:
    """``action`` in a forked child; what it returned, or "error"."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no exceptions escaping
        try:
            outcome = action()
        except BaseException as exc:
            outcome = f"error {type(exc).__name__}".encode()
        os.write(write, outcome)
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as result:
        return result.read().decode()


def environ_readable_by_same_uid(pid: int) -> bool:
    """Whether a process of the same uid, without capabilities, may read the environment."""

    def probe() -> bytes:
        drop_all_capabilities()
        try:
            Path(f"/proc/{pid}/environ").read_bytes()
        except PermissionError:
            return b"no"
        return b"yes"

    outcome = in_child(probe)
    assert outcome in ("yes", "no"), outcome
    return outcome == "yes"


def connect_as(uid: int, path: Path) -> str:
    """As ``uid``: GET /health on the socket ``path``; what happened, in a word."""

    def attempt() -> bytes:
        if uid != os.geteuid():
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            try:
                sock.connect(str(path))
            except PermissionError:
                return b"denied"
            try:  # a refused peer may see the close while still writing
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: engine\r\n\r\n")
                data = sock.recv(64)
            except ConnectionError:
                data = b""
            return data[:12] if data else b"closed"

    return in_child(attempt)


@dataclass
class HardenedGateway:
    gateway_pid: int
    engine_pid: int
    run_dir: Path
    socket: Path


@pytest.fixture(scope="module")
def gateway() -> Iterator[HardenedGateway]:
    """A real gateway and its engine, without capabilities (so dumpability shows)."""
    if not (IS_ROOT and LINUX):
        pytest.skip("needs root on Linux: to drop capabilities and to switch uid")
    tmp = Path(tempfile.mkdtemp(prefix="hardening-", dir="/tmp"))
    tmp.chmod(0o755)  # another uid may reach the run directory; the engines' is 0700
    config = gateway_config(tmp, free_port(), free_port())
    config["models"] = [
        {"name": "smollm2", "deployments": [{"kind": "local", "slots": 1, "ctx_per_slot": 256}]}
    ]
    config["api_keys"] = config["api_keys"][:1]
    real_popen = subprocess.Popen
    subprocess.Popen = functools.partial(  # type: ignore[misc, assignment]
        real_popen, preexec_fn=drop_all_capabilities
    )
    try:
        running = start_gateway(tmp, config, ready_models=["smollm2"])
    finally:
        subprocess.Popen = real_popen  # type: ignore[misc]
    try:
        (engine_pid,) = running.engine_pids()
        yield HardenedGateway(
            running.process.pid, engine_pid, running.run_dir, running.engine_socket()
        )
    finally:
        stop_gateway(running)
        shutil.rmtree(tmp, ignore_errors=True)


def test_gateway_and_engine_write_no_core_dumps(gateway: HardenedGateway) -> None:
    control = subprocess.Popen(["sleep", "30"], preexec_fn=drop_all_capabilities)
    try:
        assert environ_readable_by_same_uid(control.pid)  # the probe sees a dumpable one
    finally:
        control.kill()
        control.wait()
    for pid in (gateway.gateway_pid, gateway.engine_pid):
        assert core_limit(pid) == ("0", "0")
        assert not environ_readable_by_same_uid(pid)  # PR_SET_DUMPABLE 0


def test_engine_socket_is_0600_in_a_0700_directory(gateway: HardenedGateway) -> None:
    sock = gateway.socket
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    assert connect_as(STRANGER, sock) == "denied"
    assert connect_as(os.geteuid(), sock).startswith("HTTP/1.1 200")


def test_a_peer_of_another_uid_is_refused_even_past_the_file_modes(
    gateway: HardenedGateway,
) -> None:
    sock = gateway.socket
    # Open the way through the file system: only SO_PEERCRED stands between now.
    os.chmod(sock.parent, 0o755)
    os.chmod(sock, 0o666)
    try:
        assert connect_as(STRANGER, sock) == "closed"
        assert connect_as(os.geteuid(), sock).startswith("HTTP/1.1 200")  # the engine's uid
        log = (gateway.run_dir / "engines" / "smollm2-0-0.log").read_text()
        assert f"refused a connection from uid {STRANGER}" in log
    finally:
        os.chmod(sock, 0o600)
        os.chmod(sock.parent, 0o700)


def test_the_peer_rule() -> None:
    assert peer_allowed(1000, own_uid=1000)
    assert peer_allowed(0, own_uid=1000)
    assert not peer_allowed(1001, own_uid=1000)
    assert not peer_allowed(-1, own_uid=1000)
    assert peer_allowed(None, own_uid=1000)  # no SO_PEERCRED: the file mode is the lock
    if LINUX:
        left, right = socket.socketpair(socket.AF_UNIX)
        with left, right:
            assert peer_uid(left) == os.geteuid()


def test_an_engine_started_alone_makes_its_socket_private(tmp_path: Path) -> None:
    engine = start_engine(tmp_path, *SMALL)
    try:
        mode = engine.socket.stat().st_mode
        assert stat.S_IMODE(mode) == 0o600
        assert core_limit(engine.process.pid) == ("0", "0")
    finally:
        stop_engine(engine)


SMALL = ("--slots", "1", "--ctx-per-slot", "256")


# -- logs without exception messages -------------------------------------------------
MARKER = "SECRET-PROMPT-7f3a9c"

# The engine, with a completion path that fails quoting the request (as a bug might).
FAILING_ENGINE = """
import sys
from enclave_backend import completions
def fail(self, request, spec):
    raise ValueError("cannot render " + request.messages[0].text())
completions.ChatCompletions._prompt_tokens = fail
from enclave_backend.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_an_internal_error_quoting_the_request_never_reaches_the_log(tmp_path: Path) -> None:
    sock = tmp_path / "e.sock"
    log_path = tmp_path / "engine.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-c", FAILING_ENGINE, "--socket", str(sock), *SMALL],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        transport = httpx.HTTPTransport(uds=str(sock))
        with httpx.Client(transport=transport, base_url="http://engine", timeout=60) as client:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log_path.read_text()
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/health").status_code == 200:
                        break
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            body = {"model": MODEL, "messages": [{"role": "user", "content": MARKER}]}
            response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == 500
        assert MARKER not in response.text
        time.sleep(0.5)  # uvicorn logs after the response went out
    finally:
        process.terminate()
        process.wait(timeout=30)
    log = log_path.read_text()
    assert "ValueError" in log  # the type and the frames are there ...
    assert "fail" in log
    assert MARKER not in log  # ... the message is not


def test_the_formatter_withholds_messages_of_chained_exceptions() -> None:
    formatter = MessageFreeExceptions(logging.Formatter("%(levelname)s %(message)s"))
    try:
        try:
            raise KeyError(MARKER)
        except KeyError as inner:
            raise RuntimeError(f"wrapped {MARKER}") from inner
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    record.exc_text = f"Traceback ... {MARKER}"  # as another formatter would have cached it
    text = formatter.format(record)
    assert MARKER not in text
    assert "RuntimeError" in text and "KeyError" in text and text.startswith("ERROR failed")
    assert describe_exception((None, None, None)) == ""
