"""The agent's status: one JSON-able dict (the status file, `/status`, `/metrics`) and the small
HTTP server that serves it.

The server is on the mesh, so it is hardened like any network input: a connection cap, limits
on the request line (414) and headers (431), a deadline per request, and no traceback for any
bytes a client sends. Query strings are ignored (`/metrics?x=1` is `/metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from node_agent import metrics

log = logging.getLogger("meshd")
MAX_CONNECTIONS = 16
MAX_REQUEST_LINE = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 64
REQUEST_DEADLINE_S = 5.0

Route = Callable[[], tuple[bytes, str]]  # () -> (body, content type)


class HttpError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def request_path(line: bytes) -> str:
    """The path of an HTTP request line, without query or fragment; "" if unparsable."""
    parts = line.decode("latin-1").split()
    if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
        return ""
    return parts[1].split("?", 1)[0].split("#", 1)[0]


class StatusServer:
    """`routes` maps a path to what it serves; other modules add their pages there."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self.routes: dict[str, Route] = {
            "/metrics": lambda: (
                metrics.metrics_text(status()).encode(),
                "text/plain; version=0.0.4",
            ),
            "/status": lambda: (json.dumps(status()).encode(), "application/json"),
        }
        self.servers: list[asyncio.Server] = []
        self.active: set[asyncio.StreamWriter] = set()
        self.handlers: set[asyncio.Task[None]] = set()
        self.counters: dict[str, int] = {}

    def _count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1

    async def start(self, hosts: list[str], port: int) -> None:
        for host in hosts:
            try:
                server = await asyncio.start_server(
                    self.serve, host, port, limit=MAX_REQUEST_LINE + 2
                )
            except OSError as exc:
                log.info("metrics: cannot listen on %s:%d (%s)", host, port, exc)
                continue
            self.servers.append(server)

    async def close(self) -> None:
        """Stop listening and end every open request, so no handler outlives the agent."""
        for server in self.servers:
            server.close()
        for writer in list(self.active):  # open requests end with EOF, not a cancellation
            writer.close()
        handlers = [t for t in self.handlers if not t.done()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        for server in self.servers:
            await server.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> str:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise HttpError("414 URI Too Long") from None
        except asyncio.IncompleteReadError as exc:
            line = exc.partial
        if len(line) > MAX_REQUEST_LINE:
            raise HttpError("414 URI Too Long")
        total = 0
        for _ in range(MAX_HEADERS + 1):
            try:
                header = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                raise HttpError("431 Request Header Fields Too Large") from None
            except asyncio.IncompleteReadError:
                break
            total += len(header)
            if total > MAX_HEADER_BYTES:
                raise HttpError("431 Request Header Fields Too Large")
            if header in (b"\r\n", b"\n"):
                break
        else:
            raise HttpError("431 Request Header Fields Too Large")
        return request_path(line)

    def response(self, path: str) -> tuple[str, bytes, str]:
        route = self.routes.get(path)
        if route is None:
            return "404 Not Found", b"not found\n", "text/plain"
        body, ctype = route()
        return "200 OK", body, ctype

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.active) >= MAX_CONNECTIONS:
            self._count("http_refused")
            writer.close()
            return
        self.active.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
        try:
            try:
                async with asyncio.timeout(REQUEST_DEADLINE_S):
                    path = await self._read_request(reader)
                code, body, ctype = self.response(path)
            except HttpError as exc:
                self._count("http_too_large")
                code, body, ctype = exc.code, f"{exc.code}\n".encode(), "text/plain"
            writer.write(
                f"HTTP/1.0 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                # a meshviewer or netjsongraph.js hosted elsewhere may read the exports
                "Access-Control-Allow-Origin: *\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            async with asyncio.timeout(REQUEST_DEADLINE_S):
                await writer.drain()
        except (TimeoutError, OSError):
            self._count("http_aborted")
        except Exception:  # no request may end the agent or leak a traceback
            self._count("http_internal_error")
            log.exception("HTTP request failed")
        finally:
            self.active.discard(writer)
            if task is not None:
                self.handlers.discard(task)
            with contextlib.suppress(Exception):
                writer.close()
