"""Client settings in one place: timeouts, connection limits, transfer sizes, and their defaults.

Every default is documented here; the client takes these objects as keyword arguments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_API_KEY",
    "ENV_API_SECRET",
    "ENV_APPLICATION_ID",
    "ENV_BASE_URL",
    "ENV_JWT_PRIVATE_KEY",
    "ENV_USER_ID",
    "Limits",
    "Timeout",
    "TransferOptions",
]

#: The documented host (reference §1.1).
DEFAULT_BASE_URL = "https://api.adcreative.ai"

ENV_APPLICATION_ID = "ADCREATIVE_APPLICATION_ID"
ENV_API_KEY = "ADCREATIVE_API_KEY"
ENV_API_SECRET = "ADCREATIVE_API_SECRET"
ENV_JWT_PRIVATE_KEY = "ADCREATIVE_JWT_PRIVATE_KEY"
ENV_BASE_URL = "ADCREATIVE_BASE_URL"
#: Not part of the API: a default sub-user for calls that take one, like the ``user_id`` argument.
ENV_USER_ID = "ADCREATIVE_USER_ID"


@dataclass(frozen=True)
class Timeout:
    """Timeouts in seconds; None means no limit.

    There is deliberately no total timeout by default: a total would kill large uploads and downloads
    that are progressing fine. ``read`` bounds each wait for data instead.

    Attributes:
        connect: establishing a new connection (TCP and TLS). Default 10 s.
        read: the longest wait for the next bytes of a response. Default 60 s.
        pool: waiting for a free connection from the pool (None: wait; bulk jobs queue there).
        total: the whole request, body included (None by default).
    """

    connect: float | None = 10.0
    read: float | None = 60.0
    pool: float | None = None
    total: float | None = None

    @classmethod
    def coerce(cls, value: Timeout | float | None, base: Timeout) -> Timeout:
        """A per-call ``timeout``: a Timeout as is, a number as a total deadline over ``base``."""
        if value is None:
            return base
        if isinstance(value, Timeout):
            return value
        return Timeout(connect=base.connect, read=base.read, pool=base.pool, total=float(value))


@dataclass(frozen=True)
class Limits:
    """Connection pool limits.

    Attributes:
        max_connections: open connections at once, all hosts (default 100).
        max_connections_per_host: per host (default 0: only ``max_connections`` applies).
        keepalive_expiry: seconds an idle connection is kept (default 15 s, recycled before common
            server idle timeouts so that a request rarely meets a stale socket).
    """

    max_connections: int = 100
    max_connections_per_host: int = 0
    keepalive_expiry: float = 15.0


@dataclass(frozen=True)
class TransferOptions:
    """Upload and download tuning.

    Attributes:
        chunk_size: bytes read or written per step (default 256 KiB): memory per transfer is about one
            chunk, and file I/O runs in worker threads one chunk at a time.
        max_upload_size: uploads larger than this are refused before sending (default 100 MiB,
            assumed: the API documents no limit). None disables the check.
        file_threads: worker threads for file I/O, shared by all transfers of a client (default 8).
    """

    chunk_size: int = 256 * 1024
    max_upload_size: int | None = 100 * 1024 * 1024
    file_threads: int = 8


def env(name: str) -> str | None:
    """An environment variable, None when unset or blank."""
    value = os.environ.get(name)
    return value if value and value.strip() else None
