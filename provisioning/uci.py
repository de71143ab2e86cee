"""A small typed UCI writer and reader.

netjsonconfig builds the sections it knows, but its text renderer does not escape single quotes
(a passphrase such as ``it's`` would break the file), so every UCI file we ship is written here.
The reader exists so tests can prove that what we write parses back to the same values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from meshd.errors import FixableError

UciValue = str | tuple[str, ...]

_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_TYPE = re.compile(r"^[A-Za-z0-9_-]+$")


class UciError(FixableError, ValueError):
    """A section, option or file that UCI cannot represent or that does not parse.

    The values come from the community file or a node plan, so that is where to fix them.
    """

    def __init__(self, what: str, where: str | None = None, fix: str | None = None) -> None:
        super().__init__(what, where, fix or "correct the value in community.yaml or nodes.yaml")


@dataclass(frozen=True, slots=True)
class Section:
    """One `config TYPE 'name'` block; options keep their order, lists are tuples."""

    type: str
    name: str | None
    options: tuple[tuple[str, UciValue], ...] = ()

    def get(self, key: str) -> UciValue | None:
        for k, value in self.options:
            if k == key:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Package:
    name: str
    sections: tuple[Section, ...] = field(default_factory=tuple)

    def section(self, name: str) -> Section:
        for sec in self.sections:
            if sec.name == name:
                return sec
        raise KeyError(name)


def section(type_: str, name: str | None, /, **options: object) -> Section:
    """Build a section from keyword options; None is dropped, bool is 0/1, lists become `list`."""
    return Section(type_, name, tuple(normalise_options(options.items())))


def normalise_options(items: Iterable[tuple[str, object]]) -> list[tuple[str, UciValue]]:
    out: list[tuple[str, UciValue]] = []
    for key, value in items:
        if value is None:
            continue
        if isinstance(value, bool):
            out.append((key, "1" if value else "0"))
        elif isinstance(value, (list, tuple)):
            out.append((key, tuple(_scalar(key, v) for v in value)))
        else:
            out.append((key, _scalar(key, value)))
    return out


def _scalar(key: str, value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (str, int)):
        return str(value)
    raise UciError(f"option {key!r}: cannot write a {type(value).__name__} to UCI")


def quote(value: str) -> str:
    """Single-quote for UCI: everything is literal inside '...'; a quote is written '\\''."""
    if any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise UciError(f"control characters cannot be stored in UCI: {value!r}")
    return "'" + value.replace("'", "'\\''") + "'"


def dumps(package: Package) -> str:
    """Render one package as a UCI file (the form found in /etc/config)."""
    if not _NAME.match(package.name):
        raise UciError(f"bad package name {package.name!r}")
    lines = [f"package {package.name}", ""]
    for sec in package.sections:
        if not _TYPE.match(sec.type):
            raise UciError(f"bad section type {sec.type!r}")
        head = f"config {sec.type}"
        if sec.name is not None:
            if not _NAME.match(sec.name):
                raise UciError(f"bad section name {sec.name!r}: use letters, digits and _")
            head += f" {quote(sec.name)}"
        lines.append(head)
        for key, value in sec.options:
            if not _NAME.match(key):
                raise UciError(f"bad option name {key!r}")
            if isinstance(value, tuple):
                lines.extend(f"\tlist {key} {quote(item)}" for item in value)
            else:
                lines.append(f"\toption {key} {quote(value)}")
        lines.append("")
    return "\n".join(lines)


def _tokens(line: str, lineno: int) -> list[str]:
    """Split a line the way libuci does: '...' literal, "..." and bare words take \\ escapes."""
    tokens: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i] in " \t":
            i += 1
            continue
        if line[i] == "#":
            break
        buf: list[str] = []
        while i < n and line[i] not in " \t":
            ch = line[i]
            if ch == "'":
                end = line.find("'", i + 1)
                if end < 0:
                    raise UciError(f"line {lineno}: unterminated '")
                buf.append(line[i + 1 : end])
                i = end + 1
            elif ch == '"':
                i += 1
                while True:
                    if i >= n:
                        raise UciError(f'line {lineno}: unterminated "')
                    if line[i] == "\\" and i + 1 < n:
                        buf.append(line[i + 1])
                        i += 2
                    elif line[i] == '"':
                        i += 1
                        break
                    else:
                        buf.append(line[i])
                        i += 1
            elif ch == "\\" and i + 1 < n:
                buf.append(line[i + 1])
                i += 2
            else:
                buf.append(ch)
                i += 1
        tokens.append("".join(buf))
    return tokens


def loads(text: str) -> Package:
    """Parse one UCI package file; raises UciError with the line number on bad syntax."""
    name: str | None = None
    sections: list[Section] = []
    current: tuple[str, str | None, list[tuple[str, UciValue]]] | None = None

    def close() -> None:
        if current is not None:
            sections.append(Section(current[0], current[1], tuple(current[2])))

    # Only "\n" ends a line in UCI; str.splitlines would also split on U+0085 and U+2028.
    for lineno, line in enumerate(text.split("\n"), 1):
        toks = _tokens(line, lineno)
        if not toks:
            continue
        word = toks[0]
        if word == "package" and len(toks) == 2:
            name = toks[1]
        elif word == "config" and len(toks) in (2, 3):
            close()
            current = (toks[1], toks[2] if len(toks) == 3 else None, [])
        elif word in ("option", "list") and len(toks) == 3:
            if current is None:
                raise UciError(f"line {lineno}: {word} outside a section")
            opts = current[2]
            if word == "option":
                opts.append((toks[1], toks[2]))
            else:
                for idx, (k, v) in enumerate(opts):
                    if k == toks[1] and isinstance(v, tuple):
                        opts[idx] = (k, (*v, toks[2]))
                        break
                else:
                    opts.append((toks[1], (toks[2],)))
        else:
            raise UciError(f"line {lineno}: cannot parse {line!r}")
    close()
    if name is None:
        raise UciError("missing `package` line")
    return Package(name, tuple(sections))


def from_intermediate(name: str, blocks: Sequence[Mapping[str, object]]) -> Package:
    """Turn netjsonconfig's intermediate data (dicts with .type/.name) into a Package."""
    sections = []
    for block in blocks:
        type_ = str(block[".type"])
        sec_name = block.get(".name")
        items = [(k, v) for k, v in block.items() if not k.startswith(".")]
        sections.append(
            Section(
                type_, None if sec_name is None else str(sec_name), tuple(normalise_options(items))
            )
        )
    return Package(name, tuple(sections))
