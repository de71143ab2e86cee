"""Keep modules the agent never uses out of its memory (a router has 64-128 MB in all).

paho-mqtt imports `urllib.request` at module level, which drags in `http.client`, `email.*`,
`tempfile`, `shutil`, `bz2` and `lzma` (~2 MB RSS), and uses it only to read proxy settings when
PySocks is installed. `defer` puts a stand-in in `sys.modules` that imports the real module on
first attribute use, so nothing breaks if that code path ever runs.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

DEFERRED = ("urllib.request",)


class _Deferred(types.ModuleType):
    """Stand-in module: the first missing attribute imports the real one and becomes it."""

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = importlib.import_module(name)
        self.__dict__.update(real.__dict__)
        return getattr(real, attr)


def defer(name: str) -> None:
    if name in sys.modules:
        return
    stand_in = _Deferred(name)
    sys.modules[name] = stand_in
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(importlib.import_module(parent), child, stand_in)


def defer_unused() -> None:
    for name in DEFERRED:
        defer(name)
