"""Properties of pfmigrate's engine over random PF_KEY sequences (the differential
generator's, valid and broken), in both semantics, with no kernel."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pfmigrate.pfkey import DecodeError, decode
from pfmigrate.sadb import Engine
from tests.differential.sequences import generate

NOW = 1_800_000_000.0


def check(engine: Engine) -> None:
    engine.sad.verify()
    engine.spd.verify()
    if engine.chains is not None:
        in_chains = sorted(s for chain in engine.chains.tables["dst"] for s in chain)
        assert in_chains == sorted(engine.sad.rows)


@given(seed=st.integers(0, 2**32 - 1), semantics=st.sampled_from(["linux", "pfmigrate"]))
@settings(max_examples=150, deadline=None)
def test_any_sequence_keeps_the_tables_consistent_and_every_answer_well_formed(seed: int, semantics: str) -> None:
    engine = Engine(semantics=semantics, rng=random.Random(seed))
    clients = [engine.connect() for _ in range(3)]
    for i, step in enumerate(generate(seed).steps):
        outcome = engine.handle(clients[step.socket], step.data, NOW + i)
        assert outcome.send_errno == 0 or not outcome.deliveries
        for delivery in outcome.deliveries:
            if delivery.data == step.data:
                continue  # a promiscuous client's copy of the request, whatever it was
            try:
                decode(delivery.data)
            except DecodeError:
                # Linux's own wrong length for policies mixing families, copied on purpose
                assert semantics == "linux", delivery.data.hex()
                assert delivery.data[1] in (13, 14, 15, 16, 18, 20, 22)
        check(engine)
    expired = engine.tick(NOW + 10**7)  # every lifetime in the generator is at most a day
    check(engine)
    assert all(decode(d.data).type == 8 for d in expired)  # EXPIRE only
    # what is left never hard-expires by time: no add lifetime, and larvals are gone
    assert all(sa.state == "valid" and not sa.lft[5] for sa in engine.sad.values())


@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=50, deadline=None)
def test_a_refused_request_changes_nothing(seed: int) -> None:
    engine = Engine(semantics="pfmigrate", rng=random.Random(seed))
    clients = [engine.connect() for _ in range(3)]
    for i, step in enumerate(generate(seed).steps):
        before_sad = dict(engine.sad.rows)
        before_spd = dict(engine.spd.rows)
        outcome = engine.handle(clients[step.socket], step.data, NOW + i)
        if outcome.reason and step.data[1:2] != b"\x01":  # (a refused GETSPI keeps its larval SA, as Linux does)
            assert engine.sad.rows == before_sad, outcome.reason
            assert engine.spd.rows == before_spd, outcome.reason
