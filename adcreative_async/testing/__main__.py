"""``python -m adcreative_async.testing``: serve the emulator (see :func:`adcreative_async.testing.main`)."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
