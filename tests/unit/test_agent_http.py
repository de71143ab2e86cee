"""The status/metrics HTTP server against hostile clients on loopback."""

from __future__ import annotations

import asyncio
import json

import pytest

from node_agent import status as status_mod
from node_agent.status import StatusServer, request_path


async def started() -> tuple[StatusServer, int]:
    server = StatusServer(lambda: {"node_id": "n", "counters": {"x": 1}, "neighbours": []})
    await server.start(["127.0.0.1"], 0)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, port


async def ask(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


def code(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@pytest.mark.asyncio
async def test_status_and_query_strings():
    server, port = await started()
    try:
        got = await ask(port, b"GET /status?refresh=1 HTTP/1.0\r\nHost: x\r\n\r\n")
        assert code(got) == 200
        assert json.loads(got.split(b"\r\n\r\n", 1)[1])["node_id"] == "n"
        assert code(await ask(port, b"GET /metrics#top HTTP/1.0\r\n\r\n")) == 200
        assert code(await ask(port, b"GET /nothing HTTP/1.0\r\n\r\n")) == 404
    finally:
        server.close()


@pytest.mark.asyncio
async def test_oversized_request_line_and_headers_get_414_and_431(caplog):
    server, port = await started()
    try:
        line = b"GET /" + b"a" * 64 * 1024 + b" HTTP/1.0\r\n\r\n"
        assert code(await ask(port, line)) == 414
        headers = b"GET /status HTTP/1.0\r\n" + b"X-Pad: " + b"b" * 20_000 + b"\r\n\r\n"
        assert code(await ask(port, headers)) == 431
        many = b"GET /status HTTP/1.0\r\n" + b"X: y\r\n" * 500 + b"\r\n"
        assert code(await ask(port, many)) == 431
        assert code(await ask(port, b"\xff\xfe garbage\r\n\r\n")) == 404
        assert not [r for r in caplog.records if r.exc_info]  # no traceback anywhere
        assert server.counters["http_too_large"] == 3
    finally:
        server.close()


@pytest.mark.asyncio
async def test_connections_are_capped(monkeypatch):
    monkeypatch.setattr(status_mod, "MAX_CONNECTIONS", 3)
    server, port = await started()
    idle = []
    try:
        for _ in range(3):  # slow clients that never finish their request
            idle.append(await asyncio.open_connection("127.0.0.1", port))
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /status HTTP/1.0\r\n\r\n")
        try:
            async with asyncio.timeout(5):
                got = await reader.read()
        except ConnectionResetError:
            got = b""
        assert got == b""  # refused at once (closed, maybe reset), not queued
        writer.close()
        assert server.counters["http_refused"] == 1
    finally:
        for _, w in idle:
            w.close()
        server.close()


def test_request_path():
    assert request_path(b"GET /a?b HTTP/1.1\r\n") == "/a"
    assert request_path(b"POST /status HTTP/1.1\r\n") == ""
    assert request_path(b"\r\n") == ""
