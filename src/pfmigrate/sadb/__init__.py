"""pfmigrate's own key engine: a SAD and SPD that speak PF_KEY as Linux does. No I/O."""

from pfmigrate.pfkey.constants import MsgType
from pfmigrate.pfkey.generation import generation_of
from pfmigrate.sadb import migrate, sa, spd
from pfmigrate.sadb.core import HANDLERS, Delivery, Outcome
from pfmigrate.sadb.engine import Engine

HANDLERS.update(
    {
        MsgType.GETSPI: sa.handle_getspi,
        MsgType.UPDATE: sa.handle_add_update,
        MsgType.ADD: sa.handle_add_update,
        MsgType.DELETE: sa.handle_delete,
        MsgType.GET: sa.handle_get,
        MsgType.ACQUIRE: sa.handle_acquire,
        MsgType.REGISTER: sa.handle_register,
        MsgType.FLUSH: sa.handle_flush,
        MsgType.DUMP: sa.handle_dump,
        MsgType.X_PROMISC: sa.handle_promisc,
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
