"""The one HTTP server configuration of netvirt's REST API: where it listens, who may call it, and
what it withstands. Every server of the API (``netvirt controller``, the tests) is made here.

Contract (``Limits``, defaults in brackets):
- a request's head must arrive within ``header_timeout`` [10 s] of its first byte (or of the
  connection), its body within ``body_timeout`` [30 s] of the head; then the connection is closed
  (408 when nothing was answered yet), so trickling partial requests cannot hold the server;
- bodies over ``max_body`` [32 MiB: two spec files' worth] get 413 without being read to the end;
- at most ``max_connections`` [512, fewer when the open-files limit is lower] connections: when
  full, the connection that has waited longest for a complete request is closed to make room
  (one that is being answered never is), so new clients keep being answered; the limit also keeps
  the server below its open-files limit (no EMFILE, whose accept errors are logged at most once a
  minute anyway);
- ``Authorization`` must be exactly ``Bearer <token>`` (scheme in any case, see ``bearer``);
  a listen address that is not loopback needs a token that is not blank;
- the address is bound before serving: a busy port is a ``ServeError`` naming it.
"""

import asyncio
import ipaddress
import logging
import resource
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from fastapi import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from netvirt.management.spec.source import MAX_BYTES

DEFAULT_LISTEN = "127.0.0.1:8470"
LISTEN_BACKLOG = 1024
ACCEPT_BATCH = 16
"""Connections accepted in one go before their protocols run (and may shed): with the cap 64 below
the open-files limit, a burst of connections cannot reach it."""


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive: float = 5.0
    max_body: int = 2 * MAX_BYTES
    max_connections: int = 512


class ServeError(Exception):
    """The server cannot start (the address is busy or cannot be bound)."""


def listen_address(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); ValueError saying what is wrong."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {listen!r} is not HOST:PORT (e.g. 127.0.0.1:8470)")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, None for anything else (no
    scheme, another scheme, no single space, an empty token)."""
    scheme, space, token = (authorization or "").partition(" ")
    return token if space and scheme.lower() == "bearer" and token and token.strip() == token else None


def check_listen(listen: str, token: str | None) -> tuple[str, int]:
    """(host, port) to serve on; ValueError for a bad address or a public one without a token."""
    host, port = listen_address(listen)
    if token is not None and not token.strip():
        raise ValueError("the token is blank: put the token in --token-file FILE or NETVIRT_TOKEN")
    if not is_loopback(host) and not token:
        raise ValueError(
            f"refusing to listen on {listen} without a token: anyone who can reach it could change the "
            "network; pass --token-file FILE or set NETVIRT_TOKEN (or listen on 127.0.0.1)"
        )
    return host, port


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; ServeError saying why not (a busy port above all)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as error:
        sock.close()
        shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        if error.errno == 98:  # EADDRINUSE
            raise ServeError(f"{shown} is in use by another process: stop it or pass --listen HOST:PORT") from None
        raise ServeError(f"cannot listen on {shown}: {error.strerror or error}") from None
    return sock


def server(app: Any, limits: Limits = Limits()) -> uvicorn.Server:
    """A uvicorn server of ``app`` with ``limits`` (run it with ``.run(sockets=[bind(...)])``)."""
    protocol = type("GuardedProtocol", (_Guarded,), {"limits": limits})
    config = uvicorn.Config(
        _BodyLimit(app, limits.max_body),
        http=protocol,
        timeout_keep_alive=int(limits.keep_alive),
        backlog=ACCEPT_BATCH,  # (served from our socket: only how many asyncio accepts at once)
        log_level="warning",
        lifespan="off",
    )
    logging.getLogger("asyncio").addFilter(_once_a_minute)
    return _Server(config)


class _Server(uvicorn.Server):  # type: ignore[misc]
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        for sock in sockets or []:  # asyncio listened with ACCEPT_BATCH: the kernel may queue more
            sock.listen(LISTEN_BACKLOG)


def serve(app: Any, listen: str = DEFAULT_LISTEN, token: str | None = None, limits: Limits = Limits()) -> None:
    """Serve ``app`` until interrupted: ValueError for a bad address or token, ServeError when the
    address cannot be bound."""
    host, port = check_listen(listen, token)
    _raise_open_files_limit()
    server(app, limits).run(sockets=[bind(host, port)])


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered to leave 64 descriptors of the open-files limit for everything else."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(8, min(wanted, soft - 64)) if soft != resource.RLIM_INFINITY else wanted


def _raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


# --- the guarded protocol ------------------------------------------------------------------------


class _Guarded(H11Protocol):  # type: ignore[misc]
    """uvicorn's h11 protocol with read deadlines and the connection cap of ``limits``."""

    limits: Limits

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._reading_body = False
        waiting = _waiting(self.server_state)
        if len(self.connections) > connection_cap(self.limits.max_connections):
            victim = next(iter(waiting), None)
            if victim is None:  # every other one is being answered: this one waits its turn elsewhere
                self._refuse(b"503 Service Unavailable")
                return
            victim._refuse(b"503 Service Unavailable")
        self._arm(self.limits.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm(self.limits.header_timeout)  # the next request on a kept-alive connection
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.SEND_BODY and not self._reading_body:
            self._reading_body = True
            self._arm(self.limits.body_timeout)
        elif state is not h11.IDLE and state is not h11.SEND_BODY:
            self._disarm()  # the whole request is in

    def on_response_complete(self) -> None:
        self._reading_body = False
        super().on_response_complete()
        if not self.transport.is_closing():  # idle, kept alive: may make room for a new connection
            _wait(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(seconds, self._refuse, b"408 Request Timeout")
        _wait(self)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        _waiting(self.server_state).pop(self, None)

    def _refuse(self, status: bytes) -> None:
        """Close the connection, answering ``status`` first unless an answer has begun."""
        self._disarm()
        if self.transport.is_closing():
            return
        if self.conn.our_state is h11.IDLE:
            self.transport.write(b"HTTP/1.1 " + status + b"\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
        self.transport.close()


def _waiting(state: Any) -> "OrderedDict[_Guarded, None]":
    """The server's connections that wait for (the rest of) a request, the longest waiting first."""
    waiting: OrderedDict[_Guarded, None] | None = getattr(state, "netvirt_waiting", None)
    if waiting is None:
        waiting = state.netvirt_waiting = OrderedDict()
    return waiting


def _wait(protocol: _Guarded) -> None:
    waiting = _waiting(protocol.server_state)
    waiting[protocol] = None
    waiting.move_to_end(protocol)


class _BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, declared or sent."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:  # (h11 refuses malformed lengths)
            body = b'{"detail":"body over %d bytes"}' % self.limit
            headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, f"body over {self.limit} bytes")
            return message

        await self.app(scope, limited, send)


class _OnceAMinute(logging.Filter):
    """Lets asyncio's accept errors (EMFILE when out of descriptors) through once a minute."""

    def __init__(self) -> None:
        super().__init__()
        self.last = -60.0

    def filter(self, record: logging.LogRecord) -> bool:
        if "accept" not in str(record.msg):
            return True
        if time.monotonic() - self.last < 60:
            return False
        self.last = time.monotonic()
        return True


_once_a_minute = _OnceAMinute()
