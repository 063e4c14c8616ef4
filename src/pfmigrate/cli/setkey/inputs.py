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
    more statements hands them to ``handle`` (which says whether to go on). A statement
    left unfinished at the end of the input is reported, as in a file."""
    pending, first_line, line_number = "", 1, 0
    for line in lines:
        line_number += 1
        pending += line if line.endswith("\n") else line + "\n"
        if _goes_on(pending, source, first_line):
            continue
        go_on = _run(pending, source, first_line, handle, report)
        pending, first_line = "", line_number + 1
        if not go_on:
            return
    if pending:  # the input ended inside a statement: parse reports it there, as for a file
        _run(pending, source, first_line, handle, report)


def _goes_on(pending: str, source: str, first_line: int) -> bool:
    """Whether the statement goes on on the next line (no ";" after the last word). A
    mistake the lexer finds is left for ``_run`` to report."""
    try:
        tokens = tokenize(pending, source, first_line)
    except SetkeyError:
        return False
    return len(tokens) > 1 and tokens[-2].kind is not Kind.SEMI


def _run(
    text: str,
    source: str,
    first_line: int,
    handle: Callable[[list[Statement]], bool],
    report: Callable[[SetkeyError], None],
) -> bool:
    """The statements of ``text`` handed to ``handle``, or its mistake reported; whether to go on."""
    try:
        statements = parse(text, source, first_line)
    except SetkeyError as exc:
        report(exc)
        return True
    return not statements or handle(statements)
