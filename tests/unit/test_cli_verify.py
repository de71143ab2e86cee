"""Verification split over forked workers gives exactly the store a single pass gives, refusals
and revocations included."""

from __future__ import annotations

from cli.read.verify import verify
from meshd.errors import RejectReason
from meshd.trust import Revocation
from tests.meshgen import SyntheticMesh


def test_split_verification_equals_one_pass() -> None:
    mesh = SyntheticMesh.ring(12)
    mesh.flow("n1", "n7", 5_000_000)
    records = mesh.records()
    older = records[:5]  # replayed copies: duplicates, counted once each
    mesh.advance(60)
    latest = mesh.envelopes()
    newer = [e.raw for e in latest]
    tampered = newer[3].replace(b'"seq":', b'"seq":1', 1)  # signature no longer covers it
    revoked = mesh.nodes["n5"]
    revocation = Revocation.issue(
        [mesh.admin],
        community=mesh.name,
        key=revoked.key.public,
        issued_at=mesh.now,
        reason="lost router",
    ).encode()
    wire = records + newer + older + [tampered]

    revocations = [revocation, b"[" * 3000, b"{}"]  # two hostile ones, each counted once
    one = verify(mesh.trust, wire, mesh.now, revocations=revocations, workers=1)
    split = verify(mesh.trust, wire, mesh.now, revocations=revocations, workers=3, min_parallel=0)

    assert split.state() == one.state()
    assert split.rejections == one.rejections
    assert sorted(split.revoked) == sorted(one.revoked) == [revoked.node_id]
    # the newest three records of every node but the revoked one, and nothing else
    expected = {e.raw for e in latest if e.node_id != revoked.node_id}
    assert set(one.state().values()) == expected
    assert len(expected) == 3 * 11
    assert one.rejections[RejectReason.BAD_SIGNATURE] == 1
    assert one.rejections[RejectReason.REVOKED] == 6
    assert one.rejections[RejectReason.MALFORMED] == 2
