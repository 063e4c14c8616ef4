"""The daemons' logs (keyd, the Mobile IPv6 agents): one JSON object per line, with the
fields each event carries (``logging``'s ``extra``).

What a line may hold is decided where it is written: message types, errnos, session
numbers, uids, addresses, reasons. Never a message's bytes, so never a key.

Fields are written in the vocabulary of every pfmigrate JSON output (docs/json.md):
``time`` ISO 8601 UTC, ``errno`` as ``{"name": "ENOENT", "value": 2}``, a Binding
Acknowledgement's or Binding Error's ``status``, a Mobility Header or PF_KEY message
``type`` and any enum or model value as ``{"name": ..., "value": ...}``.
"""

from __future__ import annotations

import enum
import json
import logging
import sys
from typing import Any

from pfmigrate._jsonform import enum_json as _enum_json
from pfmigrate._jsonform import errno_json, iso_time
from pfmigrate.mip6.constants import BAStatus, BEStatus, MHType
from pfmigrate.modeljson import to_data
from pfmigrate.pfkey.constants import MsgType

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


#: Which numbers a ``status`` field holds, by the event that logs it (the agents' notes).
STATUS_OF_EVENT = {"ba-received": BAStatus, "ba-sent": BAStatus, "rejected": BAStatus,
                   "be-received": BEStatus, "be-sent": BEStatus}  # fmt: skip
#: Which numbers a ``type`` field holds, by event: a Mobility Header's, a PF_KEY message's (keyd).
TYPE_OF_EVENT = {"mh-unrecognised": MHType, "refused": MsgType, "internal-error": MsgType}


def field_json(event: object, key: str, value: Any) -> Any:
    """One field of a line in the shared vocabulary; other values as they are."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int) and not isinstance(value, enum.Enum):
        if key == "errno":
            return errno_json(value)
        named = (STATUS_OF_EVENT if key == "status" else TYPE_OF_EVENT if key == "type" else {}).get(str(event))
        return _enum_json(named.of(value)) if named is not None and value >= 0 else value
    if isinstance(value, enum.IntEnum):
        return _enum_json(value)
    return to_data(value)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        event = getattr(record, "event", None)
        line.update((key, field_json(event, key, value)) for key, value in vars(record).items() if key not in _STANDARD)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup(name: str, level: str = "info") -> None:
    """Send logger ``name``'s records to standard error as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
