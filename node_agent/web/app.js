/* The members' page: plain DOM, no framework, nothing fetched from outside this router.
   Data comes from /api/* on the router, or from window.MM_DATA in a saved report. */
"use strict";
(function () {
  var SVG = "http://www.w3.org/2000/svg";
  var WORDS = { good: "good", lossy: "lossy", weak: "weak", down: "down" };

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "cls") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { if (c) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  function clear(id) { var n = document.getElementById(id); while (n.firstChild) n.removeChild(n.firstChild); return n; }
  function pct(x) { return x === null || x === undefined ? "–" : Math.round(x * 100) + "%"; }
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    var u = ["B", "kB", "MB", "GB", "TB"], i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }
  function duration(s) {
    if (s === null || s === undefined) return "–";
    if (s < 3600) return Math.round(s / 60) + " min";
    if (s < 86400) return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " d";
  }
  function num(x, unit) { return x === null || x === undefined ? "–" : x + (unit || ""); }

  function renderHeader(d) {
    var me = d.node;
    document.getElementById("title").textContent = me.hostname + (me.community ? " · " + me.community : "");
    document.title = me.hostname + " · mutualmesh";
    var when = new Date(me.time * 1000).toLocaleString();
    var counts = d.nodes.counts || {};
    document.getElementById("subtitle").textContent =
      (me.gateway ? "gateway · " : "") + (counts.online || 0) + " of " + d.nodes.nodes.length +
      " nodes online · as of " + when + (me.uptime_s !== null ? " · up " + duration(me.uptime_s) : "");
  }

  function renderLinks(me) {
    var box = clear("link-cards");
    box.className = "cards";
    if (!me.links.length) { box.appendChild(el("p", { cls: "muted", text: "No neighbours heard yet." })); return; }
    me.links.forEach(function (l) {
      var badge = el("span", { cls: "badge " + l.quality, text: WORDS[l.quality] || l.quality });
      badge.style.background = l.colour;
      var dl = el("dl", {}, [
        el("dt", { text: "Quality" }), el("dd", { text: l.words }),
        el("dt", { text: "Signal" }), el("dd", { text: num(l.out.signal_dbm, " dBm") + " / " + num(l.back.signal_dbm, " dBm") }),
        el("dt", { text: "Loss" }), el("dd", { text: pct(l.out.loss) + " out, " + pct(l.back.loss) + " back" }),
        el("dt", { text: "ETX" }), el("dd", { text: num(l.out.etx) }),
        el("dt", { text: "Round trip" }), el("dd", { text: num(l.out.rtt_ms, " ms") }),
        el("dt", { text: "Medium" }), el("dd", { text: l.medium + (l.iface ? " (" + l.iface + ")" : "") })
      ]);
      var card = el("div", { cls: "card " + l.quality, "data-quality": l.quality, "data-to": l.to }, [
        el("h3", {}, [el("span", { text: l.to }), badge]), dl
      ]);
      if (l.try && l.try.length) {
        card.appendChild(el("strong", { text: "What to try" }));
        card.appendChild(el("ul", {}, l.try.map(function (t) { return el("li", { text: t }); })));
      }
      box.appendChild(card);
    });
  }

  function layout(m, w, h) {
    var pos = {}, ids = m.nodes.map(function (n) { return n.id; });
    var geo = m.nodes.filter(function (n) { return n.lat !== undefined; });
    var fixed = {};
    if (m.layout === "geo" && geo.length) {
      var lats = geo.map(function (n) { return n.lat; }), lons = geo.map(function (n) { return n.lon; });
      var k = Math.cos((lats.reduce(function (a, b) { return a + b; }, 0) / lats.length) * Math.PI / 180);
      var x0 = Math.min.apply(null, lons) * k, x1 = Math.max.apply(null, lons) * k;
      var y0 = Math.min.apply(null, lats), y1 = Math.max.apply(null, lats);
      var s = Math.min((w - 80) / ((x1 - x0) || 1), (h - 80) / ((y1 - y0) || 1));
      geo.forEach(function (n) { pos[n.id] = [40 + (n.lon * k - x0) * s, h - 40 - (n.lat - y0) * s]; fixed[n.id] = true; });
    }
    ids.forEach(function (id, i) {
      if (!pos[id]) { var a = 2 * Math.PI * i / ids.length; pos[id] = [w / 2 + (w / 3) * Math.cos(a), h / 2 + (h / 3) * Math.sin(a)]; }
    });
    var ideal = Math.sqrt(w * h / Math.max(ids.length, 1)) * 0.8;
    // O(n^2) per round: fewer rounds for big meshes, so a phone draws 1000 nodes in well under a second
    var rounds = Math.max(40, Math.min(300, Math.floor(3e6 / Math.max(1, ids.length * ids.length))));
    for (var it = 0; it < rounds; it++) {
      var f = {}, t = 0.1 * (1 - it / rounds);
      ids.forEach(function (id) { f[id] = [0, 0]; });
      for (var i = 0; i < ids.length; i++) for (var j = i + 1; j < ids.length; j++) {
        var a = pos[ids[i]], b = pos[ids[j]], dx = a[0] - b[0], dy = a[1] - b[1], d2 = dx * dx + dy * dy + 0.01, r = ideal * ideal / d2;
        f[ids[i]][0] += dx * r; f[ids[i]][1] += dy * r; f[ids[j]][0] -= dx * r; f[ids[j]][1] -= dy * r;
      }
      m.links.forEach(function (l) {
        var a = pos[l.a], b = pos[l.b]; if (!a || !b) return;
        var dx = a[0] - b[0], dy = a[1] - b[1], d = Math.sqrt(dx * dx + dy * dy) + 0.01, s = d / ideal;
        f[l.a][0] -= dx * s; f[l.a][1] -= dy * s; f[l.b][0] += dx * s; f[l.b][1] += dy * s;
      });
      ids.forEach(function (id) {
        if (fixed[id]) return;
        var p = pos[id], len = Math.sqrt(f[id][0] * f[id][0] + f[id][1] * f[id][1]) || 1, step = Math.min(len, ideal) * t;
        p[0] = Math.max(30, Math.min(w - 30, p[0] + f[id][0] / len * step));
        p[1] = Math.max(30, Math.min(h - 30, p[1] + f[id][1] / len * step));
      });
    }
    return pos;
  }

  function renderMap(m, me) {
    var box = clear("map-box");
    var w = Math.max(320, Math.min(800, box.clientWidth || 800)), h = Math.round(w * (w < 500 ? 0.9 : 0.65));
    var pos = layout(m, w, h);
    var s = svg("svg", { viewBox: "0 0 " + w + " " + h, role: "img", "aria-label": "map of the mesh" });
    m.links.forEach(function (l) {
      var a = pos[l.a], b = pos[l.b]; if (!a || !b) return;
      var line = svg("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], stroke: l.colour,
        "stroke-width": l.medium === "wifi" ? 3 : 5, "data-quality": l.quality });
      if (l.medium === "tap") line.setAttribute("stroke-dasharray", "3 5");
      if (l.quality === "weak" || l.quality === "down") line.setAttribute("stroke-dasharray", "8 5");
      var title = svg("title", {}); title.textContent = l.quality + (l.loss ? ", " + pct(l.loss) + " loss" : "");
      line.appendChild(title);
      s.appendChild(line);
    });
    m.nodes.forEach(function (n) {
      var p = pos[n.id];
      var fill = n.state !== "online" ? "#e0e0e0" : (n.gateway ? "#fff176" : "#bbdefb");
      s.appendChild(svg("circle", { cx: p[0], cy: p[1], r: n.id === (me && me.node_id) ? 12 : 9, fill: fill,
        stroke: n.gateway ? "#f57f17" : "#1565c0", "stroke-width": n.id === (me && me.node_id) ? 4 : 2 }));
      var left = p[0] > w * 0.7;
      var t = svg("text", { x: left ? p[0] - 12 : p[0] + 12, y: p[1] - 10, "text-anchor": left ? "end" : "start" });
      t.textContent = n.name + (n.gateway ? " (gateway)" : "");
      s.appendChild(t);
    });
    box.appendChild(s);
    document.getElementById("map-note").textContent = (m.layout === "geo"
      ? "Placed by the locations members chose to share; others are drawn near their neighbours."
      : "No node shares a location, so nodes are drawn by who hears whom.") +
      " Yellow: gateway. Grey: offline. Line colour: link quality; dotted: tunnel.";
  }

  function table(id, head, rows, numeric) {
    var t = clear(id);
    t.appendChild(el("thead", {}, [el("tr", {}, head.map(function (h, i) {
      return el("th", { text: h, cls: (numeric || []).indexOf(i) >= 0 ? "num" : "" });
    }))]));
    t.appendChild(el("tbody", {}, rows));
  }

  function renderNodes(d) {
    var c = d.counts || {};
    document.getElementById("node-counts").textContent = Object.keys(c).sort().map(function (k) { return c[k] + " " + k; }).join(" · ");
    table("node-table", ["Name", "State", "Neighbours", "Up", "Model", "Software"], d.nodes.map(function (n) {
      return el("tr", {}, [
        el("td", { text: n.name + (n.gateway ? " ★" : "") }),
        el("td", { cls: "state-" + n.state, text: n.state }),
        el("td", { cls: "num", text: String(n.neighbours) }),
        el("td", { text: duration(n.uptime_s) }),
        el("td", { text: n.model || "–" }), el("td", { text: n.software || "–" })
      ]);
    }), [2]);
  }

  function fig(f, fmt) {
    return el("td", { cls: "num", title: f.evidence }, [fmt(f.value), el("span", { cls: "mark " + f.check, text: f.mark, "data-check": f.check })]);
  }
  function renderContrib(c) {
    document.getElementById("contrib-window").textContent = c.window || "";
    table("contrib-table", ["Name", "Relayed", "To the internet", "Used", "Up", "Score"], c.rows.map(function (r) {
      return el("tr", {}, [el("td", { text: r.name }), fig(r.relayed_bytes, bytes), fig(r.gateway_bytes, bytes),
        fig(r.consumed_bytes, bytes), fig(r.uptime_s, duration), el("td", { cls: "num", text: r.score.toFixed(2) })]);
    }), [1, 2, 3, 4, 5]);
    var lg = clear("contrib-legend");
    c.legend.forEach(function (l, i) {
      if (i) lg.appendChild(document.createTextNode(" · "));
      lg.appendChild(el("span", { cls: "mark " + l.check, text: l.mark }));
      lg.appendChild(document.createTextNode(" " + l.check + ": " + l.means));
    });
  }

  function bars(rows, label) {
    if (!rows.length) return el("p", { cls: "muted", text: "Nobody, so far." });
    return el("table", { cls: "bars" }, rows.map(function (r) {
      var b = el("div", { cls: "bar" }); b.style.width = Math.max(1, Math.round(r.share * 100)) + "%";
      return el("tr", {}, [el("td", { text: r.name }), el("td", { cls: "num", text: pct(r.share) }), el("td", {}, [b])]);
    }));
  }
  function renderAudit(a) {
    var box = clear("findings");
    if (!a.findings.length) box.appendChild(el("p", { text: "Nothing wrong found. The records agree with each other." }));
    a.findings.forEach(function (f) {
      box.appendChild(el("div", { cls: "finding " + f.severity }, [
        el("p", {}, [el("strong", { text: f.summary })]), el("p", { text: f.why }), el("p", { cls: "muted", text: "What helps: " + f.fix })
      ]));
    });
    var p = clear("power"), pw = a.power;
    p.appendChild(el("p", { text: "Share of routes between other nodes that pass through a router (who could see or stop traffic):" }));
    p.appendChild(bars(pw.paths, "paths"));
    p.appendChild(el("p", { text: "Share of the internet uplink capacity (who the community depends on to get online):" }));
    p.appendChild(bars(pw.uplinks, "uplinks"));
    p.appendChild(el("p", { text: "Share of the traffic relayed for others:" }));
    p.appendChild(bars(pw.relayers, "relayers"));
  }

  function render(d) {
    renderHeader(d); renderLinks(d.node); renderMap(d.map, d.node); renderNodes(d.nodes);
    renderContrib(d.contrib); renderAudit(d.audit);
    if (window.MM_EXTRA) window.MM_EXTRA(d, { el: el, svg: svg, bytes: bytes, pct: pct });
    document.body.setAttribute("data-ready", "1");
  }

  function load() {
    var names = ["node", "nodes", "contrib", "map", "audit"];
    Promise.all(names.map(function (n) { return fetch("api/" + n, { cache: "no-store" }).then(function (r) { return r.json(); }); }))
      .then(function (parts) { var d = {}; names.forEach(function (n, i) { d[n] = parts[i]; }); render(d); })
      .catch(function (e) { document.getElementById("subtitle").textContent = "cannot reach this router's data: " + e; });
  }

  if (window.MM_DATA) render(window.MM_DATA);
  else { load(); setInterval(load, 30000); }
})();
