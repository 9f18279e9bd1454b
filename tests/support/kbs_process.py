"""Start the test KBS and CDH servers as real processes, and make their inputs.

    with kbs_server_process(write_policy(tmp, resources={"default/key/model": b"..."},
                                         accept_sample=True)) as kbs:
        httpx.post(kbs.url + "/kbs/v0/auth", json=...)

Each context manager starts ``sys.executable -m tests.support.<server>`` on 127.0.0.1 with
port 0, waits (20 s at most) for its ``listening on <url>`` line and yields a
``ServerProcess``; a server that exits or stays silent fails the start with its stderr.
At exit the process gets SIGTERM, then SIGKILL if it has not stopped within 10 s. The
server's stderr (one line per request) goes to a file, read by ``ServerProcess.log()``.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


class ServerStartError(RuntimeError):
    """The server exited, or did not say it was listening in time; carries its stderr."""


@dataclass(frozen=True)
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    stderr_path: Path

    def log(self) -> str:
        """Everything the server wrote to stderr so far: one line per request."""
        return self.stderr_path.read_text(errors="replace")


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path  # give this to the client (ssl.create_default_context(cafile=...))
    cert: Path
    key: Path


def _read_lines(stream: IO[bytes], lines: queue.Queue[bytes]) -> None:
    for line in iter(stream.readline, b""):
        lines.put(line)
    lines.put(b"")


@contextmanager
def _server_process(
    module: str, args: Sequence[str], stderr_path: Path, banner: str
) -> Iterator[ServerProcess]:
    command = [sys.executable, "-m", module, *args]
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL
        )
    assert process.stdout is not None
    lines: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True)
    reader.start()
    try:
        url = _wait_for_banner(lines, banner, stderr_path)
        yield ServerProcess(url, process, stderr_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=STOP_TIMEOUT_S)
        process.stdout.close()


def _wait_for_banner(lines: queue.Queue[bytes], banner: str, stderr_path: Path) -> str:
    try:
        line = lines.get(timeout=START_TIMEOUT_S).decode(errors="replace").strip()
    except queue.Empty:
        line = ""
    if not line.startswith(banner + " "):
        stderr = stderr_path.read_text(errors="replace")
        raise ServerStartError(
            f"{banner!r} not seen within {START_TIMEOUT_S:.0f} s (stdout: {line!r}); "
            f"stderr:\n{stderr}"
        )
    return line.removeprefix(banner + " ")


@contextmanager
def kbs_server_process(
    policy: Path,
    *,
    tls: TlsFiles | None = None,
    session_timeout_s: float | None = None,
    statuses: str = "protocol",
    stderr_path: Path | None = None,
) -> Iterator[ServerProcess]:
    """The test KBS on a free loopback port; yields its base URL (http or https)."""
    args = ["--policy", str(policy), "--port", "0", "--statuses", statuses]
    if tls is not None:
        args += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
    if session_timeout_s is not None:
        args += ["--session-timeout-s", str(session_timeout_s)]
    log = stderr_path or policy.parent / "kbs-server.stderr"
    with _server_process(
        "tests.support.kbs_server", args, log, "kbs-test-server listening on"
    ) as server:
        yield server


@contextmanager
def cdh_server_process(
    resources: Mapping[str, Path],
    directory: Path,
    *,
    missing_status: int = 404,
) -> Iterator[ServerProcess]:
    """The test CDH REST endpoint serving ``resources`` (``repo/type/tag`` -> file)."""
    args = ["--port", "0", "--missing-status", str(missing_status)]
    for name, path in resources.items():
        args += ["--resource", f"{name}={path}"]
    log = directory / "cdh-server.stderr"
    with _server_process(
        "tests.support.cdh_server", args, log, "cdh-test-server listening on"
    ) as server:
        yield server


def _write_atomically(path: Path, data: bytes) -> None:
    # A running server re-reads its policy on each request: never let it see half a file.
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def write_policy(
    directory: Path,
    *,
    resources: Mapping[str, bytes] | None = None,
    accept_sample: bool = False,
    reference_values: Mapping[str, Sequence[str]] | None = None,
    allowed: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
) -> Path:
    """Write ``directory/policy.json`` and each resource's bytes beside it; returns the policy.

    ``allowed`` maps a resource name to its extra claim requirements. Calling it again on the
    same folder replaces the policy atomically, so a running server picks up the new one."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "resources").mkdir(exist_ok=True)
    rules: dict[str, Any] = {}
    for name, payload in (resources or {}).items():
        file = directory / "resources" / name.replace("/", "__")
        _write_atomically(file, payload)
        rules[name] = {"file": str(file.relative_to(directory))}
        if allowed and name in allowed:
            rules[name]["allowed"] = {k: list(v) for k, v in allowed[name].items()}
    policy = {
        "accept_sample": accept_sample,
        "reference_values": {k: list(v) for k, v in (reference_values or {}).items()},
        "resources": rules,
    }
    path = directory / "policy.json"
    _write_atomically(path, json.dumps(policy, indent=2).encode())
    return path


def make_tls_files(directory: Path, host: str = "127.0.0.1") -> TlsFiles:
    """A throwaway CA and a server certificate it signed for ``host`` (an IP SAN)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kbs-test-server CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.key.chmod(0o600)
    return files
