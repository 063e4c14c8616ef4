"""What a setkey statement says, once read: model objects and the statement's place.

Each statement is a frozen value holding what it will ask of the key engine (a
``SecurityAssociation``, a ``Policy``, a ``MigrateRequest``...). Its place in the input
(``at``) and the notes the parser left (options accepted but without effect) do not
take part in equality, so a statement printed and read again equals itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pfmigrate.model import Dir, IPAddress, MigrateRequest, Mode, Policy, SecurityAssociation, Selector


@dataclass(frozen=True, slots=True)
class Where:
    source: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}" if self.line else self.source


NOWHERE = Where("<statement>", 0, 0)


@dataclass(frozen=True, slots=True)
class AddSA:
    """``add`` (or ``update``) an SA."""

    sa: SecurityAssociation
    update: bool = False
    at: Where = field(default=NOWHERE, compare=False)
    notes: tuple[str, ...] = field(default=(), compare=False)  # "file:line:column: note: ..."

    @property
    def verb(self) -> str:
        return "update" if self.update else "add"


@dataclass(frozen=True, slots=True)
class GetSPI:
    """``getspi``: a larval SA with an SPI the engine picks (``spi`` 0) or this one."""

    src: IPAddress
    dst: IPAddress
    proto: int
    spi: int
    reqid: int = 0
    at: Where = field(default=NOWHERE, compare=False)
    notes: tuple[str, ...] = field(default=(), compare=False)  # "file:line:column: note: ..."
    mode: Mode = Mode.TRANSPORT
    verb = "getspi"


@dataclass(frozen=True, slots=True)
class GetSA:
    src: IPAddress
    dst: IPAddress
    proto: int
    spi: int
    at: Where = field(default=NOWHERE, compare=False)
    verb = "get"


@dataclass(frozen=True, slots=True)
class DeleteSA:
    src: IPAddress
    dst: IPAddress
    proto: int
    spi: int
    at: Where = field(default=NOWHERE, compare=False)
    verb = "delete"


@dataclass(frozen=True, slots=True)
class DeleteAll:
    """``deleteall``: every SA of the protocol between the two addresses."""

    src: IPAddress
    dst: IPAddress
    proto: int
    at: Where = field(default=NOWHERE, compare=False)
    verb = "deleteall"


@dataclass(frozen=True, slots=True)
class Flush:
    """``flush [protocol]``: ``proto`` 0 is every SA."""

    proto: int = 0
    at: Where = field(default=NOWHERE, compare=False)
    verb = "flush"


@dataclass(frozen=True, slots=True)
class Dump:
    proto: int = 0
    at: Where = field(default=NOWHERE, compare=False)
    verb = "dump"


@dataclass(frozen=True, slots=True)
class SpdAdd:
    """``spdadd`` (or ``spdupdate``) a policy."""

    policy: Policy
    update: bool = False
    at: Where = field(default=NOWHERE, compare=False)

    @property
    def verb(self) -> str:
        return "spdupdate" if self.update else "spdadd"


@dataclass(frozen=True, slots=True)
class SpdDelete:
    selector: Selector
    dir: Dir
    at: Where = field(default=NOWHERE, compare=False)
    verb = "spddelete"


@dataclass(frozen=True, slots=True)
class SpdFlush:
    at: Where = field(default=NOWHERE, compare=False)
    verb = "spdflush"


@dataclass(frozen=True, slots=True)
class SpdDump:
    at: Where = field(default=NOWHERE, compare=False)
    verb = "spddump"


@dataclass(frozen=True, slots=True)
class Migrate:
    """pfmigrate's ``migrate``: one PF_KEY MIGRATE."""

    request: MigrateRequest
    at: Where = field(default=NOWHERE, compare=False)
    verb = "migrate"


@dataclass(frozen=True, slots=True)
class Exit:
    """``exit``, ``quit`` or ``bye``: the statements after it are not run."""

    at: Where = field(default=NOWHERE, compare=False)
    verb = "exit"


Statement = (
    AddSA | GetSPI | GetSA | DeleteSA | DeleteAll | Flush | Dump
    | SpdAdd | SpdDelete | SpdFlush | SpdDump | Migrate | Exit
)  # fmt: skip
