"""`mutualmesh diagnose --mtu / --trace / --rogue` on a real 3-node chain (babeld routing).

The CLI runs inside n1 (or n3) and crafts its packets with scapy there; the mesh picture comes
from a snapshot signed by the real core whose nodes carry the lab's addresses, so no agents are
needed. A rogue DHCP server and IPv6 router is a real dnsmasq in n2 serving n1's link only.
All traffic stays inside the lab's namespaces.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.lab import netns
from cli.lab.lab import Lab
from cli.lab.topology import chain
from tests.lab.labkit import lab_name, running_lab
from tests.meshgen import SyntheticMesh

pytestmark = pytest.mark.lab

MUTUALMESH = str(Path(sys.executable).parent / "mutualmesh")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab(lab_name("dp"), chain(3)) as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def mesh_files(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A signed snapshot of the chain whose nodes publish the lab's loopback addresses."""
    mesh = SyntheticMesh.chain(3)
    for name, node in mesh.nodes.items():
        node.addresses = (lab.addr(name),)
    tmp = tmp_path_factory.mktemp("probes")
    community = mesh.write_community(tmp / "community.yaml")
    snap = mesh.write_snapshot(tmp / "snap.json")
    return ["--snapshot", str(snap), "--community", str(community)]


def cli(lab: Lab, node: str, *args: str, timeout: float = 90) -> tuple[int, str, str]:
    proc = subprocess.run(
        netns.nsexec(lab.ns(node), MUTUALMESH, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


def cli_json(lab: Lab, node: str, *args: str) -> tuple[int, Any]:
    code, out, err = cli(lab, node, *args, "--json")
    try:
        return code, json.loads(out)
    except ValueError:
        raise AssertionError(f"no JSON from `{' '.join(args)}` ({code}): {out}{err}") from None


def ip(lab: Lab, node: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "-n", lab.ns(node), *args], capture_output=True, text=True, check=True
    ).stdout


def owners(lab: Lab) -> dict[str, str]:
    """Every IPv4 address in the lab -> the node that holds it (loopback and link ends)."""
    found = {}
    for node in lab.node_names():
        for line in ip(lab, node, "-4", "-o", "addr", "show").splitlines():
            found[line.split()[3].split("/")[0]] = node
    return found


def test_path_mtu_finds_the_lowered_hop(lab: Lab, mesh_files: list[str]) -> None:
    _, full = cli_json(lab, "n1", "diagnose", "n1", "n2", "--mtu", *mesh_files)
    assert full["path_mtu"] == 1500  # the first hop alone is untouched
    ip(lab, "n2", "link", "set", "dev", "to-n3", "mtu", "1400")
    ip(lab, "n3", "link", "set", "dev", "to-n2", "mtu", "1400")
    try:
        code, low = cli_json(lab, "n1", "diagnose", "n1", "n3", "--mtu", *mesh_files)
    finally:
        ip(lab, "n2", "link", "set", "dev", "to-n3", "mtu", "1500")
        ip(lab, "n3", "link", "set", "dev", "to-n2", "mtu", "1500")
    assert code == 0
    assert low["path"] == ["n1", "n2", "n3"]
    assert low["path_mtu"] == 1400


def test_trace_lists_the_hops_in_order(lab: Lab, mesh_files: list[str]) -> None:
    code, out = cli_json(lab, "n1", "diagnose", "n1", "n3", "--trace", *mesh_files)
    assert code == 0
    where = owners(lab)
    hops = [(t["ttl"], where.get(t["from"] or "", t["from"])) for t in out["trace"]]
    assert hops == [(1, "n2"), (2, "n3")]
    assert out["trace"][-1]["from"] == lab.addr("n3")
    code, text, _ = cli(lab, "n1", "diagnose", "n1", "n3", "--trace", *mesh_files)
    assert code == 0
    assert f"  2  {lab.addr('n3')}" in text


def ip_ss(lab: Lab, node: str) -> str:
    """The UDP sockets listening in a node, as `ss` lists them."""
    return subprocess.run(
        netns.nsexec(lab.ns(node), "ss", "-H", "-uln"), capture_output=True, text=True, check=False
    ).stdout


@pytest.fixture
def rogue_dnsmasq(lab: Lab, tmp_path: Path) -> Iterator[str]:
    """dnsmasq in n2 handing out IPv4 leases and advertising an IPv6 prefix on n2's link to n1
    only. Yields n2's link-local address there (the source of its router advertisements)."""
    dnsmasq = shutil.which("dnsmasq")
    if dnsmasq is None:
        pytest.skip("dnsmasq missing (Debian package dnsmasq-base; run scripts/setup)")
    ip(lab, "n2", "addr", "add", "192.168.77.1/24", "dev", "to-n1")
    ip(lab, "n2", "addr", "add", "fd99:77::1/64", "dev", "to-n1", "nodad")
    log = tmp_path / "dnsmasq.log"
    argv = [
        dnsmasq,
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--port=0",  # no DNS, only DHCP and RA
        "--interface=to-n1",
        "--bind-interfaces",
        "--user=root",
        "--leasefile-ro",
        "--pid-file=",
        f"--log-facility={log}",
        "--dhcp-range=192.168.77.50,192.168.77.99,255.255.255.0,1h",
        "--enable-ra",
        "--dhcp-range=fd99:77::,ra-only",
    ]
    proc = subprocess.Popen(netns.nsexec(lab.ns("n2"), *argv), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while ":67 " not in ip_ss(lab, "n2"):  # ready once its DHCP socket is bound
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(
                    f"dnsmasq did not start: {proc.stderr.read() if proc.stderr else ''}"
                )
            time.sleep(0.05)
        lines = ip(lab, "n2", "-6", "-o", "addr", "show", "dev", "to-n1", "scope", "link")
        yield lines.split()[3].split("/")[0]
    finally:
        proc.terminate()
        proc.wait(10)
        ip(lab, "n2", "addr", "del", "192.168.77.1/24", "dev", "to-n1")
        ip(lab, "n2", "addr", "del", "fd99:77::1/64", "dev", "to-n1")


def test_rogue_dhcp_and_ra_flagged_only_where_they_answer(lab: Lab, rogue_dnsmasq: str) -> None:
    code, found = cli_json(lab, "n1", "diagnose", "--rogue", "to-n2")
    servers = found["dhcp_servers"]
    assert len(servers) == 1
    assert owners(lab)[servers[0]] == "n2"  # dnsmasq answers from one of n2's addresses
    assert found["router_advertisers"] == [rogue_dnsmasq]
    assert code == 3  # findings
    code, clean = cli_json(lab, "n3", "diagnose", "--rogue", "to-n2")
    assert (clean["dhcp_servers"], clean["router_advertisers"]) == ([], [])
    assert code == 0
    code, out, err = cli(lab, "n3", "diagnose", "--rogue", "no-such-if")
    assert code == 1
    assert "cannot probe no-such-if" in out + err
