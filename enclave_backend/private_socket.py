"""The engine's Unix socket: only its own user (and root) may talk to it.

The engine answers completions without an API key (the gateway in front of it checks keys),
so its socket must not be reachable by other local users. Two locks:

- the socket file is created mode 0600 (bound under umask 0177, so never wider, not even for
  a moment; uvicorn's own ``uds=`` binding would chmod it 0666), and a parent directory the
  engine creates is 0700 (the gateway creates its engines' directory 0700 itself);
- every connection's peer is checked with ``SO_PEERCRED``: a peer whose uid is neither the
  engine's effective uid nor 0 gets its connection closed before a byte is read. Root is let
  in because it can read the engine's memory anyway; refusing it would protect nothing.
  Off Linux (no ``SO_PEERCRED``) the file mode is the only lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

log = logging.getLogger("enclave_backend")

SOCKET_MODE = 0o600
DIRECTORY_MODE = 0o700
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class SocketPathError(Exception):
    """The socket path is taken by something that is not a stale socket."""


def bind_private_socket(path: Path, backlog: int = 2048) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600, replacing a stale socket there."""
    if not path.parent.exists():
        path.parent.mkdir(mode=DIRECTORY_MODE, parents=True)
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise SocketPathError(f"{path} exists and is not a socket")
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        previous = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(previous)
        os.chmod(path, SOCKET_MODE)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def peer_uid(sock: Any) -> int | None:
    """The uid of a Unix socket's peer; None where SO_PEERCRED does not exist."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    _pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _UCRED.size))
    return int(uid)


def peer_allowed(uid: int | None, own_uid: int | None = None) -> bool:
    """Same effective uid as the engine, or root; True where the uid cannot be known."""
    if uid is None:
        return True
    return uid in (os.geteuid() if own_uid is None else own_uid, 0)


def peer_checked(base: type[asyncio.Protocol] = AutoHTTPProtocol) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class that drops connections from other users at once."""

    class PeerCheckedProtocol(base):  # type: ignore[misc,valid-type]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            sock = transport.get_extra_info("socket")
            if sock is None or sock.family != socket.AF_UNIX:
                return
            try:
                uid = peer_uid(sock)
            except OSError:
                uid = -1  # a peer we cannot identify is not let in
            if not peer_allowed(uid):
                log.warning("refused a connection from uid %s on the engine socket", uid)
                transport.close()

    return PeerCheckedProtocol
