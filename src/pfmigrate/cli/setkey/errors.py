"""The one error of ``pfmigrate setkey``: where in the input, and why."""

from __future__ import annotations

from pfmigrate.cli.errors import CommandError


class SetkeyError(CommandError):
    """A statement that cannot be read or checked, at ``source:line:column``.

    It is a ``CommandError``, so the command line prints it as ``pfmigrate: conf:3:17:
    expected ..., found "espp"`` and exits with status 1.
    """

    def __init__(self, source: str, line: int, column: int, message: str) -> None:
        super().__init__(f"{source}:{line}:{column}: {message}")
        self.source = source
        self.line = line
        self.column = column
        self.message = message
