"""`lab down` removes everything: after a normal run, and after the CLI was SIGKILLed mid-build."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.lab import netns, procs
from cli.lab.lab import Lab, lab_info, ns_prefix, reap_stale, run_dir_of
from cli.lab.state import lock_held
from cli.lab.topology import chain
from tests.lab.labkit import Snapshot, lab_name, netns_inodes, processes_in, skip_reason

pytestmark = pytest.mark.lab
MUTUALMESH = str(Path(sys.executable).parent / "mutualmesh")


@pytest.fixture(autouse=True)
def _needs_lab():
    reason = skip_reason()
    if reason:
        pytest.skip(reason)


def test_down_after_up_leaves_nothing():
    name = lab_name("d")
    before = Snapshot.take()
    lab = Lab(name, chain(3).with_gateways(["n2"]), agents=False)
    try:
        lab.up()
        inodes = netns_inodes(ns_prefix(name))
        assert len(inodes) == 4
        assert len(processes_in(inodes)) == 7  # 3 babeld, 3 mosquitto, 1 sink
        assert lab.impair("n1", "n2", loss=5, delay=5).delay_ms == 5  # nft table + relay
    finally:
        removed = lab.down()
    print(f"\nlab down took {lab.timings['down']:.2f}s")
    assert len(removed) == 4
    assert before.leftovers(ns_prefix(name), run_dir_of(name), inodes) == []
    again = subprocess.run(
        [MUTUALMESH, "lab", "down", "--name", name], capture_output=True, text=True
    )
    assert again.returncode == 0
    assert "nothing to remove" in again.stdout


@pytest.mark.parametrize(
    ("suffix", "kill_after"),
    [("k1", "namespaces created"), ("k2", "babeld and mosquitto started")],
)
def test_down_after_the_cli_was_killed_mid_build(suffix: str, kill_after: str):
    name = lab_name(suffix)
    before = Snapshot.take()
    cli = subprocess.Popen(
        [MUTUALMESH, "lab", "up", "--topology", "grid:3x3", "--gateway", "n1", "--name", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    inodes: set[int] = set()
    seen = []
    try:
        assert cli.stdout is not None
        for line in cli.stdout:
            seen.append(line.rstrip())
            if kill_after in line:
                inodes = netns_inodes(ns_prefix(name))
                os.kill(cli.pid, signal.SIGKILL)
                break
        cli.wait(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert cli.returncode == -signal.SIGKILL, f"the CLI was not killed mid-build: {seen}"
    assert "is up" not in "\n".join(seen)
    assert inodes, "no namespaces existed when the CLI was killed"
    # a moment after the kill, a child the builder started may still hold the lab's lock
    deadline = time.monotonic() + 10
    while (stale := lab_info(name).stale) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stale is not None, (
        "a half-built lab whose builder died must be listed as stale: "
        f"{lab_info(name)}, lock held: {lock_held(run_dir_of(name))}"
    )
    assert f"pid {cli.pid}" in stale
    # the build really was half-done: namespaces are there, nobody is cleaning up
    assert any(ns.startswith(ns_prefix(name)) for ns in netns.list_netns())
    t0 = time.monotonic()
    down = subprocess.run(
        [MUTUALMESH, "lab", "down", "--name", name], capture_output=True, text=True, timeout=60
    )
    print(
        f"\nkilled after {kill_after!r}; lab down took {time.monotonic() - t0:.2f}s: {down.stdout}"
    )
    assert down.returncode == 0, down.stderr
    assert before.leftovers(ns_prefix(name), run_dir_of(name), inodes) == []


def test_a_failed_build_removes_what_it_built(monkeypatch):
    from cli.lab import babel
    from cli.lab.lab import LabError

    name = lab_name("f")
    before = Snapshot.take()
    # babeld "crashes" at once: up must notice, say why, and leave nothing behind
    monkeypatch.setattr(babel, "argv", lambda conf, ifaces: ["sh", "-c", "echo boom; exit 3"])
    lab = Lab(name, chain(3), agents=False)
    seen: list[set[int]] = []
    real_wait = Lab._wait_ready

    def spy(self, topo, timeout):
        seen.append(netns_inodes(ns_prefix(name)))
        return real_wait(self, topo, timeout)

    monkeypatch.setattr(Lab, "_wait_ready", spy)
    with pytest.raises(LabError, match="exited") as info:
        lab.up(timeout=10)
    assert "boom" in str(info.value)
    assert seen, "the build did not get as far as starting daemons"
    assert len(seen[0]) == 3
    assert before.leftovers(ns_prefix(name), run_dir_of(name), seen[0]) == []


def test_stale_labs_are_listed_and_reaped_and_live_ones_are_kept():
    """A lab whose owning process died is stale; a lab of a live owner is left alone."""
    stale_name, live_name = lab_name("s1"), lab_name("s2")
    before = Snapshot.take()
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    stale = Lab(stale_name, chain(2), agents=False, owner=(owner.pid, procs.start_time(owner.pid)))
    live = Lab(live_name, chain(2), agents=False)  # owned by this pytest process
    try:
        stale.up()
        live.up()
        inodes = netns_inodes(ns_prefix(stale_name))
        assert lab_info(stale_name).stale is None
        owner.kill()
        owner.wait()
        listing = subprocess.run(
            [MUTUALMESH, "lab", "list"], capture_output=True, text=True, check=True
        ).stdout
        print(f"\n{listing}")
        row = next(line for line in listing.splitlines() if line.startswith(stale_name))
        assert f"STALE: its owner (pid {owner.pid}) is gone" in row
        live_row = next(line for line in listing.splitlines() if line.startswith(live_name))
        assert "STALE" not in live_row
        reaped = reap_stale(lambda name: name in (stale_name, live_name))
        assert list(reaped) == [stale_name]
        assert before.leftovers(ns_prefix(stale_name), run_dir_of(stale_name), inodes) == []
        assert lab_info(live_name).stale is None
        assert live.ping("n1", live.addr("n2"), count=2, interval=0.05).received == 2
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        live.down()
        stale.down()


def test_down_stops_a_process_that_enters_a_namespace_while_it_is_being_deleted():
    """A `lab up` killed while spawning leaves an `ip netns exec` child that no state file names
    and that enters its namespace only after `down` looked inside (seen on a loaded machine).
    Here a process holds n1's namespace open and enters it once it is unmounted."""
    name = lab_name("l")
    before = Snapshot.take()
    lab = Lab(name, chain(2), agents=False)
    late: subprocess.Popen[bytes] | None = None
    try:
        lab.up()
        inodes = netns_inodes(ns_prefix(name))
        path = netns.NETNS_DIR / lab.ns("n1")
        fd = os.open(path, os.O_RDONLY)
        script = (
            f'while [ -e "{path}" ]; do sleep 0.01; done;'
            f" exec nsenter --net=/proc/self/fd/{fd} sleep 600"
        )
        late = subprocess.Popen(["sh", "-c", script], pass_fds=[fd])
        os.close(fd)
    finally:
        lab.down()
    assert late is not None
    try:
        left = before.leftovers(ns_prefix(name), run_dir_of(name), inodes)
    finally:
        late.kill()
        late.wait()
    assert left == []
