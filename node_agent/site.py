"""Routes of the agent's HTTP port: the members' page, its JSON API, the exports, `/metrics`.

The HTTP edge reads a request line and calls `Site.respond`; everything here is plain Python
over the verified store. Views are rebuilt at most every `cache_s` seconds: a phone polling
the page and a Prometheus scrape must not each redo the audit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshd.codec import Envelope
from meshd.community import Community

if TYPE_CHECKING:  # imported on the first page view: an agent nobody looks at stays small
    from meshd.audit import AuditResult
    from meshd.contrib import Contribution
    from meshd.topology import MeshView

WEB = Path(__file__).parent / "web"

JSON = "application/json"
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
ROUTES = {
    "/api/node": "this router and its links",
    "/api/nodes": "every node of the community with its state",
    "/api/contrib": "the contribution table with its marks",
    "/api/map": "nodes and links for the map",
    "/api/audit": "findings and the concentration of power",
    "/meshviewer.json": "for a stock meshviewer (yanic's meshviewer-ffrgb layout)",
    "/netjson": "NetJSON NetworkGraph for netjsongraph.js / OpenWISP",
    "/metrics": "Prometheus text format",
    "/status": "the agent's raw status",
}


@dataclass(frozen=True)
class Response:
    code: int
    ctype: str
    body: bytes

    @property
    def reason(self) -> str:
        return {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}[
            self.code
        ]


def _json(data: Any) -> Response:
    return Response(200, JSON, json.dumps(data, separators=(",", ":")).encode())


def static_file(name: str) -> bytes:
    return (WEB / name).read_bytes()


@dataclass
class Derived:
    view: MeshView
    items: list[Contribution]
    audit: AuditResult | None


class Site:
    """`respond(method, target, now)` for the agent's HTTP port."""

    def __init__(
        self,
        records: Callable[[], Iterable[Envelope]],
        node_id: str,
        community: Community,
        *,
        status: Callable[[], Mapping[str, Any]],
        metrics: Callable[[], str],
        clients: Callable[[], Mapping[str, int]] | None = None,
        routing_version: Callable[[], str | None] | None = None,
        cache_s: float = 5.0,
    ) -> None:
        self.records = records
        self.node_id = node_id
        self.community = community
        self.status = status
        self.metrics = metrics
        self.clients = clients or dict
        self.routing_version = routing_version or (lambda: None)
        self.cache_s = cache_s
        self._at = -1e18
        self._derived: Derived | None = None
        self._audited_at = -1e18

    def derived(self, now: float, *, with_audit: bool = False) -> Derived:
        from meshd.audit import AuditInput, audit
        from meshd.contrib import contributions
        from meshd.topology import MeshView

        if self._derived is None or now - self._at >= self.cache_s:
            view = MeshView.build(self.records(), now)
            items = contributions(view, None, policy=self.community.contribution)
            self._derived, self._at = Derived(view, items, None), now
        d = self._derived
        if with_audit and d.audit is None:
            d.audit = audit(AuditInput(d.view, d.items, self.community))
        return d

    def api(self, path: str, now: float) -> Any:
        from node_agent import webapi

        if path == "/api/node":
            return webapi.node_api(self.derived(now).view, self.node_id, self.community.name)
        if path == "/api/nodes":
            return webapi.nodes_api(self.derived(now).view)
        if path == "/api/contrib":
            note = "cumulative since each node began counting"
            return webapi.contrib_api(self.derived(now).items, note)
        if path == "/api/map":
            return webapi.map_api(self.derived(now).view)
        if path == "/api/audit":
            d = self.derived(now, with_audit=True)
            assert d.audit is not None
            return webapi.audit_api(d.view, d.audit, d.items)
        if path in ("/api", "/api/"):
            return webapi.index(ROUTES)
        return None

    def respond(self, method: str, target: str, now: float) -> Response:
        if method not in ("GET", "HEAD"):
            return Response(405, "text/plain", b"only GET and HEAD\n")
        # `/metrics?x=1` is /metrics (Prometheus `params:`)
        path = target.split("?", 1)[0].split("#", 1)[0] or "/"
        if path in STATIC:
            name, ctype = STATIC[path]
            return Response(200, ctype, static_file(name))
        if path == "/metrics":
            return Response(
                200, "text/plain; version=0.0.4; charset=utf-8", self.metrics().encode()
            )
        if path == "/status":
            return _json(dict(self.status()))
        from node_agent import exports

        if path == "/meshviewer.json":
            view = self.derived(now).view
            return _json(exports.meshviewer(view, self.clients()))
        if path == "/netjson":
            view = self.derived(now).view
            return _json(
                exports.netjson(
                    view, label=self.community.name, routing_version=self.routing_version()
                )
            )
        body = self.api(path, now)
        if body is None:
            return Response(404, "text/plain", b"not found\n")
        return _json(body)
