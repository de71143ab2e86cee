"""The audit on meshes built with the real core: each kind of trouble, and a clean mesh."""

from __future__ import annotations

import contextlib

import pytest

from meshd.audit import AuditInput, AuditPolicy, audit
from meshd.community import parse_community
from meshd.contrib import Check, contributions, cost_share, regressions
from meshd.errors import RejectReason
from meshd.records import Location, MeshConfig, TrafficBody
from meshd.store import RecordStore
from meshd.topology import MeshView
from meshd.trust import Enrollment, Revocation
from tests.meshgen import LinkSpec, SyntheticMesh


def run(mesh: SyntheticMesh, store: RecordStore | None = None, **extra):
    store = store or mesh.store()
    view = MeshView.build(store, mesh.now)
    items = contributions(view)
    community = parse_community(mesh.community_data())
    data = AuditInput(
        view, items, community, dict(store.rejections), sorted(store.revoked), **extra
    )
    return audit(data)


def codes(result) -> set[str]:
    return {f.code for f in result.findings}


def healthy_ring() -> SyntheticMesh:
    mesh = SyntheticMesh.ring(6)
    mesh.nodes["n1"].gateway_kbit = 50_000
    mesh.nodes["n4"].gateway_kbit = 50_000
    return mesh


def test_healthy_ring_is_clean():
    mesh = healthy_ring()
    mesh.flow("n2", "n1", 5_000_000, via_gateway=True)
    mesh.flow("n5", "n4", 5_000_000, via_gateway=True)
    result = run(mesh)
    assert result.findings == []
    assert result.stats["components"] == 1


def test_inflated_relay_claim_is_flagged_with_figures():
    mesh = SyntheticMesh.ring(6)
    mesh.flow("n1", "n4", 4_000_000)
    honest = [f for f in mesh.nodes.values() if f.forwarded]
    assert honest
    liar = honest[0]
    mesh.claim(liar.hostname, forwarded_bytes=liar.forwarded * 10)
    result = run(mesh)
    found = [f for f in result.findings if f.code == "unverified-relayed"]
    assert [f.subject for f in found] == [liar.hostname]
    assert found[0].figures["claimed"] == liar.forwarded * 10
    assert f"{liar.forwarded:,}" in found[0].summary


def test_honest_relays_verify_within_loss():
    mesh = SyntheticMesh.chain(5)
    mesh.link("n2", "n3", loss=0.05)
    sent = 20_000_000
    mesh.flow("n1", "n5", sent)
    view = MeshView.build(mesh.store(), mesh.now)
    items = {c.hostname: c for c in contributions(view)}
    for relay in ("n2", "n3", "n4"):
        fig = items[relay].relayed
        assert fig.check is Check.VERIFIED
        assert abs(fig.value - sent) <= 0.10 * sent
    assert items["n1"].relayed.value == 0


def test_pairwise_counter_disagreement():
    mesh = SyntheticMesh.chain(3)
    mesh.flow("n1", "n3", 10_000_000)
    n2 = mesh.nodes["n2"]
    n1_id = mesh.nodes["n1"].node_id
    mesh.nodes["n1"].tx["n2"] = 50_000_000  # n1 says it sent five times what n2 got
    mesh.freeze("n1")  # a second before n2: records of one second are unordered
    mesh.advance(1)
    result = run(mesh)
    mismatch = [f for f in result.findings if f.code == "counter-mismatch"]
    assert mismatch
    assert mismatch[0].subject == "n1–n2"  # a dispute of the link, both names, no verdict
    assert mismatch[0].figures["sender"] == "n1"
    assert n2.rx["n1"] == mismatch[0].figures["received"]
    assert n1_id


def test_counter_regression_needs_no_reboot():
    mesh = SyntheticMesh.chain(3)
    mesh.flow("n1", "n3", 10_000_000)
    before = {e.node_id: e.body for e in mesh.store() if isinstance(e.body, TrafficBody)}
    mesh.nodes["n2"].forwarded = 1_000  # went down, same boot
    now = {e.node_id: e.body for e in mesh.store() if isinstance(e.body, TrafficBody)}
    regs = regressions(now, before)
    assert [(r.counter, r.after) for r in regs] == [("forwarded_bytes", 1_000)]
    result = run(mesh, regressions=regs)
    assert "counter-regression" in codes(result)
    # a restarted count is not a regression
    mesh.nodes["n2"].since += 100
    now = {e.node_id: e.body for e in mesh.store() if isinstance(e.body, TrafficBody)}
    assert regressions(now, before) == []


def test_partition_names_where_it_was_attached():
    mesh = SyntheticMesh.chain(5)
    mesh.nodes["n1"].gateway_kbit = 10_000
    mesh.cut("n4", "n5")
    result = run(mesh)
    part = [f for f in result.findings if f.code == "partition"]
    assert len(part) == 1
    assert part[0].figures["nodes"] == ["n5"]
    assert part[0].figures["attached_through"] == ["n4"]
    unreachable = [f for f in result.findings if f.code == "gateway-unreachable"]
    assert unreachable
    assert "n5" in unreachable[0].subject


def test_single_points_of_failure_on_a_chain():
    result = run(SyntheticMesh.chain(4))
    points = {
        f.subject: f.figures["cut_off"] for f in result.findings if f.code == "articulation-point"
    }
    assert points == {"n2": 1, "n3": 1}
    bridges = {f.subject for f in result.findings if f.code == "bridge"}
    assert bridges == {"n1–n2", "n2–n3", "n3–n4"}


def test_path_concentration_on_a_star():
    mesh = SyntheticMesh()
    mesh.add_node("hub")
    for i in range(6):
        mesh.add_node(f"leaf{i}")
        mesh.link("hub", f"leaf{i}")
    result = run(mesh)
    conc = [f for f in result.findings if f.code == "path-concentration"]
    assert [f.subject for f in conc] == ["hub"]
    assert conc[0].figures["share"] == pytest.approx(1.0)


def test_stale_node_and_uplink_concentration():
    mesh = healthy_ring()
    mesh.nodes["n1"].gateway_kbit = 900_000
    envs = mesh.envelopes()
    old = [
        e
        for e in mesh.envelopes(issued_at=mesh.now - 3000)
        if e.node_id == mesh.nodes["n3"].node_id
    ]
    store = RecordStore(mesh.trust)
    for e in envs:
        if e.node_id != mesh.nodes["n3"].node_id:
            store.offer(e.raw, mesh.now)
    for e in old:
        store.offer(e.raw, mesh.now)
    result = run(mesh, store)
    assert [f.subject for f in result.findings if f.code == "stale-node"] == ["n3"]
    up = [f for f in result.findings if f.code == "uplink-concentration"]
    assert up
    assert up[0].subject == "n1"


def test_address_conflict_and_config_drift():
    mesh = healthy_ring()
    mesh.nodes["n2"].addresses = mesh.nodes["n3"].addresses
    mesh.nodes["n5"].config = MeshConfig("othermesh", "babel", {"5g": 44})
    result = run(mesh)
    conflict = [f for f in result.findings if f.code == "address-conflict"]
    assert conflict
    assert conflict[0].figures["nodes"] == ["n2", "n3"]
    drift = [f for f in result.findings if f.code == "config-drift"]
    assert [f.subject for f in drift] == ["n5"]
    assert "mesh id" in drift[0].summary
    assert "channel 44" in drift[0].summary


def test_unenrolled_and_revoked_keys():
    mesh = healthy_ring()
    rogue_admin = SyntheticMesh(name=mesh.name)  # same community name, different admin
    intruder = rogue_admin.add_node("intruder")
    mesh.nodes["n2"].links["intruder"] = LinkSpec()
    mesh.nodes["intruder"] = intruder  # neighbours' records mention it
    rogue_admin.nodes["intruder"].links = {}
    store = RecordStore(mesh.trust)
    for raw in mesh.records():
        with contextlib.suppress(Exception):
            store.offer(raw, mesh.now)
    assert store.rejections[RejectReason.UNENROLLED] >= 1
    result = run(mesh, store)
    assert "rejected-unenrolled" in codes(result)
    unknown = [f for f in result.findings if f.code == "unknown-neighbour"]
    assert unknown
    assert unknown[0].subject == intruder.node_id

    # now the admins revoke n6; its neighbours still list it
    victim = mesh.nodes["n6"]
    rev = Revocation.issue(
        [mesh.admin],
        community=mesh.name,
        key=victim.key.public,
        issued_at=mesh.now,
        reason="stolen",
    )
    store.revoke(rev)
    result = run(mesh, store)
    assert any(
        f.code == "revoked-neighbour" and f.subject == victim.node_id for f in result.findings
    )


def test_software_drift_is_a_notice():
    mesh = healthy_ring()
    mesh.nodes["n2"].software = "mutualmesh 0.0.9"
    result = run(mesh)
    drift = [f for f in result.findings if f.code == "software-drift"]
    assert drift
    assert drift[0].severity.value == "notice"


def test_asymmetric_link_finding():
    mesh = healthy_ring()
    mesh.link("n2", "n3", ab=LinkSpec(loss=0.5), ba=LinkSpec(loss=0.0))
    result = run(mesh)
    assert [f.subject for f in result.findings if f.code == "asymmetric-link"] == ["n2–n3"]


def test_cost_share_is_base_plus_consumption():
    mesh = SyntheticMesh.chain(3)
    mesh.flow("n1", "n3", 3_000_000)
    mesh.flow("n2", "n3", 1_000_000)
    view = MeshView.build(mesh.store(), mesh.now)
    items = contributions(view)
    policy = parse_community(mesh.community_data()).contribution
    shares = {s.hostname: s for s in cost_share(items, 90.0, policy)}
    assert sum(s.total for s in shares.values()) == pytest.approx(90.0)
    assert shares["n1"].base == pytest.approx(15.0)
    consumed = {c.hostname: c.consumed.value for c in items}
    total = sum(consumed.values())
    assert shares["n1"].consumption == pytest.approx(45.0 * consumed["n1"] / total)


def test_location_and_certificates_are_real():
    # guard for the generator itself: records pass the real store, certificates name the admin
    mesh = SyntheticMesh.chain(2)
    mesh.nodes["n1"].location = Location(52.5, 13.4)
    store = mesh.store()
    assert len(store) == 6
    env = next(iter(store))
    assert isinstance(env.cert, Enrollment)
    assert env.cert.admin == mesh.admin.public


def test_partition_remembers_attachment_from_history():
    mesh = SyntheticMesh.chain(4)
    before = MeshView.build(mesh.store(), mesh.now).adjacency
    mesh.nodes["n4"].publish_links = False  # n4 went silent and n3 dropped it
    mesh.nodes["n3"].links.pop("n4")
    result = run(mesh, previous_adjacency=before)
    part = [f for f in result.findings if f.code == "partition"]
    assert len(part) == 1
    assert part[0].figures["attached_through"] == ["n3"]
    assert "attached through n3" in part[0].summary


def test_every_finding_code_belongs_to_one_check_and_is_in_the_help():
    from meshd.audit import CHECKS
    from meshd.findings import ABOUT, FindingCode
    from tests.clikit import invoke

    declared = [code for check in CHECKS for code in check.codes]
    assert sorted(declared) == sorted(FindingCode)  # each code: exactly one check
    assert set(ABOUT) == set(FindingCode)
    help_text = invoke("audit", "--help").output
    for check in CHECKS:
        assert f"{check.name}:" in help_text
    for code in FindingCode:
        assert f"{code.value} " in help_text, code


def test_checks_report_only_the_codes_they_declare():
    from meshd.audit import CHECKS
    from meshd.findings import Context
    from meshd.graph import betweenness, components, cut_points

    mesh = SyntheticMesh.chain(4)
    mesh.claim("n2", forwarded_bytes=900_000_000)
    mesh.nodes["n1"].gateway_kbit = 100_000
    mesh.nodes["n3"].software = "mutualmesh 0.0.9"
    store = mesh.store()
    view = MeshView.build(store, mesh.now)
    data = AuditInput(view, contributions(view), parse_community(mesh.community_data()))
    cx = Context(
        data,
        AuditPolicy(),
        components(view.adjacency),
        betweenness(view.adjacency),
        cut_points(view.adjacency),
    )
    seen = set()
    for check in CHECKS:
        found = []
        check.run(cx, found)
        assert {f.code for f in found} <= set(check.codes), check.name
        seen |= {f.code for f in found}
    assert {"unverified-relayed", "articulation-point", "software-drift"} <= seen


def test_one_node_state_rule_for_audit_views_and_maps(tmp_path):
    """A stale node is stale in `nodes`, offline on the meshviewer map and a stale-node finding:
    all three read meshd.nodestate, with the threshold from meshd.defaults."""
    import json

    from meshd import defaults
    from tests.clikit import invoke

    mesh = healthy_ring()
    n3 = mesh.nodes["n3"].node_id
    fresh = [e.raw for e in mesh.envelopes() if e.node_id != n3]
    old = [
        e.raw
        for e in mesh.envelopes(issued_at=mesh.now - defaults.STALE_AFTER_S - 60)
        if e.node_id == n3
    ]
    from cli.read.source import write_snapshot

    snap = tmp_path / "s.json"
    write_snapshot(snap, mesh.name, mesh.now, fresh + old, statuses={}, revocations=[])
    src = ["--community", mesh.write_community(tmp_path / "c.yaml"), "--snapshot", snap]
    nodes = json.loads(invoke("nodes", *src, "--json").output)["nodes"]
    assert {n["name"]: n["state"] for n in nodes}["n3"] == "stale"
    assert {n["state"] for n in nodes if n["name"] != "n3"} == {"online"}
    mv = json.loads(invoke("topology", "--format", "meshviewer", *src).output)["nodes"]
    assert {n["hostname"]: n["is_online"] for n in mv} == {f"n{i}": i != 3 for i in range(1, 7)}
    audit = json.loads(invoke("audit", *src, "--json").output)["findings"]
    assert [f["subject"] for f in audit if f["code"] == "stale-node"] == ["n3"]
