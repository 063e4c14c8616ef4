"""pfmigrate setkey: ipsec-tools' setkey(8) on any pfmigrate backend.

  pfmigrate setkey -f FILE      run the statements of FILE (- for standard input)
  pfmigrate setkey -c           run statements from standard input
  pfmigrate setkey -D [-P]      dump the SAD (with -P, or as -DP: the SPD)
  pfmigrate setkey -F [-P]      flush the SAD (with -P, or as -FP: the SPD); this kernel's
                                tables at a terminal: only with --yes
  pfmigrate setkey -x           print MIGRATE, ACQUIRE and EXPIRE as they come (Ctrl-C stops)

Statements end with ";", may span lines, and "#" starts a comment:

  add [-46n] SRC DST PROTOCOL SPI [EXTENSIONS] ALGORITHMS ;   (update: the same)
  getspi [-46n] SRC DST PROTOCOL SPI [EXTENSIONS] ;           (SPI 0: the engine picks; -u REQID counts,
                                                              -m transport|any only, the rest has no effect)
  get | delete [-46n] SRC DST PROTOCOL SPI ;
  deleteall [-46n] SRC DST PROTOCOL ;
  flush [PROTOCOL] ;   dump [PROTOCOL] ;
  spdadd [-46n] SRC_RANGE DST_RANGE UPPERSPEC POLICY ;       (spdupdate: the same)
  spddelete [-46n] SRC_RANGE DST_RANGE UPPERSPEC -P DIRECTION ;
  spdflush ;   spddump ;   exit ;
  migrate [-46n] SRC_RANGE DST_RANGE UPPERSPEC -P DIRECTION OLD NEW [OLD NEW]... [-k LOCAL-REMOTE] ;

  PROTOCOL    esp, ah, ipcomp, or esp-udp [ORIGINAL_ADDRESS] (ESP in UDP; SRC[PORT] DST[PORT], 4500 if left out)
  EXTENSIONS  -m transport|tunnel|beet|any  -r REPLAY_WINDOW  -u REQID  -lh|-ls SECONDS  -bh|-bs BYTES
              -f zero-pad|random-pad|seq-pad|nocyclic-seq (accepted with a note: Linux has no such choice)
  ALGORITHMS  -E EALGO KEY [-A AALGO KEY] (esp)   -A AALGO KEY (ah)   -C deflate [-R] (ipcomp)
              EALGO: des-cbc 3des-cbc null blowfish-cbc cast128-cbc aes-cbc rijndael-cbc twofish-cbc
                     camellia-cbc aes-ctr aes-gcm-16 (null takes no key)
              AALGO: hmac-md5 hmac-sha1 hmac-sha256 hmac-sha384 hmac-sha512 (or hmac-sha2-256...)
                     hmac-ripemd160 aes-xcbc-mac null (null takes no key)
              KEY: "a double-quoted string" or 0x and hex digits, of a length the algorithm takes
  SRC_RANGE   ADDRESS[/PREFIXLEN][[PORT]]   (PORT: a number or any)
  UPPERSPEC   any, tcp, udp, icmp, icmp6, gre, sctp, 135 (Mobility Header), a name from /etc/protocols
              or 0-255;
              icmp, icmp6 and 135 may take TYPE[,CODE], gre a KEY
  POLICY      -P in|out|fwd [prio[rity] OFFSET | prio low|def|high [+|- N]] discard|none|ipsec REQUEST...
  REQUEST     esp|ah|ipcomp/transport|tunnel|beet/[SRC-DST]/[default|use|require|unique:ID]
              (default is require, as in Linux; unique needs its ID, 1-16383, which the SAs
              name with -u ID; beet, like esp-udp and migrate, goes beyond setkey)

migrate is pfmigrate's own statement: one PF_KEY MIGRATE for the policy named by its
selector and direction. Each bundle is its request as it is now (OLD) followed by the
same request with the new endpoints (NEW); protocol, mode and unique id stay. -k gives
the key managers' addresses after the move (KMADDRESS), for the IKE daemon. The
Mobile IPv6 node of the seed, moving to a new care-of address:

  migrate 3ffe:501:ffff:100:1:2:3:4 3ffe:501:ffff:100::1 135 -P out
      esp/tunnel/3ffe:501:ffff:500:1:2:3:4-3ffe:501:ffff:100::1/require
      esp/tunnel/3ffe:501:ffff:400:1:2:3:4-3ffe:501:ffff:100::1/require
      -k 3ffe:501:ffff:400:1:2:3:4-3ffe:501:ffff:100::1 ;

How it runs: a file (or piped input) is read and checked whole before anything runs,
so one mistake, reported as FILE:LINE:COLUMN, changes nothing; then the statements
run in order, and one the engine refuses is reported with its line while the rest go
on (exit status 1 at the end), as setkey goes on. At a terminal, -c runs each
statement when its line ends. FILE may be a pipe (-f <(...)); a file or piped input
is at most 16 MiB (split a larger load into several files). In RFC mode (-r,
setkey's default on Linux) an "in" policy added, updated, deleted or migrated takes
its "fwd" twin with it; -k does only what each statement says. Dumps hide keys unless --keys
is given (setkey shows them).

Without --backend, setkey uses keyd if one answers, else this kernel (PF_KEY, else
XFRM), and says on standard error which. -F and -FP on this kernel's tables ask for
--yes when standard input is a terminal; from a script they flush, as setkey does.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pfmigrate.backends import registry
from pfmigrate.cli import argtypes
from pfmigrate.cli.errors import CommandError, standard_input
from pfmigrate.cli.setkey.commands import Options, Session, notes, watch
from pfmigrate.cli.setkey.errors import SetkeyError
from pfmigrate.cli.setkey.inputs import decode, interactive
from pfmigrate.cli.setkey.parser import parse
from pfmigrate.cli.setkey.printer import statement_text
from pfmigrate.cli.setkey.reading import MAX_SETKEY_BYTES, bounded, read_file
from pfmigrate.cli.setkey.statements import Dump, Flush, SpdDump, SpdFlush, Statement, Where
from pfmigrate.engine import KeyEngine

__all__ = ["SetkeyError", "parse", "register", "run"]
STDIN = "<stdin>"


def register(commands: Any) -> None:
    setkey = commands.add_parser(
        "setkey",
        help="setkey(8): add, dump and flush SAs and policies, and MIGRATE, on any backend",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = setkey.add_mutually_exclusive_group(required=True)
    what.add_argument("-c", dest="stdin", action="store_true", help="run statements from standard input")
    what.add_argument("-f", dest="file", metavar="FILE", help="run the statements of FILE (- for standard input)")
    what.add_argument("-D", dest="dump", action="store_true", help="dump the SAD (with -P: the SPD)")
    what.add_argument("-F", dest="flush", action="store_true", help="flush the SAD (with -P: the SPD)")
    what.add_argument("-x", dest="watch", action="store_true", help="print events as they come, until Ctrl-C")
    setkey.add_argument("-P", dest="policy", action="store_true", help="with -D or -F: the SPD (also -DP, -FP)")
    setkey.add_argument("-a", dest="dead", action="store_true", help="dumps show dead SAs too")
    setkey.add_argument("-n", dest="check", action="store_true", help="check only: print the statements as read")
    mode = setkey.add_mutually_exclusive_group()
    mode.add_argument("-r", dest="rfc", action="store_true", help="RFC mode, the default: in policies get fwd twins")
    mode.add_argument("-k", dest="rfc", action="store_false", help="kernel mode: no fwd twins")
    setkey.add_argument("--keys", action="store_true", help="show keys in dumps (hidden unless asked for)")
    setkey.add_argument("--json", action="store_true", help="dumps, results and events as JSON, one a line")
    setkey.add_argument("--backend", choices=registry.NAMES, help="the key engine (default: keyd, else Linux)")
    setkey.add_argument("--keyd-socket", metavar="PATH", help="where keyd listens")
    setkey.add_argument(
        "--yes", action="store_true", help="-F, -FP on this kernel's tables at a terminal: flush without asking"
    )
    setkey.add_argument("--count", type=argtypes.count, default=0, help="-x: stop after this many events")
    setkey.add_argument("--timeout", type=argtypes.seconds, default=0.0, help="-x: stop after this many seconds")
    setkey.set_defaults(run=run, rfc=True)


def _statements(args: argparse.Namespace) -> list[Statement]:
    """The statements of ``-f FILE`` or of piped ``-c`` input, all read before any runs."""
    if args.stdin or args.file == "-":
        stdin = standard_input()
        raw = getattr(stdin, "buffer", None)
        if raw is None:  # a text stream put in its place by Python code: already in memory
            return parse(stdin.read(), STDIN)
        return parse(decode(bounded(raw.read, STDIN, limit=MAX_SETKEY_BYTES, reader="setkey"), STDIN), STDIN)
    data = read_file(args.file, limit=MAX_SETKEY_BYTES, reader="setkey", wanted="a file of statements")
    return parse(decode(data, args.file), args.file)


def _from_flags(args: argparse.Namespace) -> list[Statement]:
    """``-D``, ``-DP``, ``-F``, ``-FP`` as the statements they stand for."""
    at = Where(f"setkey -{'D' if args.dump else 'F'}{'P' if args.policy else ''}", 0, 0)
    if args.dump:
        return [SpdDump(at) if args.policy else Dump(at=at)]
    return [SpdFlush(at) if args.policy else Flush(at=at)]


def _open(args: argparse.Namespace) -> KeyEngine:
    """The backend asked for, or the default, named on standard error: a person should
    know whose SAD and SPD the statements change (keyd's, or this kernel's)."""
    try:
        name = args.backend or registry.default_name(args.keyd_socket)
        engine = registry.open_backend(name, keyd_socket=args.keyd_socket)
    except registry.BackendUnavailable as exc:
        raise CommandError(str(exc)) from None
    if args.backend is None:
        print(f"pfmigrate: using {registry.describe(name, args.keyd_socket)}", file=sys.stderr, flush=True)
    elif name == "inprocess" and sys.stderr.isatty():  # (a script that asked for it knows; a person may not)
        print(f"pfmigrate: note: {registry.describe(name)}", file=sys.stderr, flush=True)
    return engine


def _confirm_flush(args: argparse.Namespace, engine: KeyEngine) -> None:
    """``-F``/``-FP`` on this kernel's tables, typed at a terminal, goes ahead only with
    ``--yes``: every program of the machine shares them, and F is next to D. From a
    script (standard input not a terminal) it goes ahead, as setkey(8) does."""
    stdin = sys.stdin
    if not args.flush or args.yes or engine.name not in registry.KERNEL or stdin is None or not stdin.isatty():
        return
    table, thing, things = ("SPD", "policy", "policies") if args.policy else ("SAD", "SA", "SAs")
    try:
        found = len(engine.dump_policies() if args.policy else engine.dump_sas())
    except OSError:  # (not allowed to look, say: the flush itself will answer that)
        found = -1
    if found == 0:
        return  # nothing to lose
    how_many = {-1: f"every {thing}", 1: f"the one {thing}"}.get(found, f"all {found} {things}")
    flag = "-FP" if args.policy else "-F"
    raise CommandError(
        f"{flag} would delete {how_many} of this kernel's {table} ({engine.name}), which every program "
        f"of this machine shares; run `pfmigrate setkey {flag} --yes` to flush it (asked because standard "
        "input is a terminal: from a script, it goes ahead as setkey does)"
    )


def _show(statements: list[Statement]) -> bool:
    """``-n``: the statements as understood, and the parser's notes."""
    for line in notes(statements):
        print(line, file=sys.stderr)
    for statement in statements:
        print(statement_text(statement))
    return True


def run(args: argparse.Namespace) -> int:
    if args.policy and not (args.dump or args.flush):
        raise CommandError("-P goes with -D or -F")
    if args.check and not (args.stdin or args.file):
        raise CommandError("-n goes with -c or -f")
    if (args.count or args.timeout) and not args.watch:
        raise CommandError("--count and --timeout go with -x")
    if args.yes and not args.flush:
        raise CommandError("--yes goes with -F")
    typed = args.stdin and standard_input().isatty()  # a person at a terminal: run each line as it comes
    mistakes: list[SetkeyError] = []

    def report(exc: SetkeyError) -> None:
        mistakes.append(exc)
        print(f"pfmigrate: {exc}", file=sys.stderr, flush=True)

    statements: list[Statement] = []
    if args.dump or args.flush:
        statements = _from_flags(args)
    elif (args.stdin or args.file) and not typed:
        statements = _statements(args)
    if args.check:
        if typed:
            interactive(sys.stdin, STDIN, _show, report)
        else:
            _show(statements)
        return 1 if mistakes else 0
    with _open(args) as engine:
        _confirm_flush(args, engine)
        if args.watch:
            watch(engine, sys.stdout, as_json=args.json, count=args.count, timeout=args.timeout)
            return 0
        options = Options(keys=args.keys, json=args.json, rfc=args.rfc, dead=args.dead)
        session = Session(engine, out=sys.stdout, err=sys.stderr, options=options)
        if typed:
            interactive(sys.stdin, STDIN, session.run, report)
        else:
            session.run(statements)
    return 1 if session.failures or mistakes else 0
