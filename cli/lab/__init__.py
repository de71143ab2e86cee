"""`mutualmesh lab`: a real community mesh of network namespaces on one Linux machine.

Pure parts (topology, config generation, parsers) need no root; `cli.lab.lab.Lab` does the rest.
"""

from cli.lab.lab import Lab, LabError, down_by_name, missing_requirements
from cli.lab.topology import Topology, TopologyError, parse

__all__ = [
    "Lab",
    "LabError",
    "Topology",
    "TopologyError",
    "down_by_name",
    "missing_requirements",
    "parse",
]
