"""The views' columns, each said once: table cell, JSON value, CSV fields (`cli.output.View`).

A column added here appears in the table, in --json and (where the command has it) in --csv.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cli.output import Column, View, human_age
from meshd.contrib import Figure
from meshd.nodestate import node_state
from meshd.topology import Direction, Link, MeshView, NodeView


@dataclass(frozen=True, slots=True)
class NodeRow:
    view: MeshView
    nv: NodeView

    @property
    def age_s(self) -> int | None:
        return None if not self.nv.last_seen else round(max(0.0, self.view.now - self.nv.last_seen))

    @property
    def uptime_s(self) -> int | None:
        return self.nv.counters.uptime_s if self.nv.counters else None


def _info(attr: str) -> Any:
    def get(r: NodeRow) -> Any:
        return getattr(r.nv.info, attr) if r.nv.info else None

    return get


def _records(r: NodeRow) -> dict[str, Any]:
    nv = r.nv
    return {
        kind: {"seq": env.seq, "issued_at": env.issued_at, "expires_at": env.expires_at}
        for kind, env in (("node", nv.node), ("links", nv.links), ("traffic", nv.traffic))
        if env is not None
    }


def _gateway_cell(r: NodeRow) -> str:
    kbit = _info("gateway_kbit")(r)
    return "-" if not kbit else f"{kbit / 1000:g} Mbit/s"


NODES = View[NodeRow](
    [
        Column("name", cell=lambda r: r.nv.hostname, json=("name", lambda r: r.nv.hostname)),
        Column("id", cell=lambda r: r.nv.node_id, json=("id", lambda r: r.nv.node_id)),
        Column(
            "age", cell=lambda r: human_age(r.age_s), json=("age_s", lambda r: r.age_s), right=True
        ),
        Column("software", cell=_info("software"), json=("software", _info("software"))),
        Column(None, json=("model", _info("model"))),
        Column("gateway", cell=_gateway_cell, json=("gateway_kbit", _info("gateway_kbit"))),
        Column(
            "neighbours",
            cell=lambda r: len(r.view.neighbours(r.nv.node_id)),
            json=(
                "neighbours",
                lambda r: [r.view.name(n) for n in r.view.neighbours(r.nv.node_id)],
            ),
            right=True,
        ),
        Column(
            "uptime",
            cell=lambda r: human_age(r.uptime_s),
            json=("uptime_s", lambda r: r.uptime_s),
            right=True,
        ),
        Column(
            "state",
            cell=lambda r: node_state(r.view, r.nv).value,
            json=("state", lambda r: node_state(r.view, r.nv).value),
        ),
        Column(
            None,
            json=("addresses", lambda r: list(r.nv.info.addresses) if r.nv.info else []),
        ),
        Column(
            None,
            json=(
                "location",
                lambda r: (
                    r.nv.info.location.to_json() if r.nv.info and r.nv.info.location else None
                ),
            ),
        ),
        Column(None, json=("contact", _info("contact"))),
        Column(
            None,
            json=(
                "config",
                lambda r: r.nv.info.config.to_json() if r.nv.info and r.nv.info.config else None,
            ),
        ),
        Column(None, json=("records", _records)),
    ]
)


def node_json(view: MeshView, nv: NodeView) -> dict[str, Any]:
    return NODES.json_rows([NodeRow(view, nv)])[0]


@dataclass(frozen=True, slots=True)
class DirectionRow:
    view: MeshView
    link: Link
    d: Direction
    first: bool  # the link's first direction: its row carries the link's state


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _loss_cell(loss: float | None) -> str:
    return "-" if loss is None else f"{loss:.0%}"


def _measured(title: str, attr: str, spec: str) -> Column[DirectionRow]:
    """A direction's measurement: the same attribute in JSON, formatted (or -) in the table."""
    return Column(
        title,
        cell=lambda r: _fmt(getattr(r.d, attr), spec),
        json=(attr, lambda r: getattr(r.d, attr)),
        right=True,
    )


DIRECTIONS = View[DirectionRow](
    [
        Column(
            "direction",
            cell=lambda r: f"{r.view.name(r.d.src)} → {r.view.name(r.d.dst)}",
        ),
        Column(None, json=("from", lambda r: r.view.name(r.d.src))),
        Column(None, json=("to", lambda r: r.view.name(r.d.dst))),
        Column(None, json=("reported", lambda r: r.d.reported)),
        _measured("etx", "etx", ".2f"),
        Column(
            "loss",
            cell=lambda r: _loss_cell(r.d.loss),
            json=("loss", lambda r: None if r.d.loss is None else round(r.d.loss, 4)),
            right=True,
        ),
        _measured("rtt ms", "rtt_ms", ".1f"),
        _measured("cost", "cost", "d"),
        _measured("signal dBm", "signal_dbm", "d"),
        _measured("Mbit/s", "bitrate_mbit", "g"),
        Column("state", cell=lambda r: r.link.state.value if r.first else ""),
    ]
)


def direction_rows(view: MeshView, link: Link) -> list[DirectionRow]:
    return [DirectionRow(view, link, link.ab, True), DirectionRow(view, link, link.ba, False)]


def link_json(view: MeshView, link: Link) -> dict[str, Any]:
    return {
        "a": view.name(link.a),
        "b": view.name(link.b),
        "a_id": link.a,
        "b_id": link.b,
        "state": link.state.value,
        "reason": link.reason,
        "in_graph": link.in_graph,
        "cost": link.cost,
        "directions": DIRECTIONS.json_rows(direction_rows(view, link)),
    }


def figure_json(fig: Figure) -> dict[str, Any]:
    return {"value": fig.value, "check": fig.check.value, "evidence": fig.evidence}
