"""The tokens of setkey's configuration language.

Four kinds: words (runs of anything but white space, ``;``, ``#`` and ``"``),
double-quoted strings (keys; no escapes, and they end on their line), ``;`` and the end
of the input. A ``#`` outside a string comments out the rest of its line.

Words are taken apart further by the parser, which knows what it expects there (an
address range such as ``10.0.0.0/24[80]``, a request such as
``esp/tunnel/10.0.0.1-10.0.0.2/require``); ``Token.part`` keeps the column of each
piece, so an error points at the character that is wrong. The lexer itself raises
only for an unterminated string.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NoReturn

from pfmigrate.cli.setkey.errors import SetkeyError

SPACE = " \t\r\f\v"
_WORD_ENDS = SPACE + '\n;#"'


class Kind(enum.Enum):
    WORD = "word"
    STRING = "string"
    SEMI = "semicolon"
    END = "end"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str  # as written; a string keeps its quotes
    line: int
    column: int  # 1-based, in characters
    source: str = field(default="<stdin>", compare=False)

    @property
    def value(self) -> str:
        """A string's contents, a word's text."""
        return self.text[1:-1] if self.kind is Kind.STRING else self.text

    def describe(self) -> str:
        if self.kind is Kind.END:
            return "the end of the input"
        if self.kind is Kind.STRING:
            return "a quoted string"
        return quote(self.text) if self.text else "nothing"

    def part(self, start: int, end: int | None = None) -> Token:
        """The characters ``start:end`` of a word, as a token at their own column."""
        return Token(self.kind, self.text[start:end], self.line, self.column + start, self.source)

    def fail(self, message: str) -> NoReturn:
        raise SetkeyError(self.source, self.line, self.column, message)

    def expected(self, what: str) -> NoReturn:
        self.fail(f"expected {what}, found {self.describe()}")


def quote(text: str) -> str:
    """A word in an error message: quoted, control characters escaped, long ones cut."""
    shown = text if len(text) <= 60 else text[:57] + "..."
    shown = shown.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return f'"{shown}"'


def tokenize(text: str, source: str = "<stdin>", first_line: int = 1) -> list[Token]:
    """The tokens of ``text``, ending with one ``END`` token."""
    tokens: list[Token] = []
    line, line_start, i, n = first_line, 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line, line_start, i = line + 1, i + 1, i + 1
            continue
        if c in SPACE:
            i += 1
            continue
        column = i - line_start + 1
        if c == "#":
            newline = text.find("\n", i)
            i = n if newline < 0 else newline
        elif c == ";":
            tokens.append(Token(Kind.SEMI, ";", line, column, source))
            i += 1
        elif c == '"':
            close, newline = text.find('"', i + 1), text.find("\n", i + 1)
            if close < 0 or 0 <= newline < close:
                raise SetkeyError(source, line, column, "unterminated string: a quoted key ends on its own line")
            tokens.append(Token(Kind.STRING, text[i : close + 1], line, column, source))
            i = close + 1
        else:
            start = i
            while i < n and text[i] not in _WORD_ENDS:
                i += 1
            tokens.append(Token(Kind.WORD, text[start:i], line, column, source))
    tokens.append(Token(Kind.END, "", line, n - line_start + 1, source))
    return tokens
