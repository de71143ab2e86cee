"""Who pays what of the community's costs: an equal base part plus a part by consumption. Kept
apart from the checks in `meshd.contrib`, which it only reads the outcome of."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshd.community import ContributionPolicy

if TYPE_CHECKING:
    from meshd.contrib import Contribution


@dataclass(frozen=True, slots=True)
class CostShare:
    node_id: str
    hostname: str
    base: float
    consumption: float
    basis: int = 0  # the consumption figure used
    basis_kind: str = "lower bound"  # "verified", or "lower bound" for any other state

    @property
    def total(self) -> float:
        return self.base + self.consumption


def cost_share(
    items: list[Contribution], amount: float, policy: ContributionPolicy
) -> list[CostShare]:
    """Guifi.net-style split: an equal base part plus a part proportional to consumption, where
    consumption is the verified figure or, for any other state, its lower bound."""
    members = list(items)
    if not members:
        return []
    base = amount * policy.base_share / len(members)
    consumed_total = sum(c.basis for c in members)
    variable = amount * policy.consumption_share
    out = []
    for c in members:
        # nobody consumed: split it equally
        part = variable * c.basis / consumed_total if consumed_total else variable / len(members)
        out.append(CostShare(c.node_id, c.hostname, base, part, c.basis, c.basis_kind))
    return out
