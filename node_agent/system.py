"""The agent's edges to the kernel and the disk: sysfs, nftables, iw, boot id, atomic files."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshd import defaults

log = logging.getLogger("meshd.system")
SYS_NET = Path("/sys/class/net")


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def uptime_s() -> int:
    try:
        return int(float(Path("/proc/uptime").read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        return 0


def iface_stats(iface: str) -> dict[str, int] | None:
    """rx/tx bytes and packets of one interface, or None when it is gone."""
    base = SYS_NET / iface / "statistics"
    try:
        return {
            name: int((base / name).read_text())
            for name in ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets")
        }
    except (OSError, ValueError):
        return None


def iface_index(iface: str) -> int | None:
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        return None


def is_wifi(iface: str) -> bool:
    path = SYS_NET / iface
    return (path / "phy80211").exists() or (path / "wireless").exists()


def iface_medium(iface: str) -> str:
    path = SYS_NET / iface
    if (path / "phy80211").exists() or (path / "wireless").exists():
        return "wifi"
    if (path / "tun_flags").exists():
        return "tap"
    try:
        if "/virtual/" in str(path.resolve()):
            return "veth"
    except OSError:
        return "other"
    return "ethernet"


@dataclass(frozen=True, slots=True)
class LocalAddress:
    iface: str
    index: int
    address: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network


def local_addresses(ifaces: list[str]) -> list[LocalAddress]:
    """Addresses on the given interfaces (ifaddr is what zeroconf already loaded)."""
    import ifaddr

    wanted = set(ifaces)
    out: list[LocalAddress] = []
    for adapter in ifaddr.get_adapters():
        if adapter.nice_name not in wanted:
            continue
        for ip in adapter.ips:
            addr = ip.ip[0] if isinstance(ip.ip, tuple) else ip.ip
            try:
                net = ipaddress.ip_interface(f"{addr}/{ip.network_prefix}").network
            except ValueError:
                continue
            out.append(LocalAddress(adapter.nice_name, int(adapter.index or 0), addr, net))
    return out


# -- files ------------------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Kept for callers of the old name: `node_agent.fsutil.atomic_write` is the writer."""
    from node_agent.fsutil import atomic_write

    atomic_write(path, data, 0o644, durable=durable)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable state (%s); starting from a fresh state", path, exc)
        return None
    return data if isinstance(data, dict) else None


# -- commands ---------------------------------------------------------------------------------


async def run(*argv: str, stdin: bytes | None = None, limit_s: float = 5.0) -> tuple[int, str]:
    """Run a short command; (returncode, stdout). A missing tool reads as failure, not a crash."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return 127, str(exc)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return 124, "timeout"
    if proc.returncode:
        return proc.returncode, err.decode(errors="replace").strip()
    return 0, out.decode(errors="replace")


# -- nftables accounting ----------------------------------------------------------------------


def _set(names: list[str]) -> str:
    return "{ " + ", ".join(f'"{n}"' for n in names) + " }"


def control_plane_skip(table: str, chain: str) -> list[str]:
    """Rules that let the mesh's own control plane through uncounted: record replication
    (broker), link probes, babel and mDNS go one hop to a neighbour, are nobody's consumption
    and no endpoint's flow (the contribution checks allow for them as `control`)."""
    udp = ", ".join(
        str(p) for p in sorted((defaults.PROBE_PORT, defaults.BABEL_PORT, defaults.MDNS_PORT))
    )
    return [
        f"add rule inet {table} {chain} {proto} {way} {ports} return"
        for proto, ports in (("udp", f"{{ {udp} }}"), ("tcp", str(defaults.BROKER_PORT)))
        for way in ("dport", "sport")
    ]


def own_chains(table: str, priority: int) -> list[str]:
    """The output and input hooks of `table`, for the router's own traffic (flushed like the
    forward chain), each starting with the control-plane exceptions."""
    lines: list[str] = []
    for chain, hook in (("own_out", "output"), ("own_in", "input")):
        lines += [
            f"add chain inet {table} {chain} "
            f"{{ type filter hook {hook} priority {priority}; policy accept; }}",
            f"flush chain inet {table} {chain}",
            *control_plane_skip(table, chain),
        ]
    return lines


def nft_script(table: str, mesh: list[str], gateway: str | None, clients: list[str]) -> str:
    """Our own table: named counters in the forward hook, and in the output and input hooks for
    the router's own mesh traffic, which counts as consumption like its clients' ("client").
    `add` keeps existing counters (a restart after kill -9 resumes them); the chains are flushed
    so rules match today's interfaces."""
    lines = [
        f"add table inet {table}",
        f"add counter inet {table} forwarded",
        f"add counter inet {table} gateway",
        f"add counter inet {table} client",
        f"add chain inet {table} acct {{ type filter hook forward priority -150; policy accept; }}",
        f"flush chain inet {table} acct",
    ]
    if mesh:
        m = _set(mesh)
        lines.append(f'add rule inet {table} acct iifname {m} oifname {m} counter name "forwarded"')
        if gateway:
            lines.append(
                f'add rule inet {table} acct iifname {m} oifname "{gateway}" counter name "gateway"'
            )
    if clients:
        c = _set(clients)
        lines.append(f'add rule inet {table} acct iifname {c} counter name "client"')
        lines.append(f'add rule inet {table} acct oifname {c} counter name "client"')
    lines += own_chains(table, -150)
    if mesh:
        lines.append(f'add rule inet {table} own_out oifname {m} counter name "client"')
        lines.append(f'add rule inet {table} own_in iifname {m} counter name "client"')
    return "\n".join(lines) + "\n"


class Nft:
    """The agent's nftables table: created at start, read each cycle, deleted on clean exit."""

    def __init__(self, table: str, mesh: list[str], gateway: str | None, clients: list[str]):
        self.table = table
        self.script = nft_script(table, mesh, gateway, clients)
        self.handle: int | None = None

    async def setup(self) -> bool:
        rc, out = await run("nft", "-f", "-", stdin=self.script.encode())
        if rc:
            log.warning("nftables accounting unavailable (%s); transit counters stay at 0", out)
            return False
        rc, out = await run("nft", "-j", "list", "table", "inet", self.table)
        if rc == 0:
            for item in json.loads(out).get("nftables", []):
                if "table" in item:
                    self.handle = int(item["table"].get("handle", 0))
        return True

    async def counters(self) -> dict[str, tuple[int, int]]:
        """{name: (bytes, packets)}."""
        rc, out = await run("nft", "-j", "list", "counters", "table", "inet", self.table)
        if rc:
            return {}
        result: dict[str, tuple[int, int]] = {}
        try:
            for item in json.loads(out).get("nftables", []):
                c = item.get("counter")
                if c:
                    result[str(c["name"])] = (int(c["bytes"]), int(c["packets"]))
        except (ValueError, KeyError, TypeError):
            return {}
        return result

    async def remove(self) -> None:
        rc, out = await run("nft", "delete", "table", "inet", self.table)
        if rc:
            log.warning("could not delete nftables table %s: %s", self.table, out)


# -- per-MAC counters on shared media -----------------------------------------------------------

ETHER_HEADER = 14  # ingress sees frames without it; interface counters and egress include it


def mac_nft_script(table: str, ifaces: list[str], *, egress: bool = True) -> str:
    """A netdev table counting bytes per peer MAC on each interface: a dynamic set per direction
    whose elements carry counters, filled by every frame in (ether saddr) and out (ether
    daddr). Sets and chains are numbered by position in `ifaces` (any interface name works)."""
    lines = [f"add table netdev {table}"]
    for i, iface in enumerate(ifaces):
        hooks = [("in", "ingress", "rx", "saddr")]
        if egress:
            hooks.append(("out", "egress", "tx", "daddr"))
        for chain, hook, direction, field_ in hooks:
            lines += [
                f"add set netdev {table} {direction}{i} "
                "{ type ether_addr; size 1024; flags dynamic; counter; }",
                f"add chain netdev {table} {chain}{i} "
                f'{{ type filter hook {hook} device "{iface}" priority -150; policy accept; }}',
                f"flush chain netdev {table} {chain}{i}",
                f"add rule netdev {table} {chain}{i} update @{direction}{i} {{ ether {field_} }}",
            ]
    return "\n".join(lines) + "\n"


MacTotals = dict[str, dict[str, int]]  # mac -> {rx_bytes, rx_packets, tx_bytes, tx_packets}


def parse_mac_sets(text: str, ifaces: list[str]) -> dict[str, MacTotals]:
    """`nft -j list table netdev T` -> {iface: {mac: counters}}; rx bytes get the Ethernet
    header added back so they compare with the interface's own counters."""
    out: dict[str, MacTotals] = {iface: {} for iface in ifaces}
    try:
        items = json.loads(text).get("nftables", [])
    except (ValueError, AttributeError):
        return out
    for item in items if isinstance(items, list) else []:
        s = item.get("set") if isinstance(item, dict) else None
        if not isinstance(s, dict):
            continue
        name = str(s.get("name", ""))
        direction, index = name[:2], name[2:]
        if direction not in ("rx", "tx") or not index.isdigit() or int(index) >= len(ifaces):
            continue
        macs = out[ifaces[int(index)]]
        for elem in s.get("elem", []):
            e = elem.get("elem") if isinstance(elem, dict) else None
            if not isinstance(e, dict) or not isinstance(e.get("counter"), dict):
                continue
            mac, c = str(e.get("val", "")).lower(), e["counter"]
            try:
                nbytes, packets = int(c["bytes"]), int(c["packets"])
            except (KeyError, TypeError, ValueError):
                continue
            if direction == "rx":
                nbytes += ETHER_HEADER * packets
            row = macs.setdefault(
                mac, {"rx_bytes": 0, "rx_packets": 0, "tx_bytes": 0, "tx_packets": 0}
            )
            row[f"{direction}_bytes"], row[f"{direction}_packets"] = nbytes, packets
    return out


class MacCounters:
    """The agent's netdev table of per-MAC counters: created at start on every mesh interface
    that is not wifi (wifi has per-station counters), read each cycle, deleted on exit."""

    def __init__(
        self,
        table: str,
        ifaces: list[str],
        runner: Callable[..., Awaitable[tuple[int, str]]] | None = None,
    ) -> None:
        self.table = table
        self.ifaces = ifaces
        self.run = runner if runner is not None else run
        self.handle: int | None = None

    async def setup(self) -> bool:
        for egress in (True, False):  # the egress hook needs Linux 5.16+
            rc, out = await self.run(
                "nft",
                "-f",
                "-",
                stdin=mac_nft_script(self.table, self.ifaces, egress=egress).encode(),
            )
            if rc == 0:
                if not egress:
                    log.warning("nftables has no egress hook here: per-MAC tx counters stay at 0")
                break
        else:
            log.warning("per-MAC counters unavailable (%s); shared links are not metered", out)
            return False
        rc, out = await self.run("nft", "-j", "list", "table", "netdev", self.table)
        if rc == 0:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                for item in json.loads(out).get("nftables", []):
                    if "table" in item:
                        self.handle = int(item["table"].get("handle", 0))
        return True

    async def read(self) -> dict[str, MacTotals]:
        rc, out = await self.run("nft", "-j", "list", "table", "netdev", self.table)
        return parse_mac_sets(out, self.ifaces) if rc == 0 else {}

    async def remove(self) -> None:
        rc, out = await self.run("nft", "delete", "table", "netdev", self.table)
        if rc:
            log.warning("could not delete nftables table netdev %s: %s", self.table, out)
