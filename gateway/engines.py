"""Local engines as supervised child processes.

Each ``EngineProcess`` runs one ``enclave_backend`` on a Unix socket inside the run
directory: it is started and awaited until its ``/health`` answers, restarted with
exponential backoff whenever it exits unexpectedly, and stopped with SIGTERM (SIGKILL after
a timeout) when the gateway shuts down, after the listener has drained in-flight requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.config import (
    AttestationProvider,
    EngineSupervisionConfig,
    LocalDeployment,
    SealedModelConfig,
)
from gateway.upstreams.base import Weights

log = logging.getLogger("gateway.engines")

# A run this long resets the restart backoff: the engine was healthy, not crash-looping.
STABLE_RUN_S = 60.0


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the gateway dies, even by SIGKILL: no orphaned engines."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def engine_transport(socket: Path) -> httpx.AsyncHTTPTransport:
    """Plain HTTP to a local engine over its Unix socket (0600, peer uid checked). No TLS is
    ever spoken on it, so no CA bundle is loaded: httpx's default would read the system's on
    every transport, which made up a quarter of the gateway's start-up and of each health
    poll."""
    return httpx.AsyncHTTPTransport(uds=str(socket), verify=False)


class EngineStartError(Exception):
    """An engine did not become ready; the message carries the tail of its log."""


def engine_command(
    deployment: LocalDeployment,
    *,
    served_name: str,
    socket: Path,
    threads: int,
    attestation: AttestationProvider = "auto",
) -> list[str]:
    """The engine's command line. ``attestation`` is the gateway's ``attestation.provider``:
    the evidence an engine presents to a KBS for a sealed model's key (``auto``, the engine's
    own default, never falls back to simulated)."""
    command = [
        sys.executable,
        "-m",
        "enclave_backend",
        "--socket",
        str(socket),
        "--model-name",
        served_name,
        "--slots",
        str(deployment.slots),
        "--ctx-per-slot",
        str(deployment.ctx_per_slot),
        "--threads",
        str(deployment.threads or threads),
        "--queue",
        str(deployment.queue),
    ]
    if deployment.embedding:
        command.append("--embedding")
    if deployment.sealed is not None:
        command += _sealed_arguments(deployment.sealed, attestation)
    elif deployment.model_path is not None:
        command += ["--model", str(deployment.model_path)]
    elif deployment.embedding:
        pass  # the packaged embedding model (enclave_backend.embedding_model)
    else:
        command += [
            "--model-package",
            deployment.model_package,
            "--model-file",
            deployment.model_file,
        ]
    # The engine reads shareable system prompts from files beside its socket (owner-only).
    for index, text in enumerate(deployment.shareable_prefixes):
        path = socket.parent / f"{socket.stem}.shareable-{index}.txt"
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
        command += ["--shareable-prefix-file", str(path)]
    return command + list(deployment.extra_args)


def _sealed_arguments(sealed: SealedModelConfig, attestation: AttestationProvider) -> list[str]:
    broker = sealed.key_broker
    arguments = ["--sealed-model", str(sealed.path), "--key-broker", broker.kind]
    if broker.url is not None:
        arguments += ["--key-broker-url", broker.url]
    if broker.resource is not None:
        arguments += ["--key-resource", broker.resource]
    if broker.ca_file is not None:
        arguments += ["--key-broker-ca-file", str(broker.ca_file)]
    if broker.key_file is not None:
        arguments += ["--key-file", str(broker.key_file)]
    if broker.kind == "kbs":  # the engine attests to the KBS itself; cdh attests for it
        arguments += ["--attestation", attestation]
    return arguments


class EngineProcess:
    def __init__(
        self,
        name: str,
        *,
        command: list[str],
        socket: Path,
        log_path: Path,
        supervision: EngineSupervisionConfig,
    ) -> None:
        self.name = name
        self.socket = socket
        self._command = command
        self._log_path = log_path
        self._supervision = supervision
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        self.restarts = 0
        self.ready = False
        # False while a running engine stops answering its health checks (see _watch).
        self.responsive = True
        # What /health said of the weights when it became ready (sealed facts included).
        self.weights: Weights | None = None
        self._watchdog: asyncio.Task[None] | None = None

    @property
    def command(self) -> tuple[str, ...]:
        """The command line it runs (and reruns on every restart)."""
        return tuple(self._command)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self) -> None:
        """Start the process and wait until it serves; then keep it alive in the background."""
        await self._spawn_and_wait()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"supervise-{self.name}")
        self._watchdog = asyncio.create_task(self._watch(), name=f"watch-{self.name}")

    @property
    def serving(self) -> bool:
        """Ready and answering: what routing asks before sending a request here."""
        return self.ready and self.responsive

    async def _watch(self) -> None:
        """Health-check a running engine; one that stops answering is taken out, then killed.

        A stopped (SIGSTOP) or deadlocked process keeps its socket open: without this it
        would keep receiving requests and hold them for the whole request timeout.
        """
        supervision = self._supervision
        transport = engine_transport(self.socket)
        missed = 0
        async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
            while not self._stopping:
                await asyncio.sleep(supervision.health_interval_s)
                if not self.ready:  # starting or restarting: the supervisor's business
                    missed, self.responsive = 0, True
                    continue
                try:
                    answer = await client.get("/health", timeout=supervision.health_timeout_s)
                    answered = answer.status_code == 200
                except httpx.HTTPError:
                    answered = False
                if answered:
                    if not self.responsive:
                        log.info("engine %s answers its health checks again", self.name)
                    missed, self.responsive = 0, True
                    continue
                missed += 1
                if missed == supervision.unresponsive_after_missed:
                    self.responsive = False
                    log.warning(
                        "engine %s missed %d health checks; no new requests go to it",
                        self.name,
                        missed,
                    )
                if missed >= supervision.kill_after_missed:
                    log.error("engine %s is hung (pid %s); killing it", self.name, self.pid)
                    missed = 0
                    process = self._process
                    if process is not None and process.returncode is None:
                        process.kill()  # the supervisor sees it exit and restarts it

    async def _spawn_and_wait(self) -> None:
        # The engines answer without a key: only this user may reach their sockets.
        self.socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket.parent.chmod(0o700)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab") as log_file:
            self._process = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=_die_with_parent,
            )
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._supervision.start_timeout_s
        transport = engine_transport(self.socket)
        async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
            while True:
                process = self._process
                assert process is not None
                if process.returncode is not None:
                    raise EngineStartError(
                        f"engine {self.name} exited with code {process.returncode} during start:"
                        f"\n{self.log_tail()}"
                    )
                if self.socket.exists():
                    try:
                        health = await client.get("/health", timeout=2.0)
                        if health.status_code == 200:
                            self.weights = self._weights_of(health)
                            self.ready = True
                            return
                    except httpx.TransportError:
                        pass
                    except ValueError as exc:
                        await self._kill()
                        raise EngineStartError(
                            f"engine {self.name} reported unusable weight facts: {exc}"
                        ) from None
                if time.monotonic() > deadline:
                    await self._kill()
                    raise EngineStartError(
                        f"engine {self.name} was not ready after "
                        f"{self._supervision.start_timeout_s:.0f}s:\n{self.log_tail()}"
                    )
                await asyncio.sleep(0.1)

    @staticmethod
    def _weights_of(health: httpx.Response) -> Weights | None:
        document = health.json()
        if not isinstance(document, dict):
            raise ValueError("/health is not a JSON object")
        return Weights.from_health(document)

    async def _supervise(self) -> None:
        backoff = self._supervision.restart_backoff_initial_s
        while not self._stopping:
            process = self._process
            assert process is not None
            started = time.monotonic()
            code = await process.wait()
            self.ready = False
            if self._stopping:
                return
            if time.monotonic() - started > STABLE_RUN_S:
                backoff = self._supervision.restart_backoff_initial_s
            log.warning(
                "engine %s (pid %s) exited with code %s; restarting in %.1fs",
                self.name,
                process.pid,
                code,
                backoff,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._supervision.restart_backoff_max_s)
            if self._stopping:
                return
            try:
                await self._spawn_and_wait()
                self.restarts += 1
                log.info("engine %s restarted (pid %s)", self.name, self.pid)
            except EngineStartError as exc:
                log.error("engine %s failed to restart: %s", self.name, str(exc).splitlines()[0])

    async def stop(self) -> None:
        self._stopping = True
        self.ready = False
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=self._supervision.stop_timeout_s)
        except TimeoutError:
            log.warning("engine %s did not stop in time; killing it", self.name)
            await self._kill()

    async def _kill(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()

    async def health(self) -> dict[str, Any] | None:
        """The engine's /health document, or None while it is down."""
        if not self.ready:
            return None
        transport = engine_transport(self.socket)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
                response = await client.get("/health", timeout=2.0)
                result: dict[str, Any] = response.json()
                return result
        except (httpx.HTTPError, ValueError):
            return None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no engine log)"
