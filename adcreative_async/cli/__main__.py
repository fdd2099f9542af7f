"""``python -m adcreative_async.cli``: the same as the ``adcreative`` console script."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
