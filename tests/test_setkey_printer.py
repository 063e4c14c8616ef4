"""A statement printed as setkey text (what ``pfmigrate setkey -n`` shows) reads back as
the same statement, for random statements of every kind."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from hypothesis import given
from hypothesis import strategies as st

from pfmigrate.cli.setkey import parse
from pfmigrate.cli.setkey.printer import statement_text
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
from pfmigrate.cli.setkey.transforms import AUTHENTICATION, COMPRESSION, ENCRYPTION, Transform
from pfmigrate.model import (
    AH,
    ESP,
    IPCOMP,
    Action,
    Algorithm,
    Dir,
    Encap,
    IPAddress,
    IPNetwork,
    KMAddress,
    Lifetime,
    MigrateBundle,
    MigrateRequest,
    Mode,
    Policy,
    SecurityAssociation,
    Selector,
    Template,
)

U32, U64 = 2**32 - 1, 2**64 - 1
versions = st.sampled_from([4, 6])
protocols = st.sampled_from([ESP, AH, IPCOMP])
modes = st.sampled_from(list(Mode))
directions = st.sampled_from(list(Dir))
spis = st.integers(256, U32)
MAX_CPI = 0xFFFF  # an IPComp SA's SPI is its 16-bit CPI


def spis_of(proto: int) -> st.SearchStrategy[int]:
    return st.integers(256, MAX_CPI) if proto == IPCOMP else spis


def addresses(version: int) -> st.SearchStrategy[IPAddress]:
    if version == 4:
        return st.integers(0, U32).map(IPv4Address)
    return st.integers(0, 2**128 - 1).map(IPv6Address)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[IPAddress, IPAddress]:
    version = draw(versions)
    return draw(addresses(version)), draw(addresses(version))


@st.composite
def networks(draw: st.DrawFn, version: int) -> IPNetwork:
    address = draw(addresses(version))
    return ip_network((address, draw(st.integers(0, address.max_prefixlen))), strict=False)


@st.composite
def algorithms(draw: st.DrawFn, table: dict[str, Transform]) -> Algorithm:
    transform = draw(st.sampled_from(sorted(table.values(), key=lambda t: t.name)))
    size = draw(st.sampled_from(transform.key_bits)) // 8 if transform.key_bits else 0
    return transform.algorithm(draw(st.binary(min_size=size, max_size=size)))


@st.composite
def security_associations(draw: st.DrawFn) -> SecurityAssociation:
    src, dst = draw(pairs())
    proto = draw(protocols)
    auth = enc = aead = comp = encap = None
    if proto == ESP:
        cipher = draw(algorithms(ENCRYPTION))
        if cipher.name.startswith("rfc4106"):
            aead = cipher
        else:
            enc, auth = cipher, draw(st.none() | algorithms(AUTHENTICATION))
        if draw(st.booleans()):
            ports = st.integers(1, 0xFFFF)
            encap = Encap(2, draw(ports), draw(ports), draw(st.none() | addresses(src.version)))
    elif proto == AH:
        auth = draw(algorithms(AUTHENTICATION))
    else:
        comp = draw(algorithms(COMPRESSION))
    times, sizes = st.integers(0, U64), st.integers(0, U64)
    lifetime = Lifetime(soft_bytes=draw(sizes), hard_bytes=draw(sizes), soft_add=draw(times), hard_add=draw(times))
    return SecurityAssociation(
        src, dst, draw(spis_of(proto)), proto, draw(modes), draw(st.integers(0, U32)), auth, enc, aead, comp,
        draw(st.integers(0, 255)), lifetime=lifetime, encap=encap,
    )  # fmt: skip


@st.composite
def selectors(draw: st.DrawFn) -> Selector:
    version = draw(versions)
    proto = draw(st.sampled_from([0, 1, 4, 6, 17, 41, 47, 58, 132, 135, 200]))
    ports = st.integers(0, 255) if proto in (1, 58, 135) else st.integers(0, 0xFFFF)
    return Selector(draw(networks(version)), draw(networks(version)), proto, draw(ports), draw(ports))


@st.composite
def templates(draw: st.DrawFn) -> Template:
    mode = draw(modes)
    src = dst = None
    if mode is not Mode.TRANSPORT or draw(st.booleans()):
        src, dst = draw(pairs())
    level = draw(st.sampled_from(["use", "require", "unique"]))
    reqid = draw(st.integers(1, 0x3FFF)) if level == "unique" else 0
    return Template(draw(protocols), mode, src, dst, reqid, level == "use")


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    action = draw(st.sampled_from(list(Action)))
    chosen = draw(st.lists(templates(), max_size=4)) if action is Action.IPSEC else []
    return Policy(draw(selectors()), draw(directions), tuple(chosen), action, draw(st.integers(0, U32)))


@st.composite
def bundles(draw: st.DrawFn) -> MigrateBundle:
    (old_src, old_dst), (new_src, new_dst) = draw(pairs()), draw(pairs())
    return MigrateBundle(old_src, old_dst, new_src, new_dst, draw(protocols), draw(modes), draw(st.integers(0, 0x3FFF)))


@st.composite
def migrations(draw: st.DrawFn) -> MigrateRequest:
    kmaddress = KMAddress(*draw(pairs())) if draw(st.booleans()) else None
    moved = tuple(draw(st.lists(bundles(), min_size=1, max_size=6)))
    return MigrateRequest(draw(selectors()), draw(directions), moved, kmaddress)


def _sa_ids(make: type[GetSA] | type[DeleteSA]) -> st.SearchStrategy[Statement]:
    return st.builds(lambda p, proto, spi: make(p[0], p[1], proto, spi), pairs(), protocols, spis)


statements: st.SearchStrategy[Statement] = st.one_of(
    st.builds(AddSA, security_associations(), st.booleans()),
    st.builds(lambda p, proto_spi, reqid: GetSPI(p[0], p[1], proto_spi[0], proto_spi[1], reqid),
              pairs(), protocols.flatmap(lambda proto: st.tuples(st.just(proto), st.just(0) | spis_of(proto))),
              st.integers(0, U32)),
    _sa_ids(GetSA),
    _sa_ids(DeleteSA),
    st.builds(lambda p, proto: DeleteAll(p[0], p[1], proto), pairs(), protocols),
    st.builds(Flush, st.just(0) | protocols),
    st.builds(Dump, st.just(0) | protocols),
    st.builds(SpdAdd, policies(), st.booleans()),
    st.builds(SpdDelete, selectors(), directions),
    st.just(SpdFlush()),
    st.just(SpdDump()),
    st.builds(Migrate, migrations()),
    st.just(Exit()),
)  # fmt: skip


@given(statements)
def test_a_printed_statement_reads_back_the_same(statement: Statement) -> None:
    text = statement_text(statement)
    assert parse(text, "printed") == [statement], text


@given(st.lists(statements, max_size=5))
def test_printed_statements_read_back_in_order(written: list[Statement]) -> None:
    assert parse("\n".join(statement_text(s) for s in written)) == written


def test_what_the_printer_spells_out() -> None:
    [statement] = parse('add 10.0.0.1 10.0.0.2 esp 300 -m any -E rijndael-cbc "0123456789abcdef";')
    assert statement_text(statement) == (
        "add 10.0.0.1 10.0.0.2 esp 0x12c -E aes-cbc 0x30313233343536373839616263646566;"
    )
    [statement] = parse("spdadd 10.0.0.1 10.0.0.2 135 -P out prio 5 ipsec esp/tunnel/::1-::2/default;")
    assert statement_text(statement) == (
        "spdadd 10.0.0.1 10.0.0.2 mobility-header -P out prio def + 5 ipsec esp/tunnel/::1-::2/require;"
    )
    assert isinstance(statement, SpdAdd)
    assert statement.policy.templates[0].src == ip_address("::1")
