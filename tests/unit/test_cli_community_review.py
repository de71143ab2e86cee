"""meshd.community.review_community: the one check of a community file, problems and signers."""

from __future__ import annotations

from meshd.community import review_community
from meshd.ids import SigningKey
from meshd.trust import admin_signature, community_message
from tests.meshgen import SyntheticMesh


def test_unsigned_is_fine_only_when_signatures_are_not_required():
    data = SyntheticMesh.chain(2).community_data()
    assert review_community(data).problems == ()
    required = review_community(data, require_signatures=True)
    assert [p.path for p in required.problems] == ["signatures"]
    assert required.community is not None
    assert not required.signed


def test_signed_by_its_admin_and_not_by_a_stranger():
    mesh = SyntheticMesh.chain(2)
    data = mesh.community_data()
    stranger = SigningKey.generate()
    data["signatures"] = [admin_signature(stranger, community_message(data))]
    review = review_community(data, require_signatures=True)
    assert review.signers == frozenset()
    assert review.signatures_present == 1
    assert review.problems
    data["signatures"].append(admin_signature(mesh.admin, community_message(data)))
    review = review_community(data, require_signatures=True)
    assert review.problems == ()
    assert review.signers == {mesh.admin.public}
    assert review.signed


def test_broken_structure_lists_every_problem_and_no_community():
    data = SyntheticMesh.chain(2).community_data()
    data["threshold"] = 0
    data["mesh_id"] = "Not A Slug"
    review = review_community(data, require_signatures=True)
    assert review.community is None
    assert {p.path for p in review.problems} == {"threshold", "mesh_id"}
    assert review_community(["not", "a", "mapping"]).community is None
