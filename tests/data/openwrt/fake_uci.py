"""A stand-in for OpenWrt's `uci` command, for running our shell scripts off the router.

Implements the subset meshd-apply and the init script use, with libuci's observable behaviour:
changes are staged (in a side file) until `commit`, so anonymous section ids (cfgNNHHHH) stay
stable across invocations until then; `show` prints anonymous sections as `@type[i]` and, with
`-X`, as their ids; `-m import` merges named sections option by option and appends list items.
The config folder is `-c DIR`, else $MESHD_CONFIG_DIR, else /etc/config.
"""

from __future__ import annotations

import json
import os
import re
import sys
import zlib
from pathlib import Path

Section = dict  # {"type": str, "id": str, "anon": bool, "options": {name: str | list[str]}}


class UciFail(Exception):
    pass


def _parse(text: str, pkg: str) -> list[Section]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from provisioning import uci

    if not re.search(r"^\s*package\s", text, re.M):
        text = f"package {pkg}\n" + text
    sections = []
    for n, s in enumerate(uci.loads(text).sections):
        anon = s.name is None
        ident = f"cfg{n:02x}{zlib.crc32(s.type.encode()) & 0xFFFF:04x}" if anon else s.name
        options = {k: list(v) if isinstance(v, tuple) else v for k, v in s.options}
        sections.append({"type": s.type, "id": ident, "anon": anon, "options": options})
    return sections


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _dump(pkg: str, sections: list[Section]) -> str:
    lines = [f"package {pkg}", ""]
    for s in sections:
        lines.append(f"config {s['type']}" + ("" if s["anon"] else f" {_quote(s['id'])}"))
        for key, value in s["options"].items():
            if isinstance(value, list):
                lines += [f"\tlist {key} {_quote(v)}" for v in value]
            else:
                lines.append(f"\toption {key} {_quote(value)}")
        lines.append("")
    return "\n".join(lines)


class Store:
    def __init__(self, confdir: Path) -> None:
        self.dir = confdir

    def _staged(self, pkg: str) -> Path:
        return self.dir / f".fake-uci-{pkg}.json"

    def load(self, pkg: str) -> list[Section]:
        if self._staged(pkg).exists():
            return list(json.loads(self._staged(pkg).read_text()))
        path = self.dir / pkg
        if not path.exists():
            raise UciFail("Entry not found")
        return _parse(path.read_text(), pkg)

    def stage(self, pkg: str, sections: list[Section]) -> None:
        self._staged(pkg).write_text(json.dumps(sections))

    def commit(self, pkg: str) -> None:
        if self._staged(pkg).exists():
            sections = json.loads(self._staged(pkg).read_text())
            (self.dir / pkg).write_text(_dump(pkg, sections))
            self._staged(pkg).unlink()


def _find(sections: list[Section], ref: str) -> Section | None:
    m = re.fullmatch(r"@([A-Za-z0-9_-]+)\[(-?\d+)\]", ref)
    if m:
        of_type = [s for s in sections if s["type"] == m.group(1)]
        i = int(m.group(2))
        return of_type[i] if -len(of_type) <= i < len(of_type) else None
    return next((s for s in sections if s["id"] == ref), None)


def _split(arg: str) -> tuple[str, str | None, str | None, str]:
    path, _, value = arg.partition("=")
    parts = path.split(".")
    return parts[0], parts[1] if len(parts) > 1 else None, ".".join(parts[2:]) or None, value


def _show(pkg: str, sections: list[Section], ids: bool) -> list[str]:
    out = []
    counts: dict[str, int] = {}
    for s in sections:
        i = counts.get(s["type"], 0)
        counts[s["type"]] = i + 1
        name = s["id"] if ids or not s["anon"] else f"@{s['type']}[{i}]"
        out.append(f"{pkg}.{name}={s['type']}")
        for key, value in s["options"].items():
            shown = " ".join(map(_quote, value)) if isinstance(value, list) else _quote(value)
            out.append(f"{pkg}.{name}.{key}={shown}")
    return out


def main(argv: list[str]) -> int:
    quiet = ids = merge = False
    confdir = Path(os.environ.get("MESHD_CONFIG_DIR", "/etc/config"))
    while argv and argv[0].startswith("-"):
        flag = argv.pop(0)
        if flag == "-q":
            quiet = True
        elif flag == "-X":
            ids = True
        elif flag == "-m":
            merge = True
        elif flag == "-c":
            confdir = Path(argv.pop(0))
        else:
            raise UciFail(f"unsupported flag {flag}")
    store = Store(confdir)
    command, args = argv[0], argv[1:]
    try:
        return _run(store, command, args, ids=ids, merge=merge)
    except UciFail as exc:
        if not quiet:
            print(f"uci: {exc}", file=sys.stderr)
        return 1


def _run(store: Store, command: str, args: list[str], *, ids: bool, merge: bool) -> int:
    if command == "commit":
        for pkg in args or [p.name[len(".fake-uci-") : -5] for p in store.dir.glob(".fake-uci-*")]:
            store.commit(pkg)
        return 0
    if command == "import":
        pkg = args[0]
        incoming = _parse(sys.stdin.read(), pkg)
        try:
            sections = store.load(pkg) if merge else []
        except UciFail:
            sections = []
        for new in incoming:
            old = None if new["anon"] else _find(sections, new["id"])
            if old is None:
                if new["anon"]:
                    crc = zlib.crc32(new["type"].encode()) & 0xFFFF
                    new["id"] = f"cfg{len(sections):02x}{crc:04x}"
                sections.append(new)
                continue
            for key, value in new["options"].items():
                if isinstance(value, list) and isinstance(old["options"].get(key), list):
                    old["options"][key] = old["options"][key] + value
                else:
                    old["options"][key] = value
        store.stage(pkg, sections)
        return 0
    pkg, sec, opt, value = _split(args[0]) if args else ("", None, None, None)
    if command == "show":
        sections = store.load(pkg)
        lines = _show(pkg, sections, ids)
        if sec is not None:
            target = _find(sections, sec)
            if target is None:
                raise UciFail("Entry not found")
            lines = _show(pkg, [target], ids)
        print("\n".join(lines))
        return 0
    sections = store.load(pkg)
    target = _find(sections, sec) if sec else None
    if command == "get":
        if target is None:
            raise UciFail("Entry not found")
        if opt is None:
            print(target["type"])
            return 0
        if opt not in target["options"]:
            raise UciFail("Entry not found")
        got = target["options"][opt]
        print(" ".join(got) if isinstance(got, list) else got)
        return 0
    if command == "set":
        if opt is None:
            if target is None:
                sections.append({"type": value, "id": sec, "anon": False, "options": {}})
            else:
                target["type"] = value
        else:
            if target is None:
                raise UciFail("Invalid argument")
            target["options"][opt] = value
    elif command == "delete":
        if target is None:
            raise UciFail("Entry not found")
        if opt is None:
            sections.remove(target)
        elif opt in target["options"]:
            del target["options"][opt]
        else:
            raise UciFail("Entry not found")
    elif command == "add_list":
        if target is None or opt is None:
            raise UciFail("Invalid argument")
        current = target["options"].get(opt, [])
        target["options"][opt] = [*([current] if isinstance(current, str) else current), value]
    elif command == "del_list":
        if target is None or opt is None:
            raise UciFail("Entry not found")
        current = target["options"].get(opt, [])
        if isinstance(current, list):
            target["options"][opt] = [v for v in current if v != value]
    else:
        raise UciFail(f"unsupported command {command}")
    store.stage(pkg, sections)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
