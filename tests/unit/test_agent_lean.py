"""Start-up memory measures of the agent: deferred imports and one replay at a time."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from node_agent.agent import ReplayTurn

PROBE = """
import sys
from node_agent.lean import defer_unused
defer_unused()
import aiomqtt  # paho imports urllib.request at module level
print("http.client" in sys.modules)
import urllib.request
print(callable(urllib.request.getproxies), "http.client" in sys.modules)
"""


def test_deferred_module_loads_only_when_used():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "True", "True"]


@pytest.mark.asyncio
async def test_replay_turns_are_taken_one_at_a_time_and_time_out():
    slot = asyncio.Semaphore(1)
    order: list[str] = []

    async def neighbour(name: str, drain_after: float | None) -> None:
        async with ReplayTurn(slot, 0.3) as turn:
            order.append(f"{name} in")
            if drain_after is not None:
                await asyncio.sleep(drain_after)
                turn.release()
                order.append(f"{name} drained")
            await asyncio.sleep(0.5)  # stays connected after its turn
        order.append(f"{name} out")

    start = asyncio.get_running_loop().time()
    silent = asyncio.create_task(neighbour("silent", None))  # never drains: the timer frees it
    await asyncio.sleep(0.01)
    busy = asyncio.create_task(neighbour("busy", 0.05))
    await asyncio.sleep(0.01)
    third = asyncio.create_task(neighbour("third", 0.0))
    await asyncio.gather(silent, busy, third)
    assert order[:4] == ["silent in", "busy in", "busy drained", "third in"]
    assert asyncio.get_running_loop().time() - start >= 0.3
    assert not slot.locked()


def test_mqtt_v5_properties_share_their_tables_and_still_work():
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    import node_agent.relay  # noqa: F401  (applies the sharing)

    a, b = Properties(PacketTypes.PUBLISH), Properties(PacketTypes.CONNECT)
    assert a.names is b.names
    assert a.properties is b.properties
    b.MaximumPacketSize = 17 * 1024
    back = Properties(PacketTypes.CONNECT)
    back.unpack(b.pack())
    assert back.MaximumPacketSize == 17 * 1024
    assert not hasattr(a, "MaximumPacketSize")  # values stay per instance


NO_SSL = """
import socket, sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name in ("ssl", "_ssl"):
            raise ModuleNotFoundError(name, name=name)
sys.meta_path.insert(0, Blocker())
import asyncio
from node_agent.lean import stand_in_for_ssl
print(stand_in_for_ssl())
import aiomqtt
import paho.mqtt.client as mqtt
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
a, b = socket.socketpair()
a.setblocking(False)
client._sock = a
try:
    client._sock_recv(1)  # nothing to read: paho must see BlockingIOError, as with real ssl
except BlockingIOError:
    print("would block")
try:
    client.tls_set()
except ValueError:
    print("no tls")
"""


def test_without_ssl_the_stand_in_keeps_aiomqtt_importable_and_paho_plain_sockets_working():
    """paho evaluates `ssl.SSLWantReadError` in an except clause when a socket would block; with
    ssl absent (no python3-openssl) that was an AttributeError in place of BlockingIOError."""
    out = subprocess.run(
        [sys.executable, "-c", NO_SSL], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:3] == ["True", "would block", "no tls"]


def test_with_ssl_installed_the_stand_in_is_not_used():
    probe = "from node_agent.lean import stand_in_for_ssl; import ssl; "
    probe += "print(stand_in_for_ssl(), hasattr(ssl, 'SSLContext'))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
