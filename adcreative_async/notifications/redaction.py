"""A webhook path token kept out of access logs and server spans.

The API signs no delivery and a notification channel is only a URL (reference §2.3), so the unguessable
last path segment of the webhook URL (``WebhookReceiver(path_token=...)``) is the one secret a delivery
carries. Every web server writes the request path to its access log, and OpenTelemetry's server
instrumentation (ASGI, FastAPI, aiohttp, WSGI) records it in the server span's name and URL attributes:
this module takes the token out of both.

- Access logs: :func:`install_access_log_redaction` adds an :class:`AccessLogRedactionFilter` to the
  access (and error) loggers of uvicorn, gunicorn and aiohttp. :class:`~.WebhookReceiver` calls it for its
  own token when it is built, so an app that builds its receiver when it loads (FastAPI, Flask, Django
  under uvicorn or gunicorn, an aiohttp app) is covered without a line more. A gunicorn configuration
  file can call it too (``post_worker_init``), for a token known before the app loads.
- Spans: add a :class:`TokenRedactingSpanProcessor` to the tracer provider; it rewrites the name and
  every string attribute of each span (server spans, and the ``http send``/``http receive`` spans named
  after them) before any exporter sees it. It needs ``opentelemetry-sdk`` (this module imports it).

The token is replaced by :data:`REDACTED`, also when it appears percent-encoded.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from ._access_log import (
    ACCESS_LOGGERS,
    REDACTED,
    AccessLogRedactionFilter,
    install_access_log_redaction,
    redact_tokens,
)

__all__ = [
    "ACCESS_LOGGERS",
    "REDACTED",
    "AccessLogRedactionFilter",
    "TokenRedactingSpanProcessor",
    "install_access_log_redaction",
    "redact_tokens",
]


class TokenRedactingSpanProcessor(SpanProcessor):
    """An OpenTelemetry span processor that takes the tokens out of each span's name and string
    attributes, when the span starts and again just before it ends (so that attributes set on the way
    are covered), before any exporter sees it.

    Add it to the tracer provider your server instrumentation uses (``opentelemetry-sdk``)::

        provider.add_span_processor(TokenRedactingSpanProcessor(WEBHOOK_TOKEN))

    It works with any instrumentation (ASGI, FastAPI, aiohttp server, WSGI, Flask, Django): it does not
    know their attribute names, it rewrites every value that contains a token.
    """

    def __init__(self, *tokens: str) -> None:
        self._filter = AccessLogRedactionFilter(*tokens)

    def __repr__(self) -> str:
        return f"TokenRedactingSpanProcessor(tokens={len(self._filter._tokens)})"

    def add(self, token: str) -> None:
        """Also take ``token`` out."""
        self._filter.add(token)

    def _redacted(self, span: Span) -> tuple[str | None, dict[str, Any]]:
        """The span's new name (None: unchanged) and the attributes to rewrite."""
        forms = self._filter._forms
        tokens = self._filter._tokens
        name = redact_tokens(span.name, tokens) if any(form in span.name for form in forms) else None
        changed: dict[str, Any] = {}
        for key, value in (span.attributes or {}).items():
            if isinstance(value, str) and any(form in value for form in forms):
                changed[key] = redact_tokens(value, tokens)
            elif isinstance(value, (tuple, list)) and any(
                isinstance(v, str) and any(form in v for form in forms) for v in value
            ):
                changed[key] = [redact_tokens(v, tokens) if isinstance(v, str) else v for v in value]
        return name, changed

    def _redact(self, span: Span) -> None:
        if not self._filter._forms or not span.is_recording():
            return
        name, changed = self._redacted(span)
        if name is not None:
            span.update_name(name)
        if changed:
            span.set_attributes(changed)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Rewrite what the span started with (the URL attributes of a server span)."""
        self._redact(span)

    def _on_ending(self, span: Span) -> None:
        """Rewrite what was set since the span started. The SDK calls this after the span stopped
        recording and before any exporter sees it: the public setters refuse an ended span, so the
        span's own fields are rewritten (checked against opentelemetry-sdk 1.45)."""
        if not self._filter._forms:
            return
        name, changed = self._redacted(span)
        try:
            if name is not None:
                span._name = name
            if changed:
                old: Any = span._attributes
                attributes = dict(old or {})
                attributes.update(changed)
                span._attributes = BoundedAttributes(
                    getattr(old, "maxlen", None),
                    attributes,
                    immutable=True,
                    max_value_len=getattr(old, "max_value_len", None),
                )
        except AttributeError:  # pragma: no cover - another SDK: on_start's rewrite stands
            pass

    def on_end(self, span: ReadableSpan) -> None:
        """Nothing: the span was rewritten before it ended."""

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing buffered: True."""
        return True
