"""Statements written back as setkey text, the way ``pfmigrate setkey -n`` shows what
it understood: defaults spelled out, keys in hex, names canonical. ``parser.parse``
reads what this writes to an equal statement (the tests check it on random ones)."""

from __future__ import annotations

from pfmigrate.cli.setkey import transforms
from pfmigrate.cli.setkey.dump import SA_PROTOCOLS, priority_text, request_text, selector_text
from pfmigrate.cli.setkey.policies import DEFAULT_PRIORITY
from pfmigrate.cli.setkey.statements import (
    AddSA,
    DeleteAll,
    DeleteSA,
    Dump,
    Exit,
    Flush,
    GetSA,
    GetSPI,
    Migrate,
    SpdAdd,
    SpdDelete,
    SpdDump,
    SpdFlush,
    Statement,
)
from pfmigrate.model import Algorithm, Mode, SecurityAssociation, Template

LIFETIME_OPTIONS = {"-lh": "hard_add", "-ls": "soft_add", "-bh": "hard_bytes", "-bs": "soft_bytes"}


def _algorithm(flag: str, algorithm: Algorithm, *, aead: bool = False) -> list[str]:
    words = [flag, transforms.dump_name(algorithm, aead=aead)]
    if algorithm.key_bits:
        words.append(f"0x{algorithm.key.hex()}")
    return words


def _sa(verb: str, sa: SecurityAssociation) -> list[str]:
    src, dst, proto = str(sa.src), str(sa.dst), SA_PROTOCOLS[sa.proto]
    if sa.encap is not None:
        src, dst = f"{src}[{sa.encap.sport}]", f"{dst}[{sa.encap.dport}]"
        proto = "esp-udp" if sa.encap.oa is None else f"esp-udp {sa.encap.oa}"
    words = [verb, src, dst, proto, f"0x{sa.spi:x}"]
    if sa.mode is not Mode.TRANSPORT:
        words += ["-m", sa.mode.value]
    if sa.replay_window:
        words += ["-r", str(sa.replay_window)]
    if sa.reqid:
        words += ["-u", str(sa.reqid)]
    for flag, name in LIFETIME_OPTIONS.items():
        if getattr(sa.lifetime, name):
            words += [flag, str(getattr(sa.lifetime, name))]
    if sa.aead is not None:
        words += _algorithm("-E", sa.aead, aead=True)
    if sa.enc is not None:
        words += _algorithm("-E", sa.enc)
    if sa.auth is not None:
        words += _algorithm("-A", sa.auth)
    if sa.comp is not None:
        words += ["-C", transforms.dump_name(sa.comp)]
    return words


def _priority(priority: int) -> list[str]:
    if priority == DEFAULT_PRIORITY:
        return []
    return ["prio", "high", "+", str(0x40000000)] if priority == 0 else priority_text(priority).split()


def statement_text(statement: Statement) -> str:
    words: list[str]
    match statement:
        case AddSA(sa=sa):
            words = _sa(statement.verb, sa)
        case GetSPI(src=src, dst=dst, proto=proto, spi=spi, reqid=reqid):
            words = ["getspi", str(src), str(dst), SA_PROTOCOLS[proto], f"0x{spi:x}"]
            words += ["-u", str(reqid)] if reqid else []
        case GetSA() | DeleteSA():
            words = [statement.verb, str(statement.src), str(statement.dst), SA_PROTOCOLS[statement.proto]]
            words.append(f"0x{statement.spi:x}")
        case DeleteAll(src=src, dst=dst, proto=proto):
            words = ["deleteall", str(src), str(dst), SA_PROTOCOLS[proto]]
        case Flush(proto=proto) | Dump(proto=proto):
            words = [statement.verb] + ([SA_PROTOCOLS[proto]] if proto else [])
        case SpdAdd(policy=p):
            words = [statement.verb, selector_text(p.selector), "-P", p.dir.value, *_priority(p.priority)]
            words += [p.action.value, *(request_text(t) for t in p.templates)]
        case SpdDelete(selector=selector, dir=direction):
            words = ["spddelete", selector_text(selector), "-P", direction.value]
        case Migrate(request=r):
            words = ["migrate", selector_text(r.selector), "-P", r.dir.value]
            for b in r.bundles:
                words.append(request_text(Template(b.proto, b.mode, b.old_src, b.old_dst, b.reqid)))
                words.append(request_text(Template(b.proto, b.mode, b.new_src, b.new_dst, b.reqid)))
            if r.kmaddress is not None:
                words += ["-k", f"{r.kmaddress.local}-{r.kmaddress.remote}"]
        case SpdFlush() | SpdDump() | Exit():
            words = [statement.verb]
    return " ".join(words) + ";"
