"""Network namespace helpers: thin wrappers over `ip`, plus sockets opened inside a namespace.

Everything goes through `ip` (iproute2) rather than pyroute2 so the lab needs no extra Python
package and every step can be replayed by hand from the error message.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cli.errors import ToolFailed

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000

# Forwarding on, reverse-path filter off (babeld routes asymmetric paths), DAD off so IPv6
# link-local addresses are usable at once. `default.*` must be set before links are added.
NODE_SYSCTLS = (
    "net.ipv4.ip_forward=1",
    "net.ipv6.conf.all.forwarding=1",
    "net.ipv6.conf.default.forwarding=1",
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
)


class CommandError(ToolFailed):
    """A system command failed; the message carries the command line and its stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(
            f"`{' '.join(argv)}` failed ({returncode}): {self.stderr}",
            fix="see the command's stderr above; `mutualmesh lab down` clears a half-built lab",
        )


def run(
    argv: Sequence[str], *, input_text: str | None = None, check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output, and raise `CommandError` with stderr on failure."""
    proc = subprocess.run(
        list(argv), input=input_text, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stderr or proc.stdout)
    return proc


def nsexec(ns: str, *argv: str) -> list[str]:
    """argv that runs a command inside namespace `ns` (ip execs it, so the pid is the command's)."""
    return ["ip", "netns", "exec", ns, *argv]


def list_netns() -> list[str]:
    """Names of all named namespaces (from /run/netns, which is what `ip netns list` reads)."""
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def exists(ns: str) -> bool:
    return (NETNS_DIR / ns).exists()


def inode(ns: str) -> int | None:
    """Kernel identity of a namespace (what /proc/PID/ns/net of a process inside shows)."""
    try:
        return (NETNS_DIR / ns).stat().st_ino
    except OSError:
        return None


def add(ns: str) -> None:
    run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(nsexec(ns, "sysctl", "-qw", *NODE_SYSCTLS))


def delete(ns: str) -> None:
    """Delete a namespace; its veths and TAPs die with it. Missing is fine (idempotent)."""
    if exists(ns):
        run(["ip", "netns", "del", ns], check=False)


def pids(ns: str) -> list[int]:
    """Every process whose network namespace is `ns`, as the kernel sees it."""
    if not exists(ns):
        return []
    proc = run(["ip", "netns", "pids", ns], check=False)
    return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]


def batch(ns: str | None, commands: Sequence[str]) -> None:
    """Run many `ip` commands in one process (`ip -batch`), inside `ns` when given."""
    if not commands:
        return
    argv = ["ip", "-batch", "-"] if ns is None else ["ip", "-n", ns, "-batch", "-"]
    run(argv, input_text="\n".join(commands) + "\n")


def ip_json(ns: str, *args: str) -> list[dict[str, Any]]:
    proc = run(["ip", "-n", ns, "-j", *args], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    data = json.loads(proc.stdout)
    return data if isinstance(data, list) else []


def links_ready(ns: str, ifaces: Sequence[str]) -> bool:
    """True when every interface is up with an IPv6 link-local address (babeld needs one)."""
    if not ifaces:
        return True
    state: dict[str, bool] = {}
    for entry in ip_json(ns, "addr", "show"):
        name = str(entry.get("ifname"))
        if name not in ifaces:
            continue
        up = entry.get("operstate") in ("UP", "UNKNOWN") and "UP" in entry.get("flags", [])
        ll = any(
            a.get("family") == "inet6" and str(a.get("local", "")).startswith("fe80:")
            for a in entry.get("addr_info", [])
        )
        state[name] = up and ll
    return all(state.get(i, False) for i in ifaces)


def iface_exists(ns: str, iface: str) -> bool:
    return run(["ip", "-n", ns, "link", "show", "dev", iface], check=False).returncode == 0


def iface_counters(ns: str) -> dict[str, dict[str, int]]:
    """rx/tx bytes and packets per interface, from `ip -s -j link`."""
    out: dict[str, dict[str, int]] = {}
    for entry in ip_json(ns, "-s", "link", "show"):
        stats = entry.get("stats64", {})
        rx, tx = stats.get("rx", {}), stats.get("tx", {})
        out[str(entry.get("ifname"))] = {
            "rx_bytes": int(rx.get("bytes", 0)),
            "tx_bytes": int(tx.get("bytes", 0)),
            "rx_packets": int(rx.get("packets", 0)),
            "tx_packets": int(tx.get("packets", 0)),
        }
    return out


_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    setns = getattr(os, "setns", None)  # Python >= 3.12
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def entered(ns: str) -> Iterator[None]:
    """Run the body with this thread inside `ns`; sockets created there stay bound to `ns`."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_DIR / ns, os.O_RDONLY)
    except OSError:
        os.close(own)
        raise
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def socket_in(ns: str, family: socket.AddressFamily, kind: socket.SocketKind) -> socket.socket:
    """A socket that lives in namespace `ns` (no subprocess, no `ip netns exec`)."""
    with entered(ns):
        return socket.socket(family, kind)


def tcp_accepts(ns: str, host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something inside `ns` accepts TCP connections on host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket_in(ns, family, socket.SOCK_STREAM)
    except OSError:
        return False
    with sock:
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except OSError:
            return False
        return True


def listening(ns: str, port: int) -> bool:
    """True when a TCP socket inside `ns` listens on `port` (read via `ss`, no probe connection)."""
    proc = run(nsexec(ns, "ss", "-Hltn", f"sport = :{port}"), check=False)
    return proc.returncode == 0 and bool(proc.stdout.strip())
