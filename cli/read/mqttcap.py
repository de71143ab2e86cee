"""A packet-size cap for paho clients, checked before the packet's body is read.

Asking the broker (MQTT v5 Maximum Packet Size, sent in CONNECT) is the first line: a compliant
broker drops a larger message for this client instead of sending it. A hostile broker ignores
that, and paho would buffer whatever length a packet header claims (up to 256 MiB), so the cap
is enforced on our side too: once paho has decoded a packet's remaining length, its next read
of the body fails if that length is over the cap, which paho treats as a lost connection.
Nothing of the oversized packet is ever buffered.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from meshd.codec import DEFAULT_LIMITS

#: The largest MQTT packet worth reading: one record at the codec's cap plus topic and headers.
MAX_PACKET_BYTES = DEFAULT_LIMITS.max_bytes + 1024


def connect_properties(limit: int = MAX_PACKET_BYTES) -> Any:
    """CONNECT properties asking the broker not to send packets over `limit` (MQTT v5)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.MaximumPacketSize = limit
    return props


class PacketCap:
    """Installed on one paho client; `tripped` counts the packets refused."""

    def __init__(self, paho_client: Any, limit: int = MAX_PACKET_BYTES) -> None:
        self.limit = limit
        self.tripped = 0
        self._packet: Callable[[], dict[str, Any]] = lambda: paho_client._in_packet
        self._recv: Callable[[int], bytes] = paho_client._sock_recv
        setattr(paho_client, "_sock_recv", self._guarded)  # noqa: B010  # instance-level hook

    def _guarded(self, bufsize: int) -> bytes:
        packet = self._packet()
        if packet.get("have_remaining") and packet.get("remaining_length", 0) > self.limit:
            self.tripped += 1
            raise OSError(
                errno.EMSGSIZE,
                f"MQTT packet of {packet['remaining_length']} bytes is over the "
                f"{self.limit}-byte cap",
            )
        return self._recv(bufsize)
