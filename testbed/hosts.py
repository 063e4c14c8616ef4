"""Two hosts' Linux key engines for a ``Simulation``: the mobile node's and the home
agent's XFRM tables, each in an empty network namespace of its own (inside the UML
guest, where the kernel has ESP).

The agents and their Mobility Header link stay in this process as the simulation has
them; only the key engines are Linux's. Its figures and tables can so be set beside the
in-process engine's, move for move.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

from pfmigrate.backends.linux import open_xfrm
from pfmigrate.engine import KeyEngine
from pfmigrate.mobility.simulation import EngineFactory
from testbed.handover import Node


@contextlib.contextmanager
def xfrm_hosts(prefix: str = "sim") -> Iterator[EngineFactory]:
    """Namespaces ``<prefix>-mn`` and ``<prefix>-ha`` (made afresh, deleted at the end)
    and a factory that opens each host's engine and listener in its own."""
    nodes = {host: Node(f"{prefix}-{host.lower()}") for host in ("MN", "HA")}
    _netns("del", *nodes.values(), check=False)  # an earlier run's
    _netns("add", *nodes.values())

    def engines(host: str) -> tuple[KeyEngine, KeyEngine]:
        with nodes[host].entered():  # the sockets belong to the host's namespace for good
            engine, listener = open_xfrm(), open_xfrm()
            listener.subscribe()
        return engine, listener

    try:
        yield engines
    finally:
        _netns("del", *nodes.values(), check=False)


def _netns(verb: str, *nodes: Node, check: bool = True) -> None:
    batch = "".join(f"netns {verb} {node.name}\n" for node in nodes if verb == "add" or node.path.exists())
    if batch:
        subprocess.run(["ip", "-force", "-batch", "-"], input=batch, text=True, capture_output=True, check=check)
