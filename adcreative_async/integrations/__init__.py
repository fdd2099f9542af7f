"""Helpers for web frameworks, each in its own module importing its framework (install it yourself):
:mod:`adcreative_async.integrations.starlette` for Starlette and FastAPI."""

from __future__ import annotations
