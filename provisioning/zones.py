"""A node's zones: the fw4 firewall and the DHCP/RA service of its client network.

The community SSID is open, so the client zone reaches only DHCP, DNS and ICMP on the router;
the mesh zone only what the mesh needs (routing, discovery, records, probes, respondd,
admin SSH).
"""

from __future__ import annotations

from meshd import defaults
from meshd.community import Community
from provisioning import uci
from provisioning.nodes import NodeEntry

BABEL_PORT = 6696  # the Babel protocol itself
MDNS_PORT = 5353
PROBE_PORT = defaults.PROBE_PORT


def accept(
    zone: str,
    sid: str,
    name: str,
    proto: str | list[str],
    port: int | str | None = None,
    *,
    icmp_type: list[str] | None = None,
    family: str | None = None,
) -> uci.Section:
    """One "let this in from `zone`" rule: every accept of the firewall is one line below."""
    return uci.section(
        "rule",
        sid,
        name=name,
        src=zone,
        proto=proto,
        dest_port=None if port is None else str(port),
        icmp_type=icmp_type,
        family=family,
        target="ACCEPT",
    )


def firewall(community: Community, node: NodeEntry, bands: list[str]) -> uci.Package:
    mesh_networks = [f"mesh_{b}" for b in bands]
    if community.routing == "batman-adv":
        mesh_networks.append("bat0")
    s = uci.section
    sections = [
        s(
            "defaults",
            None,
            input="REJECT",
            output="ACCEPT",
            forward="REJECT",
            synflood_protect=True,
        ),
        # Mesh input is closed except what the mesh needs: routing, discovery, records, probes.
        s(
            "zone",
            "mesh",
            name="mesh",
            network=mesh_networks,
            input="REJECT",
            output="ACCEPT",
            forward="ACCEPT",
        ),
        # The community SSID is open: clients reach only what they need from the router itself
        # (DHCP, DNS, ICMP); SSH, LuCI/ubus, the broker and the agent's ports stay shut.
        s(
            "zone",
            "client",
            name="client",
            network=["lan"],
            input="REJECT",
            output="ACCEPT",
            forward="REJECT",
        ),
        s("forwarding", "client_mesh", src="client", dest="mesh"),
        s("forwarding", "mesh_client", src="mesh", dest="client"),
        accept("client", "client_dhcp", "Allow-client-DHCP", "udp", "67", family="ipv4"),
        accept("client", "client_dhcpv6", "Allow-client-DHCPv6", "udp", "547", family="ipv6"),
        accept("client", "client_dns", "Allow-client-DNS", ["tcp", "udp"], "53"),
        accept("client", "client_icmp", "Allow-client-ICMP", "icmp"),
        accept("client", "client_icmpv6", "Allow-client-ICMPv6", "icmpv6"),
        # Before the allow rules (first match wins): routed clients cannot leak DHCP or RAs
        # into the mesh, and nothing on the mesh may act as our DHCP server or router.
        s(
            "rule",
            "client_no_dhcp_mesh",
            name="Block-client-DHCP-to-mesh",
            src="client",
            dest="mesh",
            proto="udp",
            dest_port="67-68 546-547",
            target="REJECT",
        ),
        s(
            "rule",
            "mesh_no_dhcp_in",
            name="Block-mesh-DHCP-server",
            src="mesh",
            proto="udp",
            src_port="67 547",  # replies from a server, to a client's 68 / 546
            dest_port="68 546",
            target="DROP",
        ),
        s(
            "rule",
            "mesh_no_ra_in",
            name="Block-mesh-RA",
            src="mesh",
            proto="icmpv6",
            icmp_type=["router-advertisement", "router-solicitation"],
            target="DROP",
        ),
        accept("mesh", "mesh_babel", "Allow-Babel", "udp", BABEL_PORT),
        accept("mesh", "mesh_mdns", "Allow-mDNS", "udp", MDNS_PORT),
        accept("mesh", "mesh_mqtt", "Allow-meshd-MQTT", "tcp", community.mqtt_port),
        accept("mesh", "mesh_probe", "Allow-meshd-probe", "udp", PROBE_PORT),
        # Mesh maps and other nodes ask respondd (IPv6 multicast, Gluon's port); clients may not:
        # the answer names the node, its owner and its neighbours.
        accept(
            "mesh",
            "mesh_respondd",
            "Allow-meshd-respondd",
            "udp",
            defaults.RESPONDD_PORT,
            family="ipv6",
        ),
        # Admins reach nodes over the mesh (key-only SSH, see provisioning.security).
        accept("mesh", "mesh_ssh", "Allow-admin-SSH", "tcp", "22"),
        accept("mesh", "mesh_icmp", "Allow-mesh-ICMP", "icmp"),
        accept("mesh", "mesh_icmpv6", "Allow-mesh-ICMPv6", "icmpv6"),
    ]
    if node.gateway:
        sections += [
            s(
                "zone",
                "uplink",
                name="uplink",
                network=["wan", "wan6"],
                input="REJECT",
                output="ACCEPT",
                forward="REJECT",
                masq=True,
                mtu_fix=True,
            ),
            s("forwarding", "client_uplink", src="client", dest="uplink"),
            s("forwarding", "mesh_uplink", src="mesh", dest="uplink"),
            accept("uplink", "uplink_dhcp", "Allow-DHCP-Renew", "udp", "68", family="ipv4"),
            accept(
                "uplink",
                "uplink_ping",
                "Allow-Ping",
                "icmp",
                icmp_type=["echo-request"],
                family="ipv4",
            ),
            accept("uplink", "uplink_dhcpv6", "Allow-DHCPv6", "udp", "546", family="ipv6"),
            accept(
                "uplink",
                "uplink_icmpv6",
                "Allow-ICMPv6-Input",
                "icmpv6",
                icmp_type=[
                    "echo-request",
                    "destination-unreachable",
                    "packet-too-big",
                    "time-exceeded",
                    "bad-header",
                    "unknown-header-type",
                    "router-advertisement",
                    "neighbour-solicitation",
                    "neighbour-advertisement",
                ],
                family="ipv6",
            ),
        ]
    if community.routing == "batman-adv":
        sections.append(
            s(
                "include",
                "meshd_bridge",
                type="nftables",
                path="/etc/meshd/bridge-filter.nft",
                position="ruleset-post",
            )
        )
    return uci.Package("firewall", tuple(sections))


def dhcp(community: Community, node: NodeEntry, bands: list[str]) -> uci.Package:
    s = uci.section
    babel = community.routing == "babel"
    dnsmasq: dict[str, object] = {
        "domainneeded": True,
        "localise_queries": True,
        "rebind_protection": True,
        "rebind_localhost": True,
        "local": "/lan/",
        "domain": "lan",
        "expandhosts": True,
        "authoritative": True,
        "readethers": True,
        "leasefile": "/tmp/dhcp.leases",
        "localservice": True,
        "ednspacket_max": "1232",
    }
    if node.gateway:
        dnsmasq["resolvfile"] = "/tmp/resolv.conf.d/resolv.conf.auto"
    else:
        # No uplink of its own: ask public resolvers through the mesh's default route.
        dnsmasq["noresolv"] = True
        dnsmasq["server"] = ["9.9.9.9", "2620:fe::fe"]
    if babel:
        start, limit = 2, node.addresses.ipv4_client.num_addresses - 3
    else:
        # Own block of the shared prefix: offset of the block from the prefix start.
        start = int(node.addresses.ipv4_client.network_address) - int(
            community.ipv4.network_address
        )
        limit = node.addresses.ipv4_client.num_addresses - 1
    sections = [
        s("dnsmasq", "dnsmasq", **dnsmasq),
        s(
            "dhcp",
            "lan",
            interface="lan",
            start=str(start),
            limit=str(limit),
            leasetime="1h",
            dhcpv4="server",
            dhcpv6="server" if babel else "disabled",
            ra="server" if babel else "disabled",
        ),
    ]
    for band in bands:
        sections.append(
            s(
                "dhcp",
                f"mesh_{band}",
                interface=f"mesh_{band}",
                ignore=True,
                dhcpv4="disabled",
                dhcpv6="disabled",
                ra="disabled",
                ndp="disabled",
            )
        )
    sections += [
        s("dhcp", "wan", interface="wan", ignore=True),
        s(
            "odhcpd",
            "odhcpd",
            maindhcp=False,
            leasefile="/tmp/hosts/odhcpd",
            leasetrigger="/usr/sbin/odhcpd-update",
            loglevel="4",
        ),
    ]
    return uci.Package("dhcp", tuple(sections))
