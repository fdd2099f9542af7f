"""Test against a faithful local AdCreative.ai service: the :class:`Emulator`.

The emulator serves the token endpoints and every feature the SDK covers (AdCreative generation and
Background Remover as the seeds document them; Upscaler, Face Enhancer, Stock Image, Product Photoshoot,
Scan My Website and Ad Text with assumed answers where the docs show none) with the status codes, JSON
shapes and messages of the docs, written from the docs alone. Every
behaviour the docs leave open is an option (:class:`EmulatorOptions`), and controls move tasks and time
by hand so that tests never wait.

Example::

    from adcreative_async.testing import Emulator

    async with Emulator(auto_complete=False) as emu:
        ...  # point a client at emu.base_url with emu.credentials
        emu.finish_process(process_id)

For synchronous code (and a notebook that uses the sync client), :class:`EmulatorThread` serves it from a
background thread. From a shell: ``python -m adcreative_async.testing --port 8080`` (prints the
credentials as JSON).
"""

from __future__ import annotations

from ._cli import main
from ._emulator import Credentials, Emulator
from ._faults import Faults
from ._images import input_stamp, sample_image
from ._notify import Delivery
from ._options import EmulatorOptions
from ._ratelimit import RateCounts
from ._state import (
    NotificationChannel,
    ProcessSnapshot,
    ReceivedCall,
    RequestInputs,
    TaskSnapshot,
    TaskState,
    UploadInfo,
)
from ._thread import EmulatorThread

__all__ = [
    "Credentials",
    "Delivery",
    "Emulator",
    "EmulatorOptions",
    "EmulatorThread",
    "Faults",
    "NotificationChannel",
    "ProcessSnapshot",
    "RateCounts",
    "ReceivedCall",
    "RequestInputs",
    "TaskSnapshot",
    "TaskState",
    "UploadInfo",
    "input_stamp",
    "main",
    "sample_image",
]
