"""Active checks that craft packets (admin side only). scapy is imported inside each function,
so the rest of the CLI never pays for it, and a router never needs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cli.errors import ToolFailed


@dataclass
class MtuResult:
    target: str
    path_mtu: int | None  # largest IPv4 packet that arrived with DF set; None if none did
    tried: list[tuple[int, bool]]


def path_mtu(target: str, *, low: int = 576, high: int = 1500, timeout: float = 1.0) -> MtuResult:
    """Binary search for the largest don't-fragment ICMP echo that gets an answer."""
    from scapy.all import ICMP, IP, Raw, sr1  # type: ignore[attr-defined]

    tried: list[tuple[int, bool]] = []

    def ok(size: int) -> bool:
        payload = b"\0" * max(0, size - 28)
        reply = sr1(IP(dst=target, flags="DF") / ICMP() / Raw(payload), timeout=timeout, verbose=0)
        good = False
        if reply is not None and reply.haslayer(ICMP):
            good = int(reply[ICMP].type) == 0
        tried.append((size, good))
        return good

    if not ok(low):
        return MtuResult(target, None, tried)
    lo, hi = low, high
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return MtuResult(target, lo, tried)


def trace(target: str, *, max_hops: int = 16, timeout: float = 1.0) -> list[tuple[int, str | None]]:
    """ICMP traceroute: (ttl, address that answered or None)."""
    from scapy.all import ICMP, IP, sr1  # type: ignore[attr-defined]

    hops: list[tuple[int, str | None]] = []
    for ttl in range(1, max_hops + 1):
        reply = sr1(IP(dst=target, ttl=ttl) / ICMP(), timeout=timeout, verbose=0)
        src = None if reply is None else str(reply[IP].src)
        hops.append((ttl, src))
        if src == target:
            break
    return hops


class ProbeError(ToolFailed):
    """An active check could not run (no such interface, no capture socket)."""

    def __init__(self, what: str) -> None:
        super().__init__(what, fix="run as root on an existing interface")


def rogue_servers(iface: str, *, timeout: float = 6.0) -> dict[str, Any]:
    """Send a DHCP discover and a router solicitation on `iface`; list who answers.

    On a mesh interface nobody should: a DHCP server or IPv6 router there hands clients a wrong
    gateway (the classic rogue-DHCP / rogue-RA problem). Replies are picked in Python
    (`lfilter`), not by a BPF expression, so libpcap is not needed.
    """
    import threading
    import time

    from scapy.all import (  # type: ignore[attr-defined]
        BOOTP,
        DHCP,
        IP,
        UDP,
        AsyncSniffer,
        Ether,
        ICMPv6ND_RA,
        ICMPv6ND_RS,
        IPv6,
        get_if_hwaddr,
        get_if_list,
        sendp,
    )
    from scapy.error import Scapy_Exception

    if iface not in get_if_list():
        raise ProbeError(f"no interface {iface!r} here")
    ready = threading.Event()

    def answer(p: Any) -> bool:
        return bool(
            (p.haslayer(BOOTP) and int(p[BOOTP].op) == 2 and p.haslayer(IP))
            or (p.haslayer(ICMPv6ND_RA) and p.haslayer(IPv6))
        )

    try:
        mac = get_if_hwaddr(iface)
        sniffer = AsyncSniffer(iface=iface, lfilter=answer, store=True, started_callback=ready.set)
        sniffer.start()
        if not ready.wait(5):
            raise ProbeError(f"could not start capturing on {iface}")
        discover = (
            Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
            / IP(src="0.0.0.0", dst="255.255.255.255")
            / UDP(sport=68, dport=67)
            / BOOTP(chaddr=bytes.fromhex(mac.replace(":", "")), xid=0x4D4D, flags=0x8000)
            / DHCP(options=[("message-type", "discover"), "end"])
        )
        solicit = Ether(src=mac, dst="33:33:00:00:00:02") / IPv6(dst="ff02::2") / ICMPv6ND_RS()
        # Three tries a second apart, as real DHCP clients retransmit, so one lost frame is not
        # "nobody answers"; then keep listening: dnsmasq (OpenWrt's DHCP server) pings an
        # address before offering it and answers about 3 s after the first discover.
        for _ in range(3):
            sendp(discover, iface=iface, verbose=0)
            sendp(solicit, iface=iface, verbose=0)
            time.sleep(1.0)
        time.sleep(max(0.0, timeout - 3.0))
        packets: list[Any] = list(sniffer.stop() or [])
    except Scapy_Exception as exc:
        raise ProbeError(str(exc)) from None
    dhcp = sorted({str(p[IP].src) for p in packets if p.haslayer(BOOTP)})
    ra = sorted({str(p[IPv6].src) for p in packets if p.haslayer(ICMPv6ND_RA)})
    return {"iface": iface, "dhcp_servers": dhcp, "router_advertisers": ra}
