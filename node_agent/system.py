"""The agent's edges to the kernel and the disk: sysfs, nftables, iw, boot id, atomic files."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """Temp file, fsync, rename, fsync the directory: a crash leaves the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


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


def nft_script(table: str, mesh: list[str], gateway: str | None, clients: list[str]) -> str:
    """Our own table: named counters in the forward hook. `add` keeps existing counters (a
    restart after kill -9 resumes them); the chain is flushed so rules match today's interfaces."""
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
