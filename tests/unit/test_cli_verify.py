"""Verification split over forked workers gives exactly the store a single pass gives, refusals
and revocations included."""

from __future__ import annotations

import pytest

from cli.read import verify as climesh
from meshd.errors import RejectReason
from meshd.trust import Revocation
from tests.meshgen import SyntheticMesh


def test_split_verification_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(climesh, "PARALLEL_MIN_RECORDS", 0)
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

    one = climesh.verify(mesh.trust, wire, mesh.now, revocations=[revocation], workers=1)
    split = climesh.verify(mesh.trust, wire, mesh.now, revocations=[revocation], workers=3)

    assert split.state() == one.state()
    assert split.rejections == one.rejections
    assert sorted(split.revoked) == sorted(one.revoked) == [revoked.node_id]
    # the newest three records of every node but the revoked one, and nothing else
    expected = {e.raw for e in latest if e.node_id != revoked.node_id}
    assert set(one.state().values()) == expected
    assert len(expected) == 3 * 11
    assert one.rejections[RejectReason.BAD_SIGNATURE] == 1
    assert one.rejections[RejectReason.REVOKED] == 6
