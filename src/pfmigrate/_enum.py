"""Open integer enums: every wire number has a value, known or not.

A kernel newer than this code may send a number we have never heard of. Decoding must
not fail on it and encoding must give it back unchanged, so an unknown number becomes a
pseudo-member of the enum instead of raising ``ValueError``.
"""

from __future__ import annotations

import enum
from typing import Generic, Self, TypeVar, cast


class OpenIntEnum(enum.IntEnum):
    """An ``IntEnum`` that accepts any non-negative integer.

    Known numbers are the ordinary members. Unknown numbers become pseudo-members that
    compare, hash and encode as their integer; their ``name`` is ``None``. Pseudo-members
    are not cached, so hostile input cannot grow the enum without bound.
    """

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return None
        pseudo = int.__new__(cls, value)
        pseudo._name_ = None  # type: ignore[assignment]
        pseudo._value_ = value
        return pseudo

    @classmethod
    def of(cls, value: int) -> Self:
        """The member for ``value``; the fast path used by decoders."""
        member = cls._value2member_map_.get(value)
        if member is not None:
            return cast(Self, member)
        return cls(value)

    @classmethod
    def parse(cls, text: str | int) -> Self:
        """A member from its name (any case) or its number, as a user would type it."""
        if isinstance(text, int):
            return cls.of(text)
        key = text.strip()
        if key.lstrip("-").isdigit():
            return cls.of(int(key))
        try:
            return cls[key.upper()]
        except KeyError:
            names = ", ".join(m.name for m in cls if m.name)
            raise ValueError(f"unknown {cls.__name__} {text!r} (known: {names})") from None

    @property
    def known(self) -> bool:
        return self._name_ is not None

    @property
    def label(self) -> str:
        """The member's name, or its number when the number is not known."""
        return self._name_ if self._name_ is not None else str(self._value_)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self.label}: {self._value_}>"


E = TypeVar("E", bound=OpenIntEnum)


class MemberTable(dict[int, E], Generic[E]):
    """``table[number]`` gives the member, known or not, at the cost of a dict lookup."""

    def __init__(self, enum_cls: type[E]) -> None:
        super().__init__({member.value: member for member in enum_cls})
        self.enum_cls = enum_cls

    def __missing__(self, value: int) -> E:
        return self.enum_cls(value)
