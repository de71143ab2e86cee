"""Kept so tests importing `tests.meshgen` keep working; the generator lives in `devkit/`."""

from devkit.meshgen import LinkSpec, SyntheticMesh

__all__ = ["LinkSpec", "SyntheticMesh"]
