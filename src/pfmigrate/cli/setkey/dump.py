"""SAD and SPD entries, printed as setkey ``-D`` and ``-DP`` print them.

Line for line the shape of ipsec-tools' output on Linux, as far as the model holds the
data: an SA's message sequence number, pid and reference count, and a policy's
creation time, lifetimes and reference count are not in the model, so those lines (or
fields) are left out rather than invented. Keys are shown only when asked for
(``keys=True``): a dump ends up in terminals and logs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from pfmigrate.cli.setkey import transforms
from pfmigrate.cli.setkey.policies import GRE, MAX_UNIQUE_ID, PRIORITY_BASES, TYPED, UPPER_NAMES
from pfmigrate.model import (
    AH,
    ESP,
    IPCOMP,
    Algorithm,
    IPNetwork,
    Policy,
    SAFlag,
    SAState,
    SecurityAssociation,
    Selector,
    Template,
)
from pfmigrate.pfkey.constants import SAFlags

SA_PROTOCOLS = {ESP: "esp", AH: "ah", IPCOMP: "ipcomp"}
# sadb_sa_flags as PF_KEY carries them, which is what setkey prints
FLAG_BITS = {SAFlag.NOECN: SAFlags.NOECN, SAFlag.DECAP_DSCP: SAFlags.DECAP_DSCP, SAFlag.NOPMTUDISC: SAFlags.NOPMTUDISC}


def _when(epoch: float) -> str:
    """``ctime`` without the weekday, or blanks for never (20 characters either way)."""
    return time.ctime(epoch)[4:24] if epoch else " " * 20


def _key(algorithm: Algorithm, keys: bool) -> str:
    if not algorithm.key_bits:
        return ""
    if not keys:
        return f"  ({algorithm.key_bits}-bit key hidden; --keys shows it)"
    digits = algorithm.key.hex()
    return "  " + " ".join(digits[i : i + 8] for i in range(0, len(digits), 8))


def sa_entry(sa: SecurityAssociation, *, keys: bool = False, now: float | None = None) -> str:
    now = time.time() if now is None else now
    encap = sa.encap
    src, dst = str(sa.src), str(sa.dst)
    if encap is not None:
        src, dst = f"{src}[{encap.sport}]", f"{dst}[{encap.dport}]"
    proto = "esp-udp" if encap is not None and sa.proto == ESP else SA_PROTOCOLS.get(sa.proto, str(sa.proto))
    lines = [
        f"{src} {dst}",
        f"\t{proto} mode={sa.mode.value} spi={sa.spi}(0x{sa.spi:08x}) reqid={sa.reqid}(0x{sa.reqid:08x})",
    ]
    if encap is not None and encap.oa is not None:
        lines.append(f"\tNAT OA={encap.oa}")
    if sa.comp is not None:
        lines.append(f"\tC: {transforms.dump_name(sa.comp)}")
    cipher = sa.aead or sa.enc
    if cipher is not None:
        lines.append(f"\tE: {transforms.dump_name(cipher, aead=sa.aead is not None)}{_key(cipher, keys)}")
    if sa.auth is not None:
        lines.append(f"\tA: {transforms.dump_name(sa.auth)}{_key(sa.auth, keys)}")
    flags = sum(int(bit) for flag, bit in FLAG_BITS.items() if flag in sa.flags)
    lines.append(f"\tseq=0x00000000 replay={sa.replay_window} flags=0x{flags:08x} state={sa.state.value}")
    cur, life = sa.current, sa.lifetime
    diff = int(now - cur.add_time) if cur.add_time else 0
    lines += [
        f"\tcreated: {_when(cur.add_time)}\tcurrent: {_when(now)}",
        f"\tdiff: {diff}(s)\thard: {life.hard_add}(s)\tsoft: {life.soft_add}(s)",
        f"\tlast: {_when(cur.use_time)}\thard: {life.hard_use}(s)\tsoft: {life.soft_use}(s)",
        f"\tcurrent: {cur.bytes}(bytes)\thard: {life.hard_bytes}(bytes)\tsoft: {life.soft_bytes}(bytes)",
        f"\tallocated: {cur.packets}\thard: {life.hard_packets}\tsoft: {life.soft_packets}",
    ]
    return "\n".join(lines)


def sad(sas: Iterable[SecurityAssociation], *, keys: bool = False, dead: bool = False, now: float | None = None) -> str:
    """Every SA, dead ones only with ``dead`` (setkey ``-a``); setkey's words when empty."""
    shown = [sa_entry(sa, keys=keys, now=now) for sa in sas if dead or sa.state is not SAState.DEAD]
    return "\n".join(shown) if shown else "No SAD entries."


def _range(network: IPNetwork, port: int, proto: int) -> str:
    text = str(network.network_address)
    if network.prefixlen != network.max_prefixlen:
        text += f"/{network.prefixlen}"
    if proto not in TYPED and proto != GRE:
        text += f"[{port or 'any'}]"
    return text


def upper_text(selector: Selector) -> str:
    """The upper-layer protocol, with its ICMP or MH type and code, or its GRE key."""
    proto = selector.proto
    text = UPPER_NAMES.get(proto, str(proto))
    if proto in TYPED and (selector.sport or selector.dport):
        text += f" {selector.sport},{selector.dport}"
    elif proto == GRE and (selector.sport or selector.dport):
        text += f" {(selector.sport << 16) + selector.dport}"
    return text


def selector_text(selector: Selector) -> str:
    src = _range(selector.src, selector.sport, selector.proto)
    dst = _range(selector.dst, selector.dport, selector.proto)
    return f"{src} {dst} {upper_text(selector)}"


def request_text(template: Template) -> str:
    """``esp/tunnel/A-B/require``; a reqid beyond setkey's manual range shows as ``#N``."""
    ends = f"{template.src}-{template.dst}" if template.src is not None else ""
    text = f"{SA_PROTOCOLS[template.proto]}/{template.mode.value}/{ends}/{template.level.value}"
    if template.reqid:
        text += f"{':' if template.reqid <= MAX_UNIQUE_ID else '#'}{template.reqid}"
    return text


def priority_text(priority: int) -> str:
    """``prio def``, ``prio high + 5``...: the nearest of setkey's three bases and the
    offset from it, larger meaning earlier; nothing for 0 (no priority set)."""
    if priority == 0:
        return ""
    if priority < 0x60000000:
        base = "high"
    elif priority < 0xA0000000:
        base = "def"
    else:
        base = "low"
    offset = PRIORITY_BASES[base] - priority
    sign = "+" if offset > 0 else "-"
    return f"prio {base}" + (f" {sign} {abs(offset)}" if offset else "")


def policy_entry(policy: Policy) -> str:
    head = " ".join(part for part in (policy.dir.value, priority_text(policy.priority), policy.action.value) if part)
    lines = [selector_text(policy.selector), f"\t{head}"]
    lines += [f"\t{request_text(t)}" for t in policy.templates]
    lines.append(f"\tspid={policy.index}")
    return "\n".join(lines)


def spd(policies: Iterable[Policy]) -> str:
    shown = [policy_entry(policy) for policy in policies]
    return "\n".join(shown) if shown else "No SPD entries."
