"""Account identifiers kept out of the text the SDK shows: exception messages, and so the log records,
span events and browser answers that quote them.

The API's error messages name the account (``"... was not found for the User: <user id>"``, ``"No active
notification channel configurations found for Application <application id>."``, reference §1.6). An
exception's typed attributes keep everything (``APIError.details``, ``.body``, ``RenderMayExistError
.user_id``: callers need them), but its message (``str(exc)``, which loggers, OpenTelemetry's
``record_exception`` and web frameworks' error pages copy) says ``<redacted>`` where the server named a
user or an application. Process and task ids stay: they are random handles, what support needs.
"""

from __future__ import annotations

import re

__all__ = ["ACCOUNT_ID_MASK", "mask_account_ids"]

#: What stands for an account identifier in a message.
ACCOUNT_ID_MASK = "<redacted>"

_GUID = r"\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?"

#: A GUID named as a user's or an application's: ``User: X``, ``UserId: X``, ``ApplicationId: X``,
#: ``Application X``, ``user_id=X``, ``userId=X`` (a quoted URL) …
_ACCOUNT_ID = re.compile(
    rf"(?i)(\b(?:user|application|app)(?:[ _-]?id)?\b[\W_]{{0,4}}?(?:the\s+)?)({_GUID})(?![0-9a-f])"
)


def mask_account_ids(text: str) -> str:
    """``text`` with every GUID that follows the word user or application (``User: …``,
    ``ApplicationId: …``, ``userId=…``) replaced by :data:`ACCOUNT_ID_MASK`."""
    if not text:
        return text
    return _ACCOUNT_ID.sub(lambda m: m.group(1) + ACCOUNT_ID_MASK, text)
