"""Reproducible bundles: the same inputs give the same bytes, so a bundle can be checked by hash.

tar entries are sorted, owned by 0:0 with mtime 0, and the gzip header carries no time or name.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
from collections.abc import Mapping
from pathlib import Path

from provisioning.render import BundleFile


def _dirs(paths: list[str]) -> list[str]:
    out: set[str] = set()
    for path in paths:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]))
    return sorted(out)


def tar_gz(files: Mapping[str, BundleFile]) -> bytes:
    """A deterministic .tar.gz of `files` (paths relative to the router's root)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = [(d, None) for d in _dirs(list(files))] + [(p, files[p]) for p in files]
        for name, item in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if item is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.mode = item.mode
                info.size = len(item.data)
                tar.addfile(info, io.BytesIO(item.data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def write_tree(root: Path, files: Mapping[str, BundleFile]) -> None:
    """Write `files` under `root` (an Image Builder FILES= folder); root must not exist yet."""
    root.mkdir(mode=0o700, parents=True)
    for name in sorted(files):
        item = files[name]
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, item.mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(item.data)
        os.chmod(path, item.mode)


def replace_tree(target: Path, staged: Path) -> None:
    """Swap a staged folder into place, removing an older one."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        staged.rename(target)
        shutil.rmtree(old)
    else:
        staged.rename(target)
