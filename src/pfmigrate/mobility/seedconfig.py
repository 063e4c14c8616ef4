"""The seed's mobile node and home agent as configurations, for the demo, the tests and
the benchmark: the slide deck's addresses, every RFC 4877 protection, manual keys.

The keys are made from their SPI so that both sides agree; they protect nothing real.
"""

from __future__ import annotations

import hashlib

from pfmigrate.mobility.config import HAConfig, MNConfig, parse
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT

PROTECTIONS = ("bu-ba", "mps-mpa", "hoti-hot", "payload")
FIRST_SPI = 0x2000


def _keys(spi: int) -> str:
    seed = hashlib.sha256(spi.to_bytes(4, "big")).digest()
    return f'encryption_key = "0x{seed[:16].hex()}"\nauthentication_key = "0x{seed.hex()}"\n'


def _sa_tables(prefix: str) -> str:
    tables, spi = [], FIRST_SPI
    for protection in PROTECTIONS:
        for toward in ("to-ha", "to-mn"):
            tables.append(f"[{prefix}ipsec.sa.{protection}.{toward}]\nspi = {spi}\n{_keys(spi)}")
            spi += 1
    return "\n".join(tables)


def mobile_node_toml(backend: str = "inprocess", interface: str = "eth0") -> str:
    return f"""role = "mn"
[backend]
name = "{backend}"
[mobile_node]
home_address = "{HOME_ADDRESS}"
home_agent = "{HOME_AGENT}"
home_prefix_length = 64
interface = "{interface}"
lifetime = 600
key_management_mobility = false
[ipsec]
keying = "manual"
protect = {list(PROTECTIONS)}
encryption = "cbc(aes)"
authentication = "hmac(sha256)"
reqid_base = 100
{_sa_tables("")}"""


def home_agent_toml(backend: str = "inprocess") -> str:
    return f"""role = "ha"
[backend]
name = "{backend}"
[home_agent]
address = "{HOME_AGENT}"
prefix_length = 64
max_lifetime = 3600
allow_key_management_mobility = false
[ipsec]
keying = "manual"
protect = {list(PROTECTIONS)}
encryption = "cbc(aes)"
authentication = "hmac(sha256)"
reqid_base = 100
[[mobile_nodes]]
home_address = "{HOME_ADDRESS}"
{_sa_tables("mobile_nodes.")}"""


def seed_configs(backend: str = "inprocess") -> tuple[MNConfig, HAConfig]:
    mn = parse(mobile_node_toml(backend), "<seed mobile node>", role=None)
    ha = parse(home_agent_toml(backend), "<seed home agent>", role=None)
    assert isinstance(mn, MNConfig)
    assert isinstance(ha, HAConfig)
    return mn, ha
