"""pfmigrate's own key engine: a SAD and SPD that speak PF_KEY as Linux does. No I/O."""

from pfmigrate.pfkey.constants import MsgType
from pfmigrate.sadb import migrate, spd
from pfmigrate.sadb.engine import HANDLERS, Delivery, Engine, Outcome, generation_of

HANDLERS.update(
    {
        MsgType.X_SPDUPDATE: spd.handle_spdadd,
        MsgType.X_SPDADD: spd.handle_spdadd,
        MsgType.X_SPDSETIDX: spd.handle_spdadd,
        MsgType.X_SPDDELETE: spd.handle_spddelete,
        MsgType.X_SPDGET: spd.handle_spdget,
        MsgType.X_SPDDELETE2: spd.handle_spdget,
        MsgType.X_SPDDUMP: spd.handle_spddump,
        MsgType.X_SPDFLUSH: spd.handle_spdflush,
        MsgType.X_MIGRATE: migrate.handle_migrate,
    }
)

__all__ = ["Delivery", "Engine", "Outcome", "generation_of"]
