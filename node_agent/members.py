"""Wiring of the members' features into a running agent: the page, API and exports on its HTTP
port, `/metrics` from the renderer, and the respondd endpoint.

Kept apart from the agent so its edit is a few lines: `install_routes(agent, routes)` once the
HTTP server exists, `await start_respondd(agent)` after start-up, `close()` on the way out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any, Protocol

from meshd.community import Community
from meshd.records import Kind, LinksBody, NodeBody, TrafficBody
from meshd.store import RecordStore
from node_agent import build, metrics, respondd, system
from node_agent.site import ROUTES, STATIC, Site

log = logging.getLogger("meshd")

Route = Callable[[], tuple[bytes, str]]


class AgentLike(Protocol):
    node_id: str
    community: Community
    config: Any
    neighbours: Any
    store: RecordStore

    def status(self) -> dict[str, Any]: ...


def site_for(agent: AgentLike, clients: Clients | None = None) -> Site:
    counter = clients or Clients()

    def own_clients() -> dict[str, int]:
        n = counter.get()
        return {} if n is None else {agent.node_id: n}

    return Site(
        lambda: list(agent.store),
        agent.node_id,
        agent.community,
        status=agent.status,
        metrics=lambda: metrics.metrics_text(agent.status()),
        clients=own_clients,
        routing_version=lambda: getattr(agent, "babeld_version", None),
    )


def install_routes(agent: AgentLike, routes: MutableMapping[str, Route]) -> Site:
    """Serve the page, `/api/*`, the exports and `/metrics` from the agent's HTTP routes."""
    site = site_for(agent)

    def route(path: str) -> Route:
        def serve() -> tuple[bytes, str]:
            r = site.respond("GET", path, time.time())
            return r.body, r.ctype

        return serve

    for path in [*STATIC, *ROUTES, "/api", "/api/"]:
        if path != "/status":
            routes[path] = route(path)
    return site


DHCP_LEASES = Path("/tmp/dhcp.leases")  # dnsmasq's lease file on OpenWrt


def count_clients(leases: str, now: float, stations: Iterable[str] = ()) -> int:
    """Distinct client MACs: unexpired DHCP leases (dnsmasq: `expiry mac ip name id`, expiry 0
    = never) together with associated stations (a client with a static address has no lease)."""
    macs = {m.lower() for m in stations}
    for line in leases.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        expiry = int(parts[0])
        if expiry == 0 or expiry > now:
            macs.add(parts[1].lower())
    return len(macs)


class Clients:
    """This node's client count, re-read at most every 30 s; None where there is no lease file."""

    def __init__(self, path: Path = DHCP_LEASES) -> None:
        self.path = path
        self.at = -1e18
        self.value: int | None = None

    def get(self) -> int | None:
        if time.monotonic() - self.at > 30:
            self.at = time.monotonic()
            try:
                text = self.path.read_text(errors="replace")
            except OSError:
                self.value = None
            else:
                self.value = count_clients(text, time.time())
        return self.value


class LinkLocal:
    """Our fe80:: address per mesh interface, re-read at most once a minute (ifaddr is slow)."""

    def __init__(self, ifaces: list[str]) -> None:
        self.ifaces = ifaces
        self.at = -1e18
        self.value: dict[str, str] = {}
        self.index: dict[str, int] = {}

    def get(self) -> dict[str, str]:
        if time.monotonic() - self.at > 60:
            self.at = time.monotonic()
            found = system.local_addresses(self.ifaces)
            self.value = {
                la.iface: la.address.split("%", 1)[0]
                for la in found
                if la.network.version == 6 and la.address.lower().startswith("fe80")
            }
            self.index = {la.iface: la.index for la in found if la.index}
        return self.value


def _ll(address: str) -> bool:
    return address.lower().startswith("fe80")


def respondd_self(agent: AgentLike, ll: LinkLocal, clients: Clients) -> respondd.Self:
    """This node as respondd shows it: its own records as held in its store."""

    def body(kind: Kind) -> Any:
        env = agent.store.get(agent.node_id, kind)
        return None if env is None else env.body

    node, links, traffic = body(Kind.NODE), body(Kind.LINKS), body(Kind.TRAFFIC)
    addresses: dict[str, str] = {}
    babel = getattr(agent, "babel", None)
    for n in agent.neighbours.entries.values():
        # yanic keys babel neighbours by the link-local address their nodeinfo lists
        b = build.babel_for(n, babel) if babel is not None else None
        lls = [a for a in (b.address if b else "", n.address, *n.advertised) if _ll(a)]
        if lls:
            addresses[n.node_id] = lls[0]
    return respondd.Self(
        agent.node_id,
        node if isinstance(node, NodeBody) else None,
        links if isinstance(links, LinksBody) else None,
        traffic if isinstance(traffic, TrafficBody) else None,
        community=agent.community.name,
        clients=clients.get(),
        babeld_version=getattr(agent, "babeld_version", None),
        own_link_local=ll.get(),
        neighbour_address=addresses,
    )


async def start_respondd(agent: AgentLike) -> asyncio.DatagramTransport | None:
    """Answer respondd on the configured port (0: off), joined on every mesh interface."""
    port = getattr(agent.config, "respondd_port", 0)
    if not port:
        return None
    ll, clients = LinkLocal(list(agent.config.mesh_ifaces)), Clients()
    ll.get()
    try:
        transport, _ = await respondd.serve(
            lambda: respondd_self(agent, ll, clients), ll.index, port
        )
    except OSError as exc:
        log.info("respondd: cannot listen on udp/%d (%s)", port, exc)
        return None
    log.info("respondd: answering on udp/%d, %d interface(s)", port, len(ll.index))
    return transport
