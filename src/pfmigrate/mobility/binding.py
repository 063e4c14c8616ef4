"""What the two binding machines share: sequence arithmetic, what a Binding Update and a
Binding Acknowledgement say, the inputs and outputs both sides use, and the one error.

These are not wire messages. The Mobility Header codec turns bytes into messages; an
agent's shell takes from them the few fields below and hands them to the machines. A
lifetime is in seconds and a multiple of four (the wire counts units of four seconds),
so the conversion either way is exact.

Every value is a frozen, slotted dataclass checked on construction: an impossible value
raises ``BindingError`` there, naming the field and the reason, and nowhere later.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address

from pfmigrate.mobility.rfc6275 import LIFETIME_UNIT, MAX_LIFETIME, SEQUENCE_MODULUS, BAStatus


class BindingError(ValueError):
    """A binding value that cannot be: ``where`` names the field, ``why`` says what is wrong."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where
        self.why = why


def seq_newer(a: int, b: int) -> bool:
    """Whether sequence number ``a`` comes after ``b`` (RFC 6275 §9.5.1).

    The comparison is modulo 2**16: ``a`` is *not* newer when it lies within the 32768
    values up to and including ``b`` (after 15: 0 to 15 and 32784 to 65535, the RFC's
    example). So the 32768 values after ``b`` are newer, and of two numbers 32768 apart
    each is newer than the other.
    """
    return 0 < (a - b) % SEQUENCE_MODULUS <= SEQUENCE_MODULUS // 2


def answers_out_of_window(last_accepted: int, sent: int) -> bool:
    """Whether a 135 carrying ``last_accepted`` can be the home agent's answer to the
    Binding Update numbered ``sent``: it refuses exactly the numbers not newer than the
    last it accepted (§9.5.1), so ``last_accepted`` is ``sent`` or up to 32767 after."""
    return not seq_newer(sent, last_accepted)


def seq_next(a: int) -> int:
    """The sequence number after ``a`` (RFC 6275 §11.7.1: each one greater than the last)."""
    return (a + 1) % SEQUENCE_MODULUS


def check_sequence(where: str, value: int) -> None:
    if not 0 <= value < SEQUENCE_MODULUS:
        raise BindingError(where, f"a sequence number is 0 to {SEQUENCE_MODULUS - 1}, not {value}")


def check_lifetime(where: str, value: int, *, low: int = 0) -> None:
    if not low <= value <= MAX_LIFETIME or value % LIFETIME_UNIT:
        raise BindingError(
            where, f"a lifetime is a multiple of {LIFETIME_UNIT} s from {low} to {MAX_LIFETIME}, not {value}"
        )


@dataclass(frozen=True, slots=True)
class BindingUpdate:
    """What a Binding Update says (RFC 6275 §6.1.7; R from RFC 3963 §4.1).

    ``lifetime`` 0 asks for the binding to be deleted. The flags are A (ack), H (home),
    L (link_local), K (key_management: the IKE SA can follow the mobile node) and
    R (mobile_router, NEMO).
    """

    sequence: int
    lifetime: int
    ack: bool = True
    home: bool = True
    link_local: bool = False
    key_management: bool = False
    mobile_router: bool = False

    def __post_init__(self) -> None:
        check_sequence("BindingUpdate.sequence", self.sequence)
        check_lifetime("BindingUpdate.lifetime", self.lifetime)


@dataclass(frozen=True, slots=True)
class BindingAck:
    """What a Binding Acknowledgement says (RFC 6275 §6.1.8; R from RFC 3963 §4.2).

    ``sequence`` is the Binding Update's, except with status 135, where it is the last
    sequence number the home agent accepted. ``lifetime`` is what was granted.
    """

    status: BAStatus
    sequence: int
    lifetime: int = 0
    key_management: bool = False
    mobile_router: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.status <= 0xFF:
            raise BindingError("BindingAck.status", f"a status is one octet, not {int(self.status)}")
        object.__setattr__(self, "status", BAStatus.of(int(self.status)))
        check_sequence("BindingAck.sequence", self.sequence)
        check_lifetime("BindingAck.lifetime", self.lifetime)


# Inputs both machines take. A migrate result names the home address of the
# ``MigrateIPsec`` action it answers, so a home agent can tell its mobile nodes apart.


@dataclass(frozen=True, slots=True)
class TimerFired:
    """The time a machine's ``timer()`` named has come. Early or repeated firings do nothing."""


@dataclass(frozen=True, slots=True)
class MigrateDone:
    """The IPsec SAs (and the IKE SA, if asked) now use the ``MigrateIPsec`` action's new address."""

    hoa: IPv6Address


#: Where the tunnel-mode SAs are after a migrate that failed: not known (it may have
#: been carried out in part, or whole with its answers lost), so the next step for them
#: reads the tables back instead of starting from a place.
UNKNOWN_PLACE = IPv6Address(0)


@dataclass(frozen=True, slots=True)
class MigrateFailed:
    """The ``MigrateIPsec`` action for ``hoa`` could not be carried out: where its SAs
    are is not known now (``UNKNOWN_PLACE``)."""

    hoa: IPv6Address
    reason: str


# Outputs both machines give.


@dataclass(frozen=True, slots=True)
class MigrateIPsec:
    """Move the tunnel-mode SAs and their policies for ``hoa`` from ``old_coa`` to ``new_coa``
    (a PF_KEY MIGRATE). ``move_ike``: whether K was agreed, so the IKE SA survives the
    move. The agents announce KMADDRESS with every MIGRATE either way, as UMIP does (an
    IKE daemon that keys by hand ignores it); without K the IKE SA must be negotiated
    again, which is the shell's business.

    The machine waits for ``MigrateDone`` or ``MigrateFailed`` before it sends anything
    that depends on the move, so the first packet tunnelled to the new address finds an SA.
    Before a first registration the SAs are taken to sit at the home address.
    """

    hoa: IPv6Address
    old_coa: IPv6Address
    new_coa: IPv6Address
    move_ike: bool


@dataclass(frozen=True, slots=True)
class RestoreHome:
    """No binding is left for ``hoa``: move its tunnel-mode SAs (and the IKE SA when
    ``move_ike``) from ``from_coa`` back to the home address, or remove them. Nothing waits
    for an answer."""

    hoa: IPv6Address
    from_coa: IPv6Address
    move_ike: bool
    why: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """An input that changed nothing, and why; for logs. No other action comes with it."""

    why: str
