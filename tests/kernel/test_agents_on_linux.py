"""The Mobile IPv6 agents driving Linux's key engine: the seed's journey (home, the old
care-of address, the new one, home again) with each host's tables in Linux XFRM, in a
network namespace of its own, set beside the same journey on the in-process engine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from testbed.hosts import xfrm_hosts

from pfmigrate.mobility.seedconfig import seed_configs
from pfmigrate.mobility.simulation import Simulation
from pfmigrate.seed import NEW_COA, OLD_COA
from tests.test_mobility_agents import expected, tables

pytestmark = pytest.mark.kernel


@pytest.fixture
def on_linux() -> Iterator[Simulation]:
    with xfrm_hosts("agents") as engines:
        sim = Simulation(*seed_configs(), engines=engines)
        try:
            yield sim
        finally:
            sim.close()


def test_the_seed_journey_leaves_linux_with_the_tables_the_inprocess_engine_has(on_linux: Simulation) -> None:
    inprocess = Simulation(*seed_configs())
    assert not on_linux.mn.by_reqid, "Linux needs the old endpoints to find a MIGRATE's target"
    for coa in (OLD_COA, NEW_COA, None):
        leg = on_linux.move(coa) if coa else on_linux.go_home()
        inprocess.move(coa) if coa else inprocess.go_home()
        assert leg.acknowledged > 0, f"no Binding Acknowledgement at {coa or 'home'}"
        assert leg.ipsec > 0, f"no IPsec change at {coa or 'home'}"
        if coa:  # IPsec moves before the BU; coming home, the tunnels go once the HA let go
            assert leg.acknowledged > leg.ipsec
        assert tables(on_linux) == expected(on_linux, coa), f"Linux's tables at {coa or 'home'}"
        assert tables(on_linux) == tables(inprocess)
    inprocess.close()


def heard(sim: Simulation) -> list[tuple[str, str, str]]:
    """What each host's IKE listener heard: MIGRATEs, with direction and key-manager address."""
    entries = (e for e in sim.timeline.entries if e.event == "IKE heard MIGRATE")
    return sorted((e.who, str(e.fields["dir"]), str(e.fields["kmaddress"])) for e in entries)


def test_linux_announces_the_migrates_the_inprocess_engine_announces(on_linux: Simulation) -> None:
    inprocess = Simulation(*seed_configs())
    for sim in (on_linux, inprocess):
        sim.move(OLD_COA)
        sim.timeline.entries.clear()  # setting up the tunnels is not a move
        sim.move(NEW_COA)
    announced = heard(on_linux)
    assert ("MN engine", "out", NEW_COA) in announced, announced
    assert announced == heard(inprocess)
    inprocess.close()
