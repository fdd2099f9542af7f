"""A webhook path token kept out of the access logs of uvicorn, gunicorn and aiohttp.

Imported by the webhook receiver (which installs the filter for its own token) without OpenTelemetry;
the public names, and the span processor, are in :mod:`adcreative_async.notifications.redaction`.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Iterable, MutableMapping

__all__ = [
    "ACCESS_LOGGERS",
    "REDACTED",
    "AccessLogRedactionFilter",
    "install_access_log_redaction",
    "redact_tokens",
]

#: What a token is replaced with.
REDACTED = "REDACTED"

#: The loggers that write request lines: uvicorn's and gunicorn's access and error logs (an error log
#: may quote the request line), aiohttp's access log and its server log.
ACCESS_LOGGERS = (
    "uvicorn.access",
    "uvicorn.error",
    "gunicorn.access",
    "gunicorn.error",
    "aiohttp.access",
    "aiohttp.server",
)

#: Attributes every LogRecord has: not rewritten (the extras a server adds, such as aiohttp's
#: ``first_request_line``, are).
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


_FORMATTER = logging.Formatter()


def _forms(tokens: Iterable[str]) -> tuple[str, ...]:
    """Each token as given and percent-encoded (a path may carry either), longest first."""
    forms = {form for token in tokens if token for form in (token, urllib.parse.quote(token, safe=""))}
    return tuple(sorted(forms, key=len, reverse=True))


def redact_tokens(text: str, tokens: Iterable[str]) -> str:
    """``text`` with every occurrence of each token (as given or percent-encoded) replaced by
    :data:`REDACTED`."""
    for form in _forms(tokens):
        if form in text:
            text = text.replace(form, REDACTED)
    return text


class AccessLogRedactionFilter(logging.Filter):
    """A logging filter that replaces the given tokens in a record before any handler formats it: its
    message, its arguments (uvicorn's tuple, gunicorn's mapping of atoms) and the extra fields a server
    adds (aiohttp's). It never drops a record.

    Args:
        tokens: the secrets to take out (webhook path tokens); more can be added with :meth:`add`.
    """

    def __init__(self, *tokens: str) -> None:
        super().__init__()
        self._tokens: set[str] = set()
        self._forms: tuple[str, ...] = ()
        for token in tokens:
            self.add(token)

    def __repr__(self) -> str:
        return f"AccessLogRedactionFilter(tokens={len(self._tokens)})"

    def add(self, token: str) -> None:
        """Also take ``token`` out."""
        if token:
            self._tokens.add(token)
            self._forms = _forms(self._tokens)

    def _scrub(self, value: object) -> object:
        if isinstance(value, str) and any(form in value for form in self._forms):
            return redact_tokens(value, self._tokens)
        if isinstance(value, bytes):
            text = value.decode("latin-1")
            if any(form in text for form in self._forms):
                return redact_tokens(text, self._tokens).encode("latin-1")
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place; always True."""
        if not self._forms:
            return True
        record.msg = self._scrub(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(self._scrub(arg) for arg in args)
        elif isinstance(args, MutableMapping):
            # gunicorn's atoms: changed in place (a SafeAtoms mapping computes missing keys itself)
            for key, value in list(args.items()):
                scrubbed = self._scrub(value)
                if scrubbed is not value:
                    args[key] = scrubbed
            if any(form in record.getMessage() for form in self._forms):  # an atom computed on access
                record.msg, record.args = redact_tokens(record.getMessage(), self._tokens), None
        if record.exc_info and not record.exc_text:
            # a traceback may quote the path: formatted now, as a Formatter would (it keeps exc_text)
            text = _FORMATTER.formatException(record.exc_info)
            if any(form in text for form in self._forms):
                record.exc_text = redact_tokens(text, self._tokens)
        for name, value in list(record.__dict__.items()):
            if name not in _RECORD_FIELDS:
                scrubbed = self._scrub(value)
                if scrubbed is not value:
                    setattr(record, name, scrubbed)
        return True


_installed: dict[str, AccessLogRedactionFilter] = {}


def install_access_log_redaction(
    *tokens: str, loggers: Iterable[str] = ACCESS_LOGGERS
) -> AccessLogRedactionFilter:
    """Take ``tokens`` out of every record of the access loggers of uvicorn, gunicorn and aiohttp (or
    of ``loggers``): one :class:`AccessLogRedactionFilter` per logger, shared by later calls, so
    calling it again (another receiver, another token) adds the tokens and never stacks filters.

    A filter belongs to the logger, not to its handlers: it stays when a server (re)configures its
    handlers (uvicorn's ``log_config``, gunicorn's ``Logger.setup``), and runs for records logged to
    that logger itself (which is how these servers log requests). Call it in each process that serves
    requests: the receiver does when it is built; from a gunicorn configuration file::

        # gunicorn.conf.py
        from adcreative_async.notifications.redaction import install_access_log_redaction

        def post_worker_init(worker):
            install_access_log_redaction(os.environ["WEBHOOK_TOKEN"])

    Returns:
        the filter of the first logger (for tests and for adding it to your own handlers).
    """
    first: AccessLogRedactionFilter | None = None
    for name in loggers:
        installed = _installed.get(name)
        logger = logging.getLogger(name)
        if installed is None or installed not in logger.filters:
            installed = AccessLogRedactionFilter()
            logger.addFilter(installed)
            _installed[name] = installed
        for token in tokens:
            installed.add(token)
        first = first or installed
    return first if first is not None else AccessLogRedactionFilter(*tokens)
