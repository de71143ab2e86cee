"""One home for the facts every part of mutualmesh must agree on.

The agent, the rendered router config, the firewall, the lab and the CLI all read these names;
a port or threshold written anywhere else is a bug waiting for the two copies to drift.
"""

from __future__ import annotations

from meshd import __version__

#: The software version every component reports (records, `--version`, metrics build info).
VERSION = __version__

#: Each node's own mosquitto, on the mesh and on loopback.
BROKER_PORT = 1883
#: The agent's HTTP port: `/metrics`, the members' page and the JSON exports.
HTTP_PORT = 9105
#: The agent's UDP link probes (echo requests and replies between neighbours).
PROBE_PORT = 4243
#: The Babel routing protocol (babeld, UDP) and multicast DNS (discovery, UDP).
BABEL_PORT = 6696
MDNS_PORT = 5353
#: The mDNS service every agent announces and browses for.
SERVICE_TYPE = "_mutualmesh._tcp.local."
#: A node whose newest record is older than this is shown as offline; yanic uses 10 minutes too.
STALE_AFTER_S = 600
#: Gluon respondd (what yanic queries): UDP port and the groups it asks on (site-wide, one hop).
RESPONDD_PORT = 1001
RESPONDD_GROUPS = ("ff05::2:1001", "ff02::2:1001")
#: How often an agent publishes its records by default; also the publish skew the contribution
#: checks tolerate between two nodes' records before calling a comparison pending.
PUBLISH_INTERVAL_S = 60
