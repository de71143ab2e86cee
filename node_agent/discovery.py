"""Finding neighbours: our mDNS announcement, the browser, static neighbours, and the choice of
address to reach each one.

An announcement is a claim, not a proof: `parse_announcement` only accepts well-formed values
(a node id, a 16-hex fingerprint, ports in range), and the neighbour table believes the claim
only once a verified record of that node id arrives over that link (see `relay_core`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from meshd import defaults
from meshd.ids import is_node_id
from node_agent.config import Config
from node_agent.neighbours import Event, NeighbourTable
from node_agent.parsers import BabelTable
from node_agent.runtime import Runtime

log = logging.getLogger("meshd")
PROTOCOL = "1"
MAX_TXT_VALUE = 255  # one DNS TXT string
_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True, slots=True)
class Announcement:
    node_id: str
    broker_port: int
    probe_port: int
    fingerprint: str


def _port(text: str | None, default: int) -> int | None:
    if text is None or text == "":
        return default
    if not text.isdigit() or len(text) > 5:
        return None
    value = int(text)
    return value if 0 < value < 65536 else None


def parse_announcement(
    properties: Mapping[bytes | str, bytes | str | None], community: str, own_id: str
) -> tuple[Announcement | None, str]:
    """(announcement, "") or (None, why it was ignored). Never raises on any input."""
    txt: dict[str, str] = {}
    for k, v in properties.items():
        key = k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)
        value = v.decode("utf-8", "replace") if isinstance(v, bytes) else (v or "")
        txt[key[:64]] = value[:MAX_TXT_VALUE]
    if txt.get("community") != community:
        return None, "other_community"
    if txt.get("v") != PROTOCOL:
        return None, "protocol_version"
    node_id = txt.get("id", "")
    if not is_node_id(node_id):
        return None, "bad_id"
    if node_id == own_id:
        return None, "own"
    fp = txt.get("fp", "")
    if fp and not _FINGERPRINT.match(fp):
        return None, "bad_fingerprint"
    broker = _port(txt.get("port"), defaults.BROKER_PORT)
    probe = _port(txt.get("probe"), 0) if txt.get("probe") != "0" else 0
    if broker is None or probe is None:
        return None, "bad_port"
    return Announcement(node_id, broker, probe, fp), ""


class Discovery:
    def __init__(
        self,
        config: Config,
        rt: Runtime,
        node_id: str,
        community: str,
        fingerprint: str,
        neighbours: NeighbourTable,
        babel: Callable[[], BabelTable],
        on_event: Callable[[str, Event], None],
    ) -> None:
        self.config = config
        self.rt = rt
        self.node_id = node_id
        self.community = community
        self.fingerprint = fingerprint
        self.neighbours = neighbours
        self.babel = babel
        self.on_event = on_event
        self.zeroconf: Any = None
        self.service_info: Any = None
        self.ignored: dict[str, int] = {}

    def add_static(self, spec: str) -> None:
        """NODE_ID@ADDRESS%IFACE:PORT or NODE_ID@ADDRESS:PORT with IFACE from --mesh-iface."""
        try:
            node_id, rest = spec.split("@", 1)
            rest, _, probe = rest.partition("/")
            address, port = rest.rsplit(":", 1)
            iface = address.split("%", 1)[1] if "%" in address else self.config.mesh_ifaces[0]
            address = address.strip("[]")
            now = self.rt.clock.monotonic()
            event = self.neighbours.seen(node_id, iface, address, int(port), now)
            self.neighbours.entries[node_id].probe_port = int(probe) if probe else 0
        except (ValueError, IndexError, KeyError):
            log.error("bad --static-neighbour %r (want NODE_ID@ADDRESS:PORT[/PROBE])", spec)
            return
        if event:
            self.on_event(node_id, event)

    def pick_address(self, addresses: list[str]) -> tuple[str, str] | None:
        """(iface, address) to reach a peer that advertised `addresses` (scoped link-locals).

        mDNS on several links hands us all of a peer's addresses, so choose: an IPv4 address in
        a mesh interface's subnet, else a link-local babeld lists as a neighbour, else a
        link-local scoped to a mesh interface.
        """
        local = self.rt.sys.local_addresses(self.config.mesh_ifaces)
        for addr in addresses:
            try:
                ip = ipaddress.ip_address(addr.split("%", 1)[0])
            except ValueError:
                continue
            if ip.version == 4:
                for la in local:
                    if la.network.version == 4 and ip in la.network and str(ip) != la.address:
                        return la.iface, str(ip)
        index_to_name = {la.index: la.iface for la in local}
        scoped: list[tuple[str, str]] = []
        for addr in addresses:
            if "%" not in addr or not addr.lower().startswith("fe80"):
                continue
            bare, scope = addr.split("%", 1)
            iface = index_to_name.get(int(scope)) if scope.isdigit() else scope
            if iface is None:
                continue
            babel = self.babel().neighbour_at(bare)
            if babel is not None and babel.iface in self.config.mesh_ifaces:
                return babel.iface, f"{bare}%{babel.iface}"
            scoped.append((iface, f"{bare}%{iface}"))
        return scoped[0] if scoped else None

    def on_resolved(self, name: str, properties: Mapping[Any, Any], addresses: list[str]) -> None:
        """One resolved announcement (pure apart from the table; the fuzz target)."""
        ann, why = parse_announcement(properties, self.community, self.node_id)
        if ann is None:
            if why != "own":
                self.ignored[why] = self.ignored.get(why, 0) + 1
                log.debug("ignoring %s: %s", name[:80], why)
            return
        picked = self.pick_address(addresses)
        if picked is None:
            log.info("no usable address for %s in %s", ann.node_id, addresses[:8])
            return
        event = self.neighbours.seen(
            ann.node_id,
            picked[0],
            picked[1],
            ann.broker_port,
            self.rt.clock.monotonic(),
            ann.fingerprint,
            tuple(a.split("%", 1)[0] for a in addresses[:16]),
        )
        entry = self.neighbours.entries.get(ann.node_id)
        if entry is not None:
            entry.probe_port = ann.probe_port
        if event:
            self.on_event(ann.node_id, event)

    async def run(self) -> None:
        from zeroconf import IPVersion, ServiceStateChange
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

        service = defaults.SERVICE_TYPE
        local = self.rt.sys.local_addresses(self.config.mesh_ifaces)
        interfaces: list[str | int] = sorted(
            {la.address for la in local if la.network.version == 4}
        )
        interfaces += sorted({la.index for la in local if la.network.version == 6})
        if not interfaces:
            log.error(
                "no addresses on the mesh interfaces %s; discovery off", self.config.mesh_ifaces
            )
            return
        azc = self.zeroconf = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.All)
        pending: set[asyncio.Task[None]] = set()

        async def resolve(name: str) -> None:
            try:
                info = AsyncServiceInfo(service, name)
                if not await info.async_request(azc.zeroconf, 3000):
                    return
                self.on_resolved(name, info.properties, info.parsed_scoped_addresses())
            except Exception:  # a hostile announcement must not end discovery
                self.ignored["internal_error"] = self.ignored.get("internal_error", 0) + 1
                log.exception("resolving %r failed", name[:80])

        def on_change(
            zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            if state_change is ServiceStateChange.Removed:
                for n in list(self.neighbours.entries.values()):
                    mine = name.startswith(f"{n.node_id}.")
                    if mine and self.neighbours.gone(n.node_id, self.rt.clock.monotonic()):
                        self.on_event(n.node_id, Event.LOST)
                return
            if len(pending) >= 2 * self.neighbours.max_entries:
                self.ignored["resolve_busy"] = self.ignored.get("resolve_busy", 0) + 1
                return  # a flood of announcements: resolve what we can, drop the rest
            task = asyncio.get_running_loop().create_task(resolve(name))
            pending.add(task)
            task.add_done_callback(pending.discard)

        browser = AsyncServiceBrowser(azc.zeroconf, service, handlers=[on_change])
        mine = [la.address for la in local if la.network.version == 4]
        mine += [
            f"{la.address}%{la.index}" if "%" not in la.address else la.address
            for la in local
            if la.network.version == 6 and la.address.lower().startswith("fe80")
        ]
        self.service_info = AsyncServiceInfo(
            service,
            f"{self.node_id}.{service}",
            port=self.config.broker_port,
            server=f"{self.node_id}.local.",
            parsed_addresses=[a.split("%", 1)[0] for a in mine],
            properties={
                "v": PROTOCOL,
                "id": self.node_id,
                "community": self.community,
                "port": str(self.config.broker_port),
                "probe": str(self.config.probe_port),
                "fp": self.fingerprint,
            },
        )
        await azc.async_register_service(
            self.service_info, cooperating_responders=self.config.mdns_fast
        )
        log.info("mDNS: registered on %s", interfaces)
        try:
            await asyncio.Event().wait()
        finally:
            await browser.async_cancel()

    async def close(self) -> None:
        if self.zeroconf is not None:
            with contextlib.suppress(Exception):
                await self.zeroconf.async_unregister_all_services()
                await self.zeroconf.async_close()
