"""Settings of the agent: every one is a flag (procd maps UCI options to flags), and an optional
file (`--config`, JSON or YAML) gives defaults that flags override.

The router reads JSON only (the bundle ships the community file as JSON): PyYAML is imported
only for a `.yaml`/`.yml` file, so the feed need not install it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshd import defaults
from meshd.errors import FixableError

DEFAULT_PUBLISH_INTERVAL = 60.0
DEFAULT_SAVE_INTERVAL = 900.0


class ConfigError(FixableError):
    """A setting or file the agent was given is unusable: what, where (flag or file), and fix."""

    def __init__(self, what: str, where: str | None = None, fix: str | None = None) -> None:
        super().__init__(what, where, fix)
        self.args = (one_line(self),)


def one_line(exc: FixableError) -> str:
    """`where: what. Fix: fix` - how the agent reports any FixableError (one log/stderr line)."""
    text = f"{exc.where}: {exc.what}" if exc.where else exc.what
    return f"{text}. Fix: {exc.fix}" if exc.fix else text


YAML_SUFFIXES = (".yaml", ".yml")


def read_data(path: Path, what: str) -> Any:
    """The parsed content of a JSON or YAML file; YAML only by suffix, so JSON needs no PyYAML.

    `what` names the flag the path came from, for the fix.
    """
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read ({exc.strerror})", str(path), f"check {what}") from None
    if path.suffix.lower() not in YAML_SUFFIXES:
        import json

        try:
            return json.loads(text)
        except ValueError as exc:  # UnicodeDecodeError is one
            raise ConfigError(f"not valid JSON ({exc})", str(path), "correct the file") from None
    try:
        import yaml  # only here: keeps PyYAML off the router and out of the agent's memory
    except ImportError:
        raise ConfigError(
            "is YAML, and PyYAML is not installed",
            str(path),
            "give the JSON copy (the node bundle's community.json) or install python3-yaml",
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"not valid YAML ({detail})", str(path), "correct the file") from None


@dataclass
class Config:
    key: Path
    cert: Path
    community_file: Path
    state_dir: Path
    trust_file: Path | None = None
    status_file: Path | None = None
    mesh_ifaces: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    hostname: str = "node"
    model: str = "unknown"
    broker_port: int = defaults.BROKER_PORT
    babel_port: int = 33123
    metrics_port: int = defaults.HTTP_PORT
    probe_port: int = defaults.PROBE_PORT
    respondd_port: int = defaults.RESPONDD_PORT  # 0: no respondd answers (they are unsigned)
    gateway_iface: str | None = None
    client_ifaces: list[str] = field(default_factory=list)
    gateway_kbit: int | None = None
    publish_interval: float = DEFAULT_PUBLISH_INTERVAL
    probe_interval: float = 1.0
    probe_window: int = 64
    lost_after: float = 10.0
    save_interval: float = DEFAULT_SAVE_INTERVAL
    seq_block: int = 10_000
    start_delay: float = 0.0
    nft: bool = True
    nft_table: str = "meshd_acct"
    mdns: bool = True
    mdns_fast: bool = False
    neighbour_rate: float = 50.0
    neighbour_burst: int = 2000
    static_neighbours: list[str] = field(default_factory=list)
    wifi_ifaces: list[str] = field(default_factory=list)
    routing: str = "babel"
    replication: str = "push"  # or "flood", v1 (docs/protocol.md §8.3, §8.6)
    batman_iface: str = "bat0"
    log_level: str = "info"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="meshd",
        description="mutualmesh node agent: finds neighbours, measures links, counts traffic "
        "and shares signed records with every node over MQTT.",
    )
    a = p.add_argument
    a("--version", action="version", version=f"meshd {defaults.VERSION}")
    a(
        "--config",
        type=Path,
        help="JSON (or .yaml) file with defaults for any flag below (keys as flag names "
        "with underscores); flags given on the command line win",
    )
    a("--key", type=Path, help="node private key file (mode 0600)")
    a("--cert", type=Path, help="enrollment certificate (JSON) signed by a community admin")
    a(
        "--community-file",
        type=Path,
        help="the community file: community.json (the bundle's copy; no PyYAML needed) or "
        "community.yaml",
    )
    a(
        "--trust-file",
        type=Path,
        help="trust.json of the node bundle: refuse a community file its pinned admins did not "
        "authorise (a newer version needs its chain in trust/ next to the community file)",
    )
    a("--state-dir", type=Path, help="where seq and counter state survive restarts")
    a("--status-file", type=Path, help="JSON status written every publish interval")
    a("--mesh-iface", dest="mesh_ifaces", action="append", help="mesh interface (repeatable)")
    a("--address", dest="addresses", action="append", help="this node's address (repeatable)")
    a("--hostname", help="hostname, as in the enrollment certificate")
    a("--model", help="hardware model")
    a("--broker-port", type=int, help=f"local mosquitto port (default {defaults.BROKER_PORT})")
    a("--babel-port", type=int, help="babeld local interface port on ::1 (default 33123)")
    a(
        "--metrics-port",
        type=int,
        help=f"Prometheus /metrics port, 0 = off (default {defaults.HTTP_PORT})",
    )
    a("--probe-port", type=int, help=f"UDP link probe port (default {defaults.PROBE_PORT})")
    a(
        "--respondd-port",
        type=int,
        help="answer Gluon respondd (yanic) on this UDP port, 0 = off "
        f"(default {defaults.RESPONDD_PORT}; unsigned)",
    )
    a("--gateway-iface", help="uplink interface, if this node offers a gateway")
    a("--client-iface", dest="client_ifaces", action="append", help="client (LAN) interface")
    a("--gateway-kbit", type=int, help="uplink capacity offered to the mesh")
    a("--publish-interval", type=float, help="seconds between record publications (default 60)")
    a("--probe-interval", type=float, help="seconds between link probes (default 1)")
    a("--probe-window", type=int, help="probes per ETX window (default 64)")
    a("--lost-after", type=float, help="seconds without probes before a neighbour is lost")
    a("--save-interval", type=float, help="seconds between state saves to flash (default 900)")
    a("--seq-block", type=int, help="sequence numbers reserved per state write (default 10000)")
    a("--start-delay", type=float, help="wait a random 0..S seconds before starting (boot storms)")
    a(
        "--no-nft",
        dest="nft",
        action="store_false",
        default=None,
        help="do not create the nftables accounting table",
    )
    a("--nft-table", help="name of the agent's own nftables table (default meshd_acct)")
    a(
        "--no-mdns",
        dest="mdns",
        action="store_false",
        default=None,
        help="no zeroconf discovery (use --static-neighbour)",
    )
    a(
        "--mdns-fast",
        action="store_true",
        default=None,
        help="skip mDNS name probing (only where node names are unique, e.g. labs)",
    )
    a("--neighbour-rate", type=float, help="messages per second accepted from one neighbour")
    a("--neighbour-burst", type=int, help="burst of messages accepted from one neighbour")
    a(
        "--static-neighbour",
        dest="static_neighbours",
        action="append",
        help="NODE_ID@ADDRESS[%%IFACE]:PORT[/PROBEPORT], a neighbour known without mDNS "
        "(repeatable)",
    )
    a(
        "--wifi-iface",
        dest="wifi_ifaces",
        action="append",
        help="mesh interface that is 802.11s wifi (read with `iw station dump`); interfaces "
        "with /sys/class/net/IF/phy80211 are found without this (repeatable)",
    )
    a(
        "--routing",
        choices=["babel", "batman-adv"],
        help="routing protocol of the mesh (default babel); batman-adv adds `batctl` link data",
    )
    a("--batman-iface", help="batman-adv mesh interface (default bat0)")
    a(
        "--replication",
        choices=["flood", "push"],
        help="push (default): eager/lazy pushes on a self-pruning tree, read from each "
        "neighbour's broker, digests on connect (docs/protocol.md §8.3); flood: v1, read "
        "every neighbour's whole broker",
    )
    a("--log-level", choices=["debug", "info", "warning", "error"], help="default info")
    return p


_REQUIRED = ("key", "cert", "community_file", "state_dir")


def load(argv: list[str] | None = None) -> Config:
    """Flags over the --config file over defaults; raises ConfigError on anything unusable."""
    ns = build_parser().parse_args(argv)
    values: dict[str, Any] = {}
    if ns.config is not None:
        values.update(_read_settings(ns.config))
    for name, value in vars(ns).items():
        if name != "config" and value is not None:
            values[name] = value
    missing = [n for n in _REQUIRED if values.get(n) is None]
    if missing:
        flags = ", ".join("--" + n.replace("_", "-") for n in missing)
        raise ConfigError(f"missing {flags}", None, "pass them as flags or in --config")
    known = set(Config.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)}",
            str(ns.config),
            "use the flag names from `meshd --help` with underscores",
        )
    for name in ("key", "cert", "community_file", "state_dir", "status_file", "trust_file"):
        if values.get(name) is not None:
            values[name] = Path(values[name])
    for name in ("mesh_ifaces", "addresses", "client_ifaces", "static_neighbours", "wifi_ifaces"):
        if isinstance(values.get(name), str):
            values[name] = [values[name]]
    config = Config(**values)
    _check(config)
    return config


def _read_settings(path: Path) -> dict[str, Any]:
    data = read_data(path, "--config")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("must be a mapping of settings", str(path), "write `key: value` pairs")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _check(c: Config) -> None:
    def bad(name: str, value: object, what: str, fix: str) -> ConfigError:
        return ConfigError(what, f"--{name.replace('_', '-')} {value}", fix)

    for name in ("broker_port", "babel_port", "probe_port"):
        port = getattr(c, name)
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise bad(name, port, "not a port", "give a port 1..65535")
    if not isinstance(c.metrics_port, int) or not 0 <= c.metrics_port <= 65535:
        raise bad("metrics_port", c.metrics_port, "not a port", "give 0 (off) or a port 1..65535")
    if not isinstance(c.respondd_port, int) or not 0 <= c.respondd_port <= 65535:
        raise bad("respondd_port", c.respondd_port, "not a port", "give 0 (off) or a port 1..65535")
    for name in ("publish_interval", "probe_interval", "lost_after", "save_interval"):
        value = getattr(c, name)
        if not isinstance(value, (int, float)) or value <= 0:
            raise bad(name, value, "must be a positive number", "give seconds above 0")
    if not 0 <= c.start_delay <= 600:
        raise bad("start_delay", c.start_delay, "out of range", "give 0..600 seconds")
    if not 2 <= c.probe_window <= 1024:
        raise bad("probe_window", c.probe_window, "out of range", "give 2..1024 probes")
    if c.seq_block < 1:
        raise bad("seq_block", c.seq_block, "must be at least 1", "give a positive count")
    stray = sorted(set(c.wifi_ifaces) - set(c.mesh_ifaces))
    if stray:
        raise bad("wifi_iface", ", ".join(stray), "not a --mesh-iface", "name it as both")
    if c.replication not in ("flood", "push"):
        raise bad("replication", c.replication, "unknown replication", "give flood or push")
    if c.routing not in ("babel", "batman-adv"):
        raise bad("routing", c.routing, "unknown routing", "give babel or batman-adv")
    if not c.mesh_ifaces and c.mdns:
        raise ConfigError(
            "no --mesh-iface given", None, "name at least one mesh interface (or --no-mdns)"
        )
