"""The issue's examples on crafted, validly signed records: a leaf liar, a framer, colluders that
are not linked, an under-reporter, and publish skew on an honest relay."""

from __future__ import annotations

from meshd.community import ContributionPolicy
from meshd.contrib import LEGEND, Check, Contribution, contributions, cost_share, flow_bound
from meshd.records import Kind
from meshd.topology import MeshView
from tests.meshgen import SyntheticMesh

GB = 1_000_000_000


def by_name(mesh: SyntheticMesh, **kw: object) -> dict[str, Contribution]:
    view = MeshView.build(mesh.store(), mesh.now)
    return {c.hostname: c for c in contributions(view, **kw)}  # type: ignore[arg-type]


def newest(mesh: SyntheticMesh, host: str) -> None:
    """Everyone else published a second before `host`: records of one whole second are
    unordered (either may hold the newer counters), so a verdict needs them a second apart."""
    for h in mesh.nodes:
        if h != host:
            mesh.freeze(h)
    mesh.advance(1)


def older(mesh: SyntheticMesh, host: str) -> None:
    """`host` published a second before everyone else."""
    mesh.freeze(host)
    mesh.advance(1)


def chain_with_traffic() -> SyntheticMesh:
    mesh = SyntheticMesh.chain(5)
    mesh.flow("n1", "n5", 300_000_000)
    mesh.flow("n5", "n1", 100_000_000)
    return mesh


def test_honest_chain_is_all_verified_with_its_bounds():
    items = by_name(chain_with_traffic())
    for c in items.values():
        assert c.state is Check.VERIFIED, (c.hostname, c.relayed, c.consumed)
    n3 = items["n3"].relayed
    assert n3.value == 400_000_000
    assert n3.bounds[0].limit == 400_000_000  # what n2 and n4 say entered and left n3
    assert items["n1"].relayed.bounds[0].limit == 0  # one neighbour: relays nothing


def test_flow_bound_needs_a_different_neighbour_on_the_way_out():
    assert flow_bound({"a": 100}, {"a": 100}) == 0
    assert flow_bound({"a": 100, "b": 10}, {"a": 10, "b": 100}) == 110
    assert flow_bound({"a": 100, "b": 100}, {"a": 0, "b": 50}) == 50


def test_leaf_liar_relabelling_its_traffic_as_relayed_is_contradicted():
    mesh = chain_with_traffic()
    mesh.claim("n5", forwarded_bytes=4_400_000_000)
    items = by_name(mesh)
    assert items["n5"].relayed.check is Check.CONTRADICTED
    assert "own counters" in items["n5"].relayed.evidence
    assert items["n5"].share["relayed"] == 0
    assert all(items[n].relayed.check is Check.VERIFIED for n in ("n2", "n3", "n4"))


def test_report_about_a_non_neighbour_is_a_finding_against_the_reporter_only():
    mesh = chain_with_traffic()
    mesh.claim_neighbour("n5", "n3", rx=10 * GB, tx=0)  # "n3 sent me 10 GB": they are not linked
    items = by_name(mesh)
    assert items["n5"].phantoms == [mesh.nodes["n3"].node_id]
    assert items["n3"].relayed.check is Check.VERIFIED
    assert items["n3"].state is Check.VERIFIED


def test_framing_over_a_real_link_disputes_the_link_and_never_contradicts_the_framed():
    mesh = chain_with_traffic()
    older(mesh, "n3")  # the framed published before the framer
    real = mesh.nodes["n4"]
    mesh.claim_neighbour("n4", "n3", rx=0, tx=real.tx["n3"])  # "n3 never sent me anything"
    items = by_name(mesh)
    n3 = items["n3"].relayed
    assert n3.check is Check.DISPUTED, n3
    assert n3.disputes == ("n3–n4",)
    assert items["n3"].share["relayed"] == 0  # not credited until the ends agree
    pairs = {(m.sender, m.receiver) for m in items["n3"].mismatches}
    assert (mesh.nodes["n3"].node_id, real.node_id) in pairs
    assert all(c.relayed.check is not Check.CONTRADICTED for c in items.values())


def test_colluders_that_are_not_linked_gain_nothing():
    mesh = chain_with_traffic()
    mesh.nodes["n1"].gateway_kbit = 100_000
    for a, b in (("n1", "n4"), ("n4", "n1")):
        mesh.claim_neighbour(a, b, rx=50 * GB, tx=50 * GB)
    mesh.claim("n1", forwarded_bytes=40 * GB, gateway_bytes=40 * GB)
    mesh.claim("n4", forwarded_bytes=40 * GB)
    items = by_name(mesh)
    assert items["n1"].relayed.check is Check.CONTRADICTED
    assert items["n1"].gateway.check is not Check.VERIFIED
    assert items["n4"].relayed.check is not Check.VERIFIED
    assert items["n1"].phantoms
    assert items["n4"].phantoms
    honest = ("n2", "n3")
    assert sum(items[n].share["relayed"] for n in honest) == 1.0


def test_under_reported_consumption_is_flagged_and_the_cost_share_uses_the_lower_bound():
    mesh = SyntheticMesh.chain(3)
    mesh.flow("n1", "n3", 2 * GB)
    mesh.flow("n3", "n1", 2 * GB)
    mesh.flow("n3", "n2", 400_000_000)
    policy = ContributionPolicy(base_share=0.5, consumption_share=0.5)
    fair = {s.hostname: s.total for s in cost_share(list(by_name(mesh).values()), 90.0, policy)}
    mesh.claim("n1", client_bytes=0)
    items = by_name(mesh)
    assert items["n1"].consumed.check is Check.DISPUTED  # flagged; never a verdict (router traffic)
    assert "under-report" in items["n1"].consumed.evidence
    assert items["n1"].basis_kind == "lower bound"
    assert items["n1"].basis > 2 * GB
    shares = {s.hostname: s.total for s in cost_share(list(items.values()), 90.0, policy)}
    assert shares["n1"] > 0.8 * fair["n1"], (shares, fair)


def test_under_report_below_what_peers_attest_is_disputed_naming_the_flow():
    mesh = chain_with_traffic()
    n1 = mesh.nodes["n1"]
    newest(mesh, "n1")
    mesh.claim("n1", client_bytes=1_000_000)
    # the same lie in its own link counters: only the far endpoint's attestation is left
    mesh.claim_neighbour("n1", "n2", rx=0, tx=0)
    items = by_name(mesh)
    fig = items["n1"].consumed
    assert fig.check is Check.DISPUTED, fig
    assert n1.flows["n5"][0] == 300_000_000


def test_relay_claim_beyond_attested_flows_is_not_verified():
    mesh = SyntheticMesh.ring(6)
    mesh.flow("n1", "n4", 100_000_000)
    carrier = next(n for n in mesh.nodes.values() if n.forwarded)
    # the relay and a neighbour collude on link counters, but no endpoint saw the traffic
    other = sorted(carrier.links)[0]
    extra = 5 * GB
    mesh.claim(carrier.hostname, forwarded_bytes=carrier.forwarded + extra)
    for nb in sorted(carrier.links):
        rx, tx = carrier.rx.get(nb, 0), carrier.tx.get(nb, 0)
        mesh.claim_neighbour(carrier.hostname, nb, rx + extra, tx + extra)
        node = mesh.nodes[nb]
        back = (node.rx.get(carrier.hostname, 0), node.tx.get(carrier.hostname, 0))
        mesh.claim_neighbour(nb, carrier.hostname, back[0] + extra, back[1] + extra)
    items = by_name(mesh)
    fig = items[carrier.hostname].relayed
    assert fig.check is not Check.VERIFIED, (other, fig)
    assert any("attest" in b.what for b in fig.bounds)


def test_publish_skew_makes_an_honest_relay_pending_never_contradicted():
    mesh = chain_with_traffic()
    mesh.freeze("n2")
    mesh.freeze("n4")
    mesh.advance(30)
    mesh.flow("n1", "n5", 1 * GB)  # n3 publishes after this; its neighbours published before
    items = by_name(mesh)
    assert items["n3"].relayed.check is Check.PENDING, items["n3"].relayed
    assert all(c.relayed.check is not Check.CONTRADICTED for c in items.values())
    mesh.nodes["n2"].frozen = mesh.nodes["n4"].frozen = None  # they publish again
    again = by_name(mesh)
    assert again["n3"].relayed.check is Check.VERIFIED


def test_a_counter_reset_on_a_neighbour_makes_figures_pending_not_contradicted():
    mesh = chain_with_traffic()
    mesh.advance(3600)
    mesh.reset_counters("n4")
    mesh.flow("n1", "n5", 10_000_000)
    items = by_name(mesh)
    assert items["n3"].relayed.check is Check.PENDING
    assert all(c.state is not Check.CONTRADICTED for c in items.values())


def test_every_state_has_a_legend_sentence():
    assert set(LEGEND) == set(Check)
    assert all(text and "." not in text[:-1] for text in LEGEND.values())


def audit_codes(mesh: SyntheticMesh) -> dict[str, set[str]]:
    from meshd.audit import AuditInput, audit

    view = MeshView.build(mesh.store(), mesh.now)
    result = audit(AuditInput(view, contributions(view)))
    out: dict[str, set[str]] = {}
    for f in result.findings:
        out.setdefault(f.code, set()).add(f.subject)
    return out


def test_audit_names_the_framer_the_dispute_and_the_phantom_reporter_not_the_framed():
    mesh = chain_with_traffic()
    older(mesh, "n3")
    mesh.claim_neighbour("n4", "n3", rx=0, tx=mesh.nodes["n4"].tx["n3"])
    mesh.claim_neighbour("n5", "n2", rx=10 * GB, tx=0)
    codes = audit_codes(mesh)
    assert codes["phantom-report"] == {"n5"}
    assert codes["counter-mismatch"] == {"n3–n4"}
    assert "n3" in codes["disputed-claim"]
    assert not {"unverified-relayed", "unverified-gateway", "unverified-consumed"} & set(codes)


def test_audit_flags_the_leaf_liar_and_the_under_reporter():
    mesh = chain_with_traffic()
    mesh.claim("n5", forwarded_bytes=4_400_000_000)
    mesh.claim("n1", client_bytes=0)
    newest(mesh, "n1")
    codes = audit_codes(mesh)
    assert codes["unverified-relayed"] == {"n5"}
    assert codes["disputed-claim"] == {"n1"}


def test_a_silent_neighbour_never_makes_an_honest_relay_contradicted():
    """n4's agent stopped: its links record is still live, its traffic record is gone. n3's own
    counters towards n4 still bound what n3 relayed (they used to drop out of that bound)."""
    mesh = chain_with_traffic()
    store = mesh.store()
    del store.records[(mesh.nodes["n4"].node_id, Kind.TRAFFIC)]
    view = MeshView.build(store, mesh.now)
    n3 = {c.hostname: c for c in contributions(view)}["n3"].relayed
    assert n3.check is not Check.CONTRADICTED, n3
    assert n3.check is not Check.VERIFIED  # n4's side of the link is missing: not proven either


def test_a_neighbour_that_went_leaves_the_honest_relay_unchecked_not_contradicted():
    """n4 is gone altogether (no links, no traffic record): n3's counters towards it now sit on
    a link that is not two-sided, so there is no evidence either way about those bytes."""
    mesh = chain_with_traffic()
    older(mesh, "n3")  # n3 published before its neighbours
    store = mesh.store()
    for kind in (Kind.LINKS, Kind.TRAFFIC):
        del store.records[(mesh.nodes["n4"].node_id, kind)]
    view = MeshView.build(store, mesh.now)
    n3 = {c.hostname: c for c in contributions(view)}["n3"].relayed
    assert n3.check is Check.UNCHECKED, n3


def test_a_burst_between_two_reads_of_the_same_second_is_pending_not_disputed():
    """n3 read its counters, then a burst crossed it, then n4 read its own: both records carry
    the same whole second, and the burst is far above the window's average rate × 1 s."""
    mesh = chain_with_traffic()
    mesh.freeze("n3")
    mesh.flow("n1", "n5", 300_000_000)
    items = by_name(mesh)
    assert not items["n3"].mismatches
    assert not items["n4"].mismatches
    for c in items.values():
        for fig in (c.relayed, c.gateway, c.consumed):
            assert fig.check not in (Check.DISPUTED, Check.CONTRADICTED), (c.hostname, fig)
    assert items["n4"].relayed.check is Check.PENDING, items["n4"].relayed


def test_a_relay_whose_neighbours_published_earlier_is_pending_not_disputed_on_consumption():
    """n3 counted the first flow only, n1 both, n2 publishes seconds after them: n3 has not yet
    counted what n2 forwarded to it, so n2's credited relay is short and the consumption lower
    bound, with twice the relay taken off, too high."""
    mesh = SyntheticMesh.chain(3)
    mesh.flow("n1", "n3", 10 * GB)
    mesh.freeze("n3")
    mesh.flow("n1", "n3", 30 * GB)
    mesh.freeze("n1")
    mesh.advance(5)
    fig = by_name(mesh)["n2"].consumed
    assert fig.check is Check.PENDING, fig


def test_an_under_reporting_leaf_is_still_disputed_when_its_neighbour_published_earlier():
    mesh = SyntheticMesh.chain(3)
    mesh.flow("n1", "n3", 30 * GB)
    mesh.claim("n1", client_bytes=0)
    mesh.freeze("n2")
    mesh.advance(5)
    fig = by_name(mesh)["n1"].consumed
    assert fig.check is Check.DISPUTED, fig


def test_a_forwarded_counter_read_just_before_the_links_never_disputes_the_relay():
    """The agent reads its transit counters just before its link counters (so forwarded never
    runs ahead of them): under a burst the record's forwarded figure lags its links by what
    crossed in between, and its consumption bound from its own links must allow for that."""
    mesh = SyntheticMesh.chain(3)
    mesh.flow("n1", "n3", 10 * GB)
    early = mesh.nodes["n2"].forwarded
    mesh.flow("n1", "n3", 5 * GB)  # the burst between the two reads
    mesh.claim("n2", forwarded_bytes=early)
    items = by_name(mesh)
    for fig in (items["n2"].relayed, items["n2"].consumed):
        assert fig.check not in (Check.DISPUTED, Check.CONTRADICTED), fig
