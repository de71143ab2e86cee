"""MQTT packet size limits against a fake broker on loopback that sends a 50 MB PUBLISH.

The relay runs in a child process so its peak RSS (ru_maxrss) shows what paho buffered. The
same child without the guard is the control: it must grow by tens of MB, or the measure means
nothing.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

BIG = 50 * 1024 * 1024

CHILD = r"""
import asyncio, json, sys, types


def peak_kb():
    # VmHWM: this address space's peak, reset by exec (ru_maxrss is inherited across exec, so a
    # big parent, a full pytest run, hid the child's growth)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


from meshd.community import Community
from meshd.store import RecordStore
from meshd.trust import Trust
from node_agent import relay as relay_mod
from node_agent.neighbours import Neighbour, NeighbourTable
from node_agent.relay import Relay
from node_agent.relay_core import RelayCore
from node_agent.runtime import Runtime

port, guarded = int(sys.argv[1]), sys.argv[2] == "1"
if not guarded:
    relay_mod.guard_packet_size = lambda *a, **k: None
core = RelayCore(RecordStore(Trust("looptest", frozenset(), 1)), "a" * 16)
table = NeighbourTable()
table.seen("b" * 16, "lo", "127.0.0.1", port, 0.0)
r = Relay(types.SimpleNamespace(), Runtime(), core, table, lambda *a: None, lambda: None)
before = peak_kb()

async def main():
    task = asyncio.create_task(r.run_neighbour(table.entries["b" * 16]))
    for _ in range(300):
        await asyncio.sleep(0.1)
        if sum(c.get("packet_too_large", 0) + c.get("too_large", 0)
               for c in core.by_source.values()):
            break
    task.cancel()

asyncio.run(main())
after = peak_kb()
print(json.dumps({"grew_kb": after - before, "by_source": core.by_source,
                  "too_large": core.store.rejections.get("too_large", 0)}))
"""


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = (await reader.readexactly(1))[0]
    length, mult = 0, 1
    while True:
        b = (await reader.readexactly(1))[0]
        length += (b & 127) * mult
        mult *= 128
        if not b & 128:
            break
    return head, await reader.readexactly(length)


class FakeBroker:
    """Answers CONNECT and SUBSCRIBE (MQTT v5), then sends one PUBLISH of `size` bytes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.connect = b""
        self.sent = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            _, self.connect = await read_packet(reader)
            writer.write(b"\x20\x03\x00\x00\x00")  # CONNACK, success, no properties
            head, sub = await read_packet(reader)
            assert head >> 4 == 8
            writer.write(b"\x90\x04" + sub[:2] + b"\x00\x01")  # SUBACK, QoS 1 granted
            topic = b"mesh/v1/looptest/bbbbbbbbbbbbbbbb/node"
            variable = len(topic).to_bytes(2, "big") + topic + b"\x00"  # no properties
            writer.write(b"\x30" + varint(len(variable) + self.size) + variable)
            chunk = b"x" * 65536
            left = self.size
            while left > 0:
                piece = chunk[: min(left, len(chunk))]
                writer.write(piece)
                await writer.drain()
                self.sent += len(piece)
                left -= len(piece)
            await reader.read()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def run_child(guarded: bool) -> tuple[dict[str, object], FakeBroker]:
    broker = FakeBroker(BIG)
    server = await asyncio.start_server(broker.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(port), "1" if guarded else "0",
        stdout=subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    server.close()
    return json.loads(out), broker


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_a_50_mb_publish_is_refused_before_it_is_buffered():
    result, broker = await run_child(guarded=True)
    assert result["grew_kb"] < 5 * 1024, result  # a few MB at most
    assert result["too_large"] >= 1
    assert broker.sent < BIG  # cut off early, not read to the end
    # CONNECT carried Maximum Packet Size (property 0x27) = the record cap plus headers
    assert b"\x27" + (16 * 1024 + 1024).to_bytes(4, "big") in broker.connect


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_control_without_the_guard_paho_buffers_the_whole_packet():
    result, _ = await run_child(guarded=False)
    assert result["grew_kb"] > 40 * 1024, result  # the measure above can fail
