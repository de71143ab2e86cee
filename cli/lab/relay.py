"""A userspace delay line between two namespaces: the lab's stand-in for netem.

It creates one TAP device in each namespace and copies Ethernet frames between them, holding
each frame for the configured one-way delay, plus a uniform random jitter of up to +-jitter. The
queue is FIFO, so frames are never reordered: a frame whose draw would overtake the previous one
leaves right after it (as netem does with a rate or a FIFO child qdisc). The TAPs are not
persistent: they vanish when this process exits, so killing it is the whole cleanup.

    python -m cli.lab.relay --a NS_A:IF_A --b NS_B:IF_B --params FILE

FILE is JSON `{"a_to_b": {"delay_ms": 25, "jitter_ms": 5}, "b_to_a": {"delay_ms": 25}}`
(`jitter_ms` is optional); SIGUSR1 re-reads it.
The process should itself run inside NS_A (`ip netns exec NS_A ...`) so the lab's namespace sweep
finds it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import fcntl
import json
import os
import random
import signal
import struct
import sys
from pathlib import Path

from cli.lab import netns

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def open_tap(ns: str, iface: str) -> int:
    """Create TAP `iface` inside `ns` and return its file descriptor (non-blocking)."""
    with netns.entered(ns):
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", iface.encode(), IFF_TAP | IFF_NO_PI))
        except OSError:
            os.close(fd)
            raise
    return fd


def next_due(now: float, delay_s: float, jitter_s: float, last_due: float, draw: float) -> float:
    """When a frame that arrives `now` leaves: delay plus jitter (`draw` in [-1, 1]), FIFO."""
    hold = max(0.0, delay_s + jitter_s * draw)
    return max(now + hold, last_due)


class Direction:
    """One direction of the link: frames wait in a FIFO until their due time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, src: int, dst: int) -> None:
        self.loop = loop
        self.src = src
        self.dst = dst
        self.delay_s = 0.0
        self.jitter_s = 0.0
        self.last_due = 0.0
        self.rng = random.Random()
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        self.forwarded = 0
        self.dropped = 0
        loop.add_reader(src, self.on_readable)

    def on_readable(self) -> None:
        while True:
            try:
                frame = os.read(self.src, 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not frame:
                return
            if self.delay_s <= 0 and self.jitter_s <= 0 and not self.queue:
                self.send(frame)
                continue
            draw = self.rng.uniform(-1.0, 1.0)
            now = self.loop.time()
            self.last_due = next_due(now, self.delay_s, self.jitter_s, self.last_due, draw)
            self.queue.append((self.last_due, frame))
            if self.timer is None:
                self.timer = self.loop.call_at(self.queue[0][0], self.release)

    def send(self, frame: bytes) -> None:
        try:
            os.write(self.dst, frame)
            self.forwarded += 1
        except OSError:  # the far TAP is down or its queue is full: the frame is lost
            self.dropped += 1

    def release(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now + 0.0002:
            self.send(self.queue.popleft()[1])
        if self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self.release)


def _endpoint(text: str) -> tuple[str, str]:
    ns, sep, iface = text.partition(":")
    if not sep or not ns or not iface or len(iface) > 15:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAMESPACE:IFACE (iface <= 15 chars)")
    return ns, iface


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.lab.relay", description=__doc__)
    parser.add_argument("--a", type=_endpoint, required=True)
    parser.add_argument("--b", type=_endpoint, required=True)
    parser.add_argument("--params", type=Path, required=True)
    args = parser.parse_args(argv)
    fd_a = open_tap(*args.a)
    fd_b = open_tap(*args.b)
    loop = asyncio.new_event_loop()
    a_to_b = Direction(loop, fd_a, fd_b)
    b_to_a = Direction(loop, fd_b, fd_a)

    def load() -> None:
        try:
            params = json.loads(args.params.read_text(encoding="utf-8"))
            for d, key in ((a_to_b, "a_to_b"), (b_to_a, "b_to_a")):
                d.delay_s = float(params[key]["delay_ms"]) / 1000
                d.jitter_s = float(params[key].get("jitter_ms", 0.0)) / 1000
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            print(f"relay: cannot use {args.params}: {exc}", file=sys.stderr, flush=True)
            return
        print(
            f"relay: delay a->b {a_to_b.delay_s * 1000:g}+-{a_to_b.jitter_s * 1000:g} ms,"
            f" b->a {b_to_a.delay_s * 1000:g}+-{b_to_a.jitter_s * 1000:g} ms",
            flush=True,
        )

    load()
    loop.add_signal_handler(signal.SIGUSR1, load)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.add_signal_handler(signal.SIGINT, loop.stop)
    print(f"relay: ready {args.a[0]}:{args.a[1]} <-> {args.b[0]}:{args.b[1]}", flush=True)
    try:
        loop.run_forever()
    finally:
        print(
            f"relay: a->b forwarded {a_to_b.forwarded} dropped {a_to_b.dropped};"
            f" b->a forwarded {b_to_a.forwarded} dropped {b_to_a.dropped}",
            flush=True,
        )
        loop.close()
        os.close(fd_a)
        os.close(fd_b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
