"""Where statements come from: a file, a pipe, or a terminal.

A file or a pipe is read whole and parsed before anything runs, so a mistake anywhere
stops the run before it changes the SAD or SPD (setkey would already have carried out
the statements above the mistake). At a terminal (``-c`` typed by hand) each
statement runs once its line is complete, and a mistake is reported and forgotten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pfmigrate.cli.setkey.errors import SetkeyError
from pfmigrate.cli.setkey.lexer import Kind, tokenize
from pfmigrate.cli.setkey.parser import parse
from pfmigrate.cli.setkey.statements import Statement


def decode(data: bytes, source: str) -> str:
    """UTF-8 text, or ``SetkeyError`` at the first byte that is not."""
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line_start = before.rfind(b"\n") + 1
        column = len(before[line_start:].decode(errors="replace")) + 1
        raise SetkeyError(source, before.count(b"\n") + 1, column, "this byte is not UTF-8 text") from None


def interactive(
    lines: Iterable[str],
    source: str,
    handle: Callable[[list[Statement]], bool],
    report: Callable[[SetkeyError], None],
) -> None:
    """Statements from ``lines`` as they are typed: each line that completes one or
    more statements hands them to ``handle`` (which says whether to go on)."""
    pending, first_line, line_number = "", 1, 0
    for line in lines:
        line_number += 1
        pending += line if line.endswith("\n") else line + "\n"
        try:
            tokens = tokenize(pending, source, first_line)
            if len(tokens) > 1 and tokens[-2].kind is not Kind.SEMI:
                continue  # the statement goes on on the next line
            statements = parse(pending, source, first_line)
        except SetkeyError as exc:
            report(exc)
            statements = []
        pending, first_line = "", line_number + 1
        if statements and not handle(statements):
            return
