"""``python -m benchmarks.compare [--quick]``: see :mod:`benchmarks.compare.runner`."""

from __future__ import annotations

import sys

from benchmarks.compare.runner import main

sys.exit(main())
