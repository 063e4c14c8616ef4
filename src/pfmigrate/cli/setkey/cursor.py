"""A position in a statement's tokens, for the recursive-descent parser."""

from __future__ import annotations

from pfmigrate.cli.setkey.lexer import Kind, Token

FAMILY_FLAGS = frozenset("46n")


class Cursor:
    def __init__(self, tokens: list[Token]) -> None:
        assert tokens[-1].kind is Kind.END
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        if token.kind is not Kind.END:
            self.pos += 1
        return token

    def word(self, what: str) -> Token:
        """The next token, which must be a word; ``what`` says what it should be."""
        token = self.take()
        if token.kind is not Kind.WORD:
            token.expected(what)
        return token

    def accept(self, *texts: str) -> Token | None:
        """The next token if it is one of these words."""
        token = self.peek()
        if token.kind is Kind.WORD and token.text in texts:
            return self.take()
        return None

    def at_option(self) -> bool:
        """Whether a ``-x`` option comes next."""
        token = self.peek()
        return token.kind is Kind.WORD and token.text.startswith("-")

    def end(self, start: Token) -> None:
        """The ``;`` that ends the statement begun by ``start``."""
        token = self.take()
        if token.kind is not Kind.SEMI:
            where = "" if token.line == start.line else f" of line {start.line}"
            token.expected(f'";" to end the {start.text} statement{where}')

    def skip_statement(self) -> None:
        """Past the next ``;`` (or to the end), after an error."""
        while self.take().kind not in (Kind.SEMI, Kind.END):
            pass

    def family_flags(self) -> set[int]:
        """``-4``, ``-6``, ``-n`` (any mix, as ``-46n``; the last family wins, as in
        setkey): the address families allowed. Addresses are always numeric here, so
        ``-n`` changes nothing."""
        families = {4, 6}
        while self.at_option() and len(self.peek().text) > 1 and set(self.peek().text[1:]) <= FAMILY_FLAGS:
            for flag in self.take().text[1:]:
                if flag != "n":
                    families = {int(flag)}
        return families
