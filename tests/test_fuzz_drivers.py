"""The fuzzers (``make fuzz`` runs a million cases each) still run: a few thousand
cases each, with a fixed seed, keep their contracts."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from tests.fuzz import fuzz_mip6, fuzz_pfkey, fuzz_xfrm

FUZZERS: dict[str, Callable[[Sequence[str] | None], int]] = {
    "pfkey": fuzz_pfkey.main, "xfrm": fuzz_xfrm.main, "mip6": fuzz_mip6.main,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(FUZZERS))
def test_a_short_fuzz_run_finds_nothing(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert FUZZERS[name](["--cases", "3000", "--seed", "11", "--pool", "300"]) == 0, capsys.readouterr().err
    report = capsys.readouterr().out
    assert "no exception other than DecodeError escaped" in report
    assert "cases by kind" in report
