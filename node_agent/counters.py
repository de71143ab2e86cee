"""Bytes carried for each neighbour: interface, per-station (wifi) and per-MAC (shared links)
counters folded into the ledger (`meshd.accounting`), plus the nftables totals."""

from __future__ import annotations

import logging
from collections.abc import Callable

from meshd.accounting import Ledger, LinkMeters
from meshd.records import Kind, NodeBody
from meshd.store import RecordStore
from node_agent import flows, system
from node_agent.config import Config
from node_agent.neighbours import Neighbour, NeighbourTable
from node_agent.radio import RadioReader, RadioView, neighbour_macs, parse_ip_neigh
from node_agent.runtime import Runtime

log = logging.getLogger("meshd")


class Counting:
    def __init__(
        self, config: Config, rt: Runtime, neighbours: NeighbourTable, boot_id: str
    ) -> None:
        self.config = config
        self.rt = rt
        self.neighbours = neighbours
        self.boot_id = boot_id
        self.ledger = Ledger()
        self.link_meters = LinkMeters(self.ledger)
        self.shared_ifaces: set[str] = set()  # more than one neighbour heard there at once
        self.wifi_ifaces = {
            i for i in config.mesh_ifaces if i in config.wifi_ifaces or rt.sys.is_wifi(i)
        }
        self.radio: RadioReader | None = None
        self.radio_view = RadioView()
        self.macs: system.MacCounters | None = None
        self.macs_seen: dict[str, set[str]] = {}  # iface -> MACs in the last read
        self.stations_seen: dict[str, set[str]] = {}  # iface -> MACs in its last station dump
        self.nft: system.Nft | None = None
        self.nft_epoch = ""
        self.flow_table = f"{config.nft_table}_flows"
        self.flow_epoch: int | None = None  # the flow table's handle while it is up
        self.flow_peers: dict[str, tuple[str, ...]] | None = None  # what it was built for
        self.flow_totals: flows.Flows = {}  # cumulative per peer, for the traffic record
        self.on_change: Callable[[], None] = lambda: None  # a new meter or owner: save now

    def radio_reader(self) -> RadioReader | None:
        batman = self.config.batman_iface if self.config.routing == "batman-adv" else None
        if not self.wifi_ifaces and batman is None:
            return None
        return RadioReader(self.rt.sys.run, self.wifi_ifaces, batman)

    def _on_link(self, iface: str) -> list[Neighbour]:
        """The neighbours whose bytes this link carries: verified ones if any, so one fake
        identity announced on a point-to-point link does not hide the real neighbour."""
        on_link = [n for n in self.neighbours.entries.values() if n.iface == iface]
        verified = [n for n in on_link if n.verified]
        return verified or on_link

    async def read(self) -> None:
        """Fold raw counters into the ledger; a new meter, a re-anchored baseline or a link
        passing to another neighbour is saved at once, so what a restart after kill -9 resumes
        from matches what was counted (one write per such event, not per cycle)."""
        changes = self.ledger.changes
        await self._fold_counters()
        if self.ledger.changes != changes:
            self.on_change()

    def p2p_owner(self, iface: str) -> str | None:
        """The neighbour a point-to-point interface's counters belong to, None if unknown or
        shared (more than one neighbour heard there at once)."""
        on_link = self._on_link(iface)
        up = [n for n in on_link if n.up]
        if len(up) > 1 or iface in self.shared_ifaces:
            return None
        if len(up) == 1:
            return up[0].node_id
        # Nobody heard right now: the last holder keeps the link until another node shows up
        # (also just after a restart, before discovery has found anyone: owners are saved).
        previous = self.link_meters.owners.get(iface)
        return previous if all(n.node_id == previous for n in on_link) else None

    def fold_iface(self, iface: str) -> None:
        stats = self.rt.sys.iface_stats(iface)
        if stats is None:
            self.link_meters.gone(iface)
            return
        epoch = f"{self.boot_id}/{iface}#{self.rt.sys.iface_index(iface)}"
        self.link_meters.fold(iface, stats, epoch, self.p2p_owner(iface))

    async def _fold_radio(self, reader: RadioReader) -> None:
        """Per-station counters on wifi: a station's bytes are its neighbour's, also from
        before discovery (a station that shows up after our first dump counted from zero)."""
        view = self.radio_view = await reader.read(self.neighbours.entries.values())
        owner = {(iface, st.mac): node for (node, iface), st in view.stations.items()}
        for iface, stations in reader.last_stations.items():
            seen = self.stations_seen.get(iface)
            for st in stations:
                source = f"{iface}/{st.mac}"
                epoch = f"{self.boot_id}/{iface}#{self.rt.sys.iface_index(iface)}/{st.mac}"
                raw = {
                    "rx_bytes": st.rx_bytes,
                    "tx_bytes": st.tx_bytes,
                    "rx_packets": st.rx_packets,
                    "tx_packets": st.tx_packets,
                }
                self.link_meters.fold(
                    iface,
                    raw,
                    epoch,
                    # a station's MAC stays its node's: until discovery the last holder has it
                    owner.get((iface, st.mac)) or self.link_meters.owners.get(source),
                    source=source,
                    new=seen is not None and st.mac not in seen,
                )
            self.stations_seen[iface] = {st.mac for st in stations}

    async def _fold_macs(self, macs: system.MacCounters) -> None:
        """Per-MAC counters: the source for an interface once it is shared (more than one
        neighbour heard there at once); until then the interface's own counters serve and the
        MAC counters only keep their marks current, so nothing is credited twice."""
        totals = await macs.read()
        for iface, rows in totals.items():
            shared = iface in self.shared_ifaces
            owner: dict[str, str] = {}
            if shared:
                rc, out = await self.rt.sys.run("ip", "-j", "neigh", "show", "dev", iface)
                arp = parse_ip_neigh(out) if rc == 0 else {}
                for n in self.neighbours.entries.values():
                    if n.iface == iface:
                        for mac in neighbour_macs(n, arp):
                            owner[mac] = n.node_id
            seen = self.macs_seen.get(iface)
            for mac, raw in rows.items():
                source = f"{iface}/{mac}/nft"
                self.link_meters.fold(
                    iface,
                    raw,
                    f"{self.boot_id}/macnft{macs.handle}/{iface}/{mac}",
                    (owner.get(mac) or self.link_meters.owners.get(source)) if shared else None,
                    source=source,
                    new=seen is not None and mac not in seen,
                    counted_elsewhere=not shared,
                )
            self.macs_seen[iface] = set(rows)

    async def _fold_counters(self) -> None:
        # Transit counters are read before the link counters and the client counter after
        # them, so within one record forwarded and gateway bytes never run ahead of the links
        # that carried them (their bound from its own counters) and client bytes never lag
        # behind them (its consumption's lower bound): under a burst, the time of one nft call
        # is megabytes (docs/contribution.md, time alignment).
        transit = await self.nft.counters() if self.nft is not None else {}
        for iface in self.config.mesh_ifaces:
            heard = sum(n.up for n in self._on_link(iface))
            metered = self.macs is not None and iface in self.macs.ifaces
            if heard > 1 and metered and iface not in self.shared_ifaces:
                log.info("%s is shared by several neighbours: per-MAC counters from now", iface)
                self.shared_ifaces.add(iface)
            if iface not in self.wifi_ifaces:  # wifi: per station, below
                self.fold_iface(iface)
        if self.macs is not None:
            await self._fold_macs(self.macs)
        if self.radio is not None:
            await self._fold_radio(self.radio)
        if self.nft is not None:
            after = await self.nft.counters()
            read = {n: v for n, v in transit.items() if n != "client"}
            if "client" in after:
                read["client"] = after["client"]
            for name, (raw_bytes, packets) in read.items():
                # consumption as the mesh links count it (frames, Ethernet header included),
                # so an honest node's claim meets what its neighbours delivered
                extra = system.ETHER_HEADER * packets if name == "client" else 0
                nbytes = raw_bytes + extra
                self.ledger.update(f"nft/{name}/bytes", nbytes, self.nft_epoch)
                self.ledger.update(f"nft/{name}/packets", packets, self.nft_epoch)
        if self.flow_epoch is not None:
            raw = await flows.read(self.rt.sys.run, self.flow_table)
            epoch = f"{self.boot_id}/flows{self.flow_epoch}"
            self.flow_totals = flows.fold(self.ledger, raw, epoch)

    async def refresh_flows(self, store: RecordStore, own_id: str) -> None:
        """(Re)build the per-destination flow table when other nodes' addresses changed (their
        node records): at start, then whenever a node appears or renumbers. Counters survive
        a rebuild (named per peer); a refused script leaves the flows uncounted, not fatal."""
        if not self.config.nft:
            return
        peers: dict[str, tuple[str, ...]] = {}
        for node_id in store.node_ids():
            env = store.get(node_id, Kind.NODE)
            if node_id != own_id and env is not None and isinstance(env.body, NodeBody):
                peers[node_id] = env.body.addresses
        if peers == self.flow_peers:
            return
        script = flows.flows_nft_script(
            peers, self.config.mesh_ifaces, self.config.client_ifaces, self.flow_table
        )
        epoch = await flows.apply(self.rt.sys.run, script, self.flow_table)
        if epoch is None:
            if self.flow_peers is None:
                log.warning("per-destination flow counters unavailable; endpoints not attested")
            self.flow_peers = peers  # not again until the peers change
            return
        self.flow_epoch, self.flow_peers = epoch, peers

    async def setup(self) -> None:
        """nftables accounting and per-MAC counters on wired links, if enabled and possible."""
        self.radio = self.radio_reader()
        if not self.config.nft:
            return
        self.nft = system.Nft(
            self.config.nft_table,
            self.config.mesh_ifaces,
            self.config.gateway_iface,
            self.config.client_ifaces,
        )
        if await self.nft.setup():
            self.nft_epoch = f"{self.boot_id}/nft{self.nft.handle}"
        else:
            self.nft = None
        wired = [
            i
            for i in self.config.mesh_ifaces
            if i not in self.wifi_ifaces and self.rt.sys.iface_stats(i) is not None
        ]
        if wired:
            self.macs = system.MacCounters(self.config.nft_table, wired, self.rt.sys.run)
            if not await self.macs.setup():
                self.macs = None

    async def teardown(self) -> None:
        if self.flow_epoch is not None:
            rc, out = await self.rt.sys.run("nft", "delete", "table", "inet", self.flow_table)
            if rc:
                log.warning("could not delete nftables table %s: %s", self.flow_table, out)
            self.flow_epoch = None
        if self.nft is not None:
            await self.nft.remove()
        if self.macs is not None:
            await self.macs.remove()
