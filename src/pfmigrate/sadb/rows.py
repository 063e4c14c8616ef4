"""The engine's rows as JSON-ready data and back, for keyd's journal.

Explicit, field by field: a journal outlives the code that wrote it, so its format is
written down here rather than left to ``pickle``. Bytes are hex; algorithms are their
PF_KEY numbers. ``sa_from_data(sa_to_data(sa)) == sa`` for every row the engine makes
(a property test holds it).
"""

from __future__ import annotations

from typing import Any

from pfmigrate.sadb import algorithms
from pfmigrate.sadb.records import PolicyRecord, SARecord, Selector, Template, sa_selector


def _hex(raw: bytes) -> str:
    return raw.hex()


def _ctx(ctx: tuple[int, int, bytes] | None) -> list[Any] | None:
    return None if ctx is None else [ctx[0], ctx[1], ctx[2].hex()]


def _ctx_back(data: list[Any] | None) -> tuple[int, int, bytes] | None:
    return None if data is None else (int(data[0]), int(data[1]), bytes.fromhex(data[2]))


def sa_to_data(sa: SARecord) -> dict[str, Any]:
    sel_family, sel_saddr, sel_prefixlen, sel_proto, sel_sport = sa.sel
    return {
        "serial": sa.serial, "family": sa.family, "daddr": _hex(sa.daddr), "saddr": _hex(sa.saddr), "spi": sa.spi,
        "proto": sa.proto, "mode": sa.mode, "reqid": sa.reqid, "replay_window": sa.replay_window, "flags": sa.flags,
        "sel": [sel_family, _hex(sel_saddr), sel_prefixlen, sel_proto, sel_sport],
        "aalg": sa.aalg.id if sa.aalg else None, "akey": _hex(sa.akey), "akey_bits": sa.akey_bits,
        "ealg": sa.ealg.id if sa.ealg else None, "ekey": _hex(sa.ekey), "ekey_bits": sa.ekey_bits,
        "calg": sa.calg.id if sa.calg else None, "lft": list(sa.lft), "cur_bytes": sa.cur_bytes,
        "cur_packets": sa.cur_packets, "add_time": sa.add_time, "use_time": sa.use_time, "state": sa.state,
        "dying": sa.dying, "seq": sa.seq, "encap": list(sa.encap) if sa.encap else None, "sec_ctx": _ctx(sa.sec_ctx),
    }  # fmt: skip


def sa_from_data(data: dict[str, Any]) -> SARecord:
    sel = data["sel"]
    encap = data["encap"]
    return SARecord(
        int(data["serial"]), int(data["family"]), bytes.fromhex(data["daddr"]), bytes.fromhex(data["saddr"]),
        int(data["spi"]), int(data["proto"]), int(data["mode"]), int(data["reqid"]), int(data["replay_window"]),
        int(data["flags"]), sa_selector(int(sel[0]), bytes.fromhex(sel[1]), int(sel[2]), int(sel[3]), int(sel[4])),
        algorithms.AUTH_BY_ID[data["aalg"]] if data["aalg"] is not None else None, bytes.fromhex(data["akey"]),
        int(data["akey_bits"]),
        algorithms.ENCRYPT_BY_ID[data["ealg"]] if data["ealg"] is not None else None, bytes.fromhex(data["ekey"]),
        int(data["ekey_bits"]),
        algorithms.COMPRESS_BY_ID[data["calg"]] if data["calg"] is not None else None,
        _lifetimes(data["lft"]), int(data["cur_bytes"]), int(data["cur_packets"]), int(data["add_time"]),
        int(data["use_time"]), str(data["state"]), bool(data["dying"]), int(data["seq"]),
        (int(encap[0]), int(encap[1]), int(encap[2])) if encap else None, _ctx_back(data["sec_ctx"]),
    )  # fmt: skip


def _lifetimes(values: list[Any]) -> tuple[int, int, int, int, int, int, int, int]:
    a, b, c, d, e, f, g, h = (int(v) for v in values)
    return (a, b, c, d, e, f, g, h)


def policy_to_data(p: PolicyRecord) -> dict[str, Any]:
    sel = p.selector
    return {
        "serial": p.serial, "index": p.index, "dir": p.dir,
        "selector": [sel.family, _hex(sel.daddr), _hex(sel.saddr), sel.prefixlen_d, sel.prefixlen_s, sel.proto,
                     sel.dport, sel.sport],
        "action": p.action, "priority": p.priority,
        "templates": [[t.proto, t.mode, t.reqid, t.optional, _hex(t.saddr), _hex(t.daddr), t.family]
                      for t in p.templates],
        "lft": list(p.lft), "add_time": p.add_time, "use_time": p.use_time, "inserted": p.inserted,
        "sec_ctx": _ctx(p.sec_ctx), "position": p.position,
    }  # fmt: skip


def policy_from_data(data: dict[str, Any]) -> PolicyRecord:
    s = data["selector"]
    selector = Selector(
        int(s[0]), bytes.fromhex(s[1]), bytes.fromhex(s[2]), int(s[3]), int(s[4]), int(s[5]), int(s[6]), int(s[7])
    )
    templates = tuple(
        Template(int(t[0]), int(t[1]), int(t[2]), bool(t[3]), bytes.fromhex(t[4]), bytes.fromhex(t[5]), int(t[6]))
        for t in data["templates"]
    )
    return PolicyRecord(
        int(data["serial"]), int(data["index"]), int(data["dir"]), selector, int(data["action"]),
        int(data["priority"]), templates, _lifetimes(data["lft"]), int(data["add_time"]), int(data["use_time"]),
        float(data["inserted"]), _ctx_back(data["sec_ctx"]), int(data["position"]),
    )  # fmt: skip


__all__ = ["policy_from_data", "policy_to_data", "sa_from_data", "sa_to_data"]
