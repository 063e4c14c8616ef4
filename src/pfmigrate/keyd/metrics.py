"""keyd's counters, in the Prometheus text format (written to a file for a node
exporter's textfile collector, or read by anything that reads that format)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pfmigrate._files import replace_atomically
from pfmigrate.pfkey.constants import MsgType


@dataclass
class Metrics:
    sas: int = 0
    policies: int = 0
    clients: int = 0
    migrates: int = 0
    refused: int = 0  # requests refused for lack of privilege
    lost: int = 0  # messages dropped for full outboxes
    journal_commits: int = 0
    messages: Counter[int] = field(default_factory=Counter)  # by message type
    errors: Counter[int] = field(default_factory=Counter)  # by errno

    def count_message(self, mtype: int) -> None:
        self.messages[mtype] += 1

    def count_error(self, code: int) -> None:
        self.errors[code] += 1

    def render(self) -> str:
        lines = [
            "# HELP pfmigrate_keyd_sas SAs in the engine.", "# TYPE pfmigrate_keyd_sas gauge",
            f"pfmigrate_keyd_sas {self.sas}",
            "# HELP pfmigrate_keyd_policies Policies in the engine.", "# TYPE pfmigrate_keyd_policies gauge",
            f"pfmigrate_keyd_policies {self.policies}",
            "# HELP pfmigrate_keyd_clients Connected clients.", "# TYPE pfmigrate_keyd_clients gauge",
            f"pfmigrate_keyd_clients {self.clients}",
            "# HELP pfmigrate_keyd_migrates_total MIGRATEs carried out.",
            "# TYPE pfmigrate_keyd_migrates_total counter", f"pfmigrate_keyd_migrates_total {self.migrates}",
            "# HELP pfmigrate_keyd_refused_total Requests refused for lack of privilege.",
            "# TYPE pfmigrate_keyd_refused_total counter", f"pfmigrate_keyd_refused_total {self.refused}",
            "# HELP pfmigrate_keyd_lost_messages_total Messages dropped because a client read too slowly.",
            "# TYPE pfmigrate_keyd_lost_messages_total counter", f"pfmigrate_keyd_lost_messages_total {self.lost}",
            "# HELP pfmigrate_keyd_journal_commits_total Durable journal commits.",
            "# TYPE pfmigrate_keyd_journal_commits_total counter",
            f"pfmigrate_keyd_journal_commits_total {self.journal_commits}",
            "# HELP pfmigrate_keyd_messages_total Messages received, by PF_KEY type.",
            "# TYPE pfmigrate_keyd_messages_total counter",
        ]  # fmt: skip
        lines += [
            f'pfmigrate_keyd_messages_total{{type="{_type_label(t)}"}} {n}' for t, n in sorted(self.messages.items())
        ]
        lines += ["# HELP pfmigrate_keyd_errors_total Requests answered with an error, by errno.",
                  "# TYPE pfmigrate_keyd_errors_total counter"]  # fmt: skip
        lines += [f'pfmigrate_keyd_errors_total{{errno="{code}"}} {n}' for code, n in sorted(self.errors.items())]
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> None:
        """Replace ``path`` atomically with the counters (keyd runs as root: no fixed
        temporary name beside it, see ``replace_atomically``)."""
        replace_atomically(path, self.render())


def _type_label(mtype: int) -> str:
    """A message type's name, or its number for a type PF_KEY does not define (so that
    each type keeps a series of its own)."""
    name = MsgType.of(mtype).name
    return name if name is not None else str(mtype)
