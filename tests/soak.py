"""How many rounds a long-running test makes: a bounded share in the default suite,
the full count under ``make soak`` (``PFMIGRATE_SOAK=1``), or exactly what an
environment variable of the test's own says (to replay or to go further)."""

from __future__ import annotations

import os


def rounds(variable: str, default: int, soak: int) -> int:
    """``$variable`` if set, else ``soak`` under ``PFMIGRATE_SOAK=1``, else ``default``."""
    given = os.environ.get(variable)
    if given is not None:
        return int(given)
    return soak if os.environ.get("PFMIGRATE_SOAK", "") not in ("", "0") else default
