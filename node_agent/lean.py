"""Keep modules the agent never uses out of its memory and off the router's flash (a router has
64-128 MB of RAM in all).

paho-mqtt imports `urllib.request` at module level, which drags in `http.client`, `email.*`,
`tempfile`, `shutil`, `bz2` and `lzma` (~2 MB RSS), and uses it only to read proxy settings when
PySocks is installed. `defer` puts a stand-in in `sys.modules` that imports the real module on
first attribute use, so nothing breaks if that code path ever runs.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

DEFERRED = ("urllib.request",)


class _Deferred(types.ModuleType):
    """Stand-in module: the first missing attribute imports the real one and becomes it."""

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = importlib.import_module(name)
        self.__dict__.update(real.__dict__)
        return getattr(real, attr)


def defer(name: str) -> None:
    if name in sys.modules:
        return
    stand_in = _Deferred(name)
    sys.modules[name] = stand_in
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(importlib.import_module(parent), child, stand_in)


def defer_unused() -> None:
    for name in DEFERRED:
        defer(name)
    stand_in_for_ssl()


class _NoSSL(types.ModuleType):
    """`ssl` where it is not installed: the two exception types paho names in its plain-socket
    `except` clauses, and nothing else (so `hasattr(ssl, "SSLContext")` is False and any TLS
    set-up fails with paho's own "no TLS" error instead of running half-way)."""

    class SSLError(OSError):
        pass

    class SSLWantReadError(SSLError):
        pass

    class SSLWantWriteError(SSLError):
        pass


def stand_in_for_ssl() -> bool:
    """Let the agent run on an OpenWrt without python3-openssl (libopenssl + ca-certs: about
    1.4 MB of flash; `import ssl` maps libssl and libcrypto: 3.5-4.5 MB RSS).

    The agent speaks plain MQTT to its own broker and to neighbours' brokers, so TLS is never
    used. asyncio and paho already import `ssl` only if present, but aiomqtt imports it
    unconditionally (for type annotations only), and paho 2.2's `_sock_recv`/`_sock_send` evaluate
    `ssl.SSLWantReadError` in an `except` clause whenever a socket would block, which fails
    with `ssl = None`. The stand-in answers both. Returns True when it was installed; with a real
    `ssl` module present this does nothing. Call it before aiomqtt or paho is imported.
    """
    if "ssl" in sys.modules:
        return False
    try:
        importlib.import_module("ssl")
    except ImportError:
        sys.modules["ssl"] = _NoSSL("ssl")
        return True
    return False


def share_mqtt_property_tables() -> None:
    """paho builds its two MQTT v5 lookup tables (~5 KB) afresh in every `Properties`, and every
    incoming v5 PUBLISH gets one: a retained replay of 4,800 messages held ~5 MB for good. The
    tables are only ever read, so all instances share one copy."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    if getattr(Properties, "_meshd_shared", False):
        return
    template = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    shared = {"types": template.types, "names": template.names, "properties": template.properties}

    def __init__(self: Properties, packetType: int) -> None:
        object.__setattr__(self, "packetType", packetType)
        for name, table in shared.items():
            object.__setattr__(self, name, table)

    Properties.__init__ = __init__  # type: ignore[method-assign]
    Properties._meshd_shared = True  # type: ignore[attr-defined]
