"""Lab tests: every lab is bound to this pytest process; labs of crashed runs are reaped first.

The lab's daemons run in their own sessions, so a test run killed with SIGKILL leaves its
namespaces and processes behind. Each lab records the pytest process as its owner (through
MUTUALMESH_LAB_OWNER, inherited by `mutualmesh lab` subprocesses too); at the start of the next
run, test-named labs whose owner is gone are removed. Labs of other live runs, and any lab not
named like a test lab, are never touched.
"""

from __future__ import annotations

import os

import pytest

from cli.lab import procs
from cli.lab.lab import OWNER_ENV, reap_stale
from tests.lab.labkit import TEST_LAB_RE, skip_reason

os.environ[OWNER_ENV] = f"{os.getpid()}:{procs.start_time(os.getpid())}"


@pytest.fixture(scope="session", autouse=True)
def _reap_stale_test_labs() -> None:
    if skip_reason() is None:
        reaped = reap_stale(lambda name: bool(TEST_LAB_RE.match(name)))
        for name, why in reaped.items():
            print(f"\nremoved stale test lab {name!r}: {why}")
