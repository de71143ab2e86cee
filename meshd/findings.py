"""The audit's vocabulary: every finding code, the finding itself, and what a check reads.

`FindingCode` is the one list of what the audit can report; the `audit` command's help, the
JSON output and the tests read it from here. `ABOUT` says in a line what each code means.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from meshd import defaults
from meshd.community import Community
from meshd.contrib import Contribution, Regression
from meshd.errors import RejectReason
from meshd.graph import Betweenness, CutPoints
from meshd.topology import MeshView


class Severity(StrEnum):
    CRITICAL = "critical"  # the mesh, or trust in it, is broken for someone now
    WARNING = "warning"  # a risk or a fault that will hurt when something else goes wrong
    NOTICE = "notice"  # worth knowing; not urgent


SEVERITY_ORDER = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.NOTICE: 2}


class FindingCode(StrEnum):
    UNVERIFIED_RELAYED = "unverified-relayed"
    UNVERIFIED_GATEWAY = "unverified-gateway"
    UNVERIFIED_CONSUMED = "unverified-consumed"
    COUNTER_MISMATCH = "counter-mismatch"
    COUNTER_REGRESSION = "counter-regression"
    ONE_SIDED_LINK = "one-sided-link"
    ASYMMETRIC_LINK = "asymmetric-link"
    FLAPPING_LINK = "flapping-link"
    STALE_NODE = "stale-node"
    REJECTED_UNENROLLED = "rejected-unenrolled"
    REJECTED_BAD_SIGNATURE = "rejected-bad-signature"
    REJECTED_REVOKED = "rejected-revoked"
    REJECTED_OTHER_COMMUNITY = "rejected-other-community"
    REJECTED_NODE_ID_MISMATCH = "rejected-node-id-mismatch"
    REJECTED_MALFORMED = "rejected-malformed"
    REVOKED_NEIGHBOUR = "revoked-neighbour"
    UNKNOWN_NEIGHBOUR = "unknown-neighbour"
    ADDRESS_CONFLICT = "address-conflict"
    CONFIG_DRIFT = "config-drift"
    SOFTWARE_DRIFT = "software-drift"
    PARTITION = "partition"
    GATEWAY_UNREACHABLE = "gateway-unreachable"
    ARTICULATION_POINT = "articulation-point"
    BRIDGE = "bridge"
    PATH_CONCENTRATION = "path-concentration"
    RELAY_CONCENTRATION = "relay-concentration"
    UPLINK_CONCENTRATION = "uplink-concentration"


ABOUT: Mapping[FindingCode, str] = {
    FindingCode.UNVERIFIED_RELAYED: "relayed bytes the neighbours' counters contradict",
    FindingCode.UNVERIFIED_GATEWAY: "uplink bytes the neighbours' counters contradict",
    FindingCode.UNVERIFIED_CONSUMED: "consumed bytes the neighbours' counters contradict",
    FindingCode.COUNTER_MISMATCH: "two ends of a link count the same bytes differently",
    FindingCode.COUNTER_REGRESSION: "a cumulative counter went down without a restart",
    FindingCode.ONE_SIDED_LINK: "one router hears the other, not the reverse",
    FindingCode.ASYMMETRIC_LINK: "a link much worse in one direction",
    FindingCode.FLAPPING_LINK: "a link going up and down across archived snapshots",
    FindingCode.STALE_NODE: "no fresh record within the stale threshold, or offline",
    FindingCode.REJECTED_UNENROLLED: "records without a valid enrollment certificate",
    FindingCode.REJECTED_BAD_SIGNATURE: "records whose signature does not verify",
    FindingCode.REJECTED_REVOKED: "records of a revoked key",
    FindingCode.REJECTED_OTHER_COMMUNITY: "records of another community",
    FindingCode.REJECTED_NODE_ID_MISMATCH: "records whose node id is not their key's",
    FindingCode.REJECTED_MALFORMED: "messages that are not records",
    FindingCode.REVOKED_NEIGHBOUR: "a revoked node still linked to the mesh",
    FindingCode.UNKNOWN_NEIGHBOUR: "a neighbour with no valid records",
    FindingCode.ADDRESS_CONFLICT: "two routers announce the same address",
    FindingCode.CONFIG_DRIFT: "radio settings differ from the community's",
    FindingCode.SOFTWARE_DRIFT: "several software versions in use",
    FindingCode.PARTITION: "the mesh is split in parts",
    FindingCode.GATEWAY_UNREACHABLE: "nodes with no path to any gateway",
    FindingCode.ARTICULATION_POINT: "a router whose failure splits the mesh",
    FindingCode.BRIDGE: "a link whose failure splits the mesh",
    FindingCode.PATH_CONCENTRATION: "one node on most shortest paths",
    FindingCode.RELAY_CONCENTRATION: "relaying carried by a few routers (Gini)",
    FindingCode.UPLINK_CONCENTRATION: "one member holds most uplink capacity",
}


@dataclass(frozen=True, slots=True)
class Finding:
    code: FindingCode
    severity: Severity
    subject: str
    summary: str
    explanation: str
    fix: str
    figures: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "severity": self.severity.value,
            "subject": self.subject,
            "summary": self.summary,
            "explanation": self.explanation,
            "fix": self.fix,
            "figures": dict(self.figures),
        }


@dataclass(frozen=True, slots=True)
class AuditPolicy:
    stale_after_s: int = defaults.STALE_AFTER_S
    path_share_max: float = 0.5  # one node on more than half of all shortest paths
    relay_gini_max: float = 0.8
    uplink_share_max: float = 0.6
    max_betweenness_sources: int | None = None  # None: as many as the budget allows
    min_nodes_for_concentration: int = 3


@dataclass
class AuditInput:
    view: MeshView
    contributions: Sequence[Contribution] = ()
    community: Community | None = None
    rejections: Mapping[RejectReason, int] = field(default_factory=dict)
    revoked: Sequence[str] = ()
    regressions: Sequence[Regression] = ()
    # the graph at the previous archived snapshot: says where a cut-off part used to attach
    previous_adjacency: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


@dataclass
class Context:
    """What every check may read: the input, the policy and the graph facts computed once."""

    data: AuditInput
    policy: AuditPolicy
    comps: list[list[str]]
    bt: Betweenness
    cuts: CutPoints
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def view(self) -> MeshView:
        return self.data.view


@dataclass(frozen=True, slots=True)
class AuditCheck:
    name: str
    codes: tuple[FindingCode, ...]
    run: Callable[[Context, list[Finding]], None]
