"""What keeps a node closed on an open community SSID: admin SSH keys and the checks for them.

The community AP is open on purpose (anyone may join), so every way into a node from there must
be shut: SSH accepts only the admins' public keys (`admins[].ssh_keys` in community.yaml, rendered
to /etc/dropbear/authorized_keys) with password login off, and the client zone reaches only DHCP,
DNS and ICMP on the router (provisioning.render's firewall).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from meshd import defaults

#: SSH public key types dropbear (OpenWrt 24.10+) accepts in authorized_keys.
SSH_KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
#: Babeld's local socket (read by the agent on loopback; never from another host).
BABEL_LOCAL_PORT = 33123

#: Ports on the router that a client on the open SSID must not reach, and what listens there.
MANAGEMENT_PORTS: dict[int, str] = {
    22: "SSH (dropbear)",
    80: "LuCI / ubus over HTTP (uhttpd)",
    443: "LuCI / ubus over HTTPS (uhttpd)",
    defaults.HTTP_PORT: "the agent's HTTP exports",
    defaults.BROKER_PORT: "mosquitto",
    BABEL_LOCAL_PORT: "babeld's control socket",
}


def ssh_key_problem(line: object) -> str | None:
    """Why `line` is not one OpenSSH public key line, or None."""
    if not isinstance(line, str) or "\n" in line:
        return "must be one line of text"
    parts = line.split()
    if len(parts) < 2:
        return "must be `TYPE BASE64 [comment]`, as in ~/.ssh/id_ed25519.pub"
    if parts[0] not in SSH_KEY_TYPES:
        return f"unknown key type {parts[0]!r} (use one of {', '.join(sorted(SSH_KEY_TYPES))})"
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return "the key part is not base64"
    # The blob starts with its own type name: a key pasted under the wrong type is caught.
    if blob[4 : 4 + len(parts[0])] != parts[0].encode():
        return "the key part does not match its type"
    return None


def admin_ssh_keys(data: Mapping[str, Any]) -> list[str]:
    """Every admin's SSH public keys, in file order, without duplicates (valid ones only)."""
    out: list[str] = []
    for admin in data.get("admins") or []:
        if not isinstance(admin, Mapping):
            continue
        for line in admin.get("ssh_keys") or []:
            if ssh_key_problem(line) is None and line.strip() not in out:
                out.append(line.strip())
    return out


def open_findings(data: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(where, what, fix) for everything that would leave a node open or locked."""
    found: list[tuple[str, str, str]] = []
    for i, admin in enumerate(data.get("admins") or []):
        if not isinstance(admin, Mapping):
            continue
        keys = admin.get("ssh_keys")
        if keys is not None and not isinstance(keys, list):
            found.append((f"admins[{i}].ssh_keys", "must be a list", "write `ssh_keys: [...]`"))
            continue
        for j, line in enumerate(keys or []):
            problem = ssh_key_problem(line)
            if problem:
                found.append(
                    (
                        f"admins[{i}].ssh_keys[{j}]",
                        problem,
                        "paste the line of your ~/.ssh/id_ed25519.pub",
                    )
                )
    if not admin_ssh_keys(data):
        found.append(
            (
                "admins[].ssh_keys",
                "no admin SSH key: nodes keep password login off, so nobody can log in to "
                "them (only failsafe mode or reflashing gets you back in)",
                "add your public key under your admin entry, e.g. "
                "`ssh_keys: [ssh-ed25519 AAAA... you@laptop]`, and sign again",
            )
        )
    radio = data.get("radio")
    if isinstance(radio, Mapping) and radio.get("sae_passphrase"):
        found.append(
            (
                "radio.sae_passphrase",
                "the mesh passphrase is in community.yaml, which is meant to be shared (git)",
                "keep the folder private, or rotate the passphrase if it was ever published",
            )
        )
    return found
