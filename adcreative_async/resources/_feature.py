"""The declarative description of an image feature (:class:`RenderFeature`: routes, query names, fields,
message type, and what of them is assumed; per-client overrides) and the per-call options every resource
call takes (:class:`RequestOptions`). The resources that turn them into calls are in :mod:`._base`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .._config import RetryPolicy, Timeout
from .._errors import APIError, InvalidRequestError
from .._fields import FieldSpec, wire_text

__all__ = ["NOTHING_FOUND_PATTERNS", "OVERRIDABLE_ROUTES", "RenderFeature", "RequestOptions"]

#: The routes of a :class:`RenderFeature` a user may override (``AdCreativeClient(feature_overrides=...)``),
#: besides the feature's own ``extra_routes`` and the keys ``process_id_query`` and ``field_names``.
OVERRIDABLE_ROUTES = ("start_route", "user_progress_route", "application_progress_route", "download_route")
_QUERY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-\[\]]*")

#: The documented "nothing found" answers of the progress endpoints (seed 001: 400 "ImageRenderProcess
#: (…) was not found for the User", "No running ImageGenerationProgress found for the ApplicationId";
#: seed 000: 404 "No running or incomplete … was not found", "Not found error occurred while checking").
#: A list call that gets one of these returns an empty list; no other error is masked.
NOTHING_FOUND_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"was not found for the User", re.IGNORECASE),
    re.compile(r"\bNo running\b.*\bfound\b", re.IGNORECASE),
    re.compile(r"Not found error occurred while checking", re.IGNORECASE),
)
#: Messages that mark a validation problem, which is never read as "nothing found".
_VALIDATION_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"field is required", re.IGNORECASE),
    re.compile(r"is not valid", re.IGNORECASE),
)


@dataclass(frozen=True)
class RenderFeature:
    """The declarative description of one image feature.

    Attributes:
        name: the resource name on the client (``"creatives"``) and in job JSON.
        start_route: the start call's route under ``/api/v1/``.
        start_fields: the start call's documented form fields, in the docs' order.
        user_progress_route, application_progress_route, download_route: the other routes.
        process_id_query: the query name of the process id on the progress filter and the download
            (``imageRenderProcessId``; Background Remover: ``imageBackgroundRemoverProcessId``).
        message_type: the ``messageType`` of the feature's progress objects.
        render_type: the ``renderType`` its progress objects carry, when fixed (Background Remover: 8).
        nothing_found_statuses: statuses that may carry a documented "nothing found" answer.
        download_fields: documented query fields of the download besides the ids and
            ``lowResolution`` (Product Photoshoot: ``format``), validated like form fields.
        extra_routes: (name, route) of the feature's other calls (Product Photoshoot's
            ``recommendations_route``), overridable like the others.
        assumed: (what, why) for everything about the feature that the docs do not state: a route or
            query attribute name (``"user_progress_route"``, ``"process_id_query"``), ``"field:<wire>"``
            for a field, ``"method:<route attribute>"`` or ``"response:<call>"``. The one place where
            a feature's assumptions are listed; empty for a feature documented in full.

    Every route and the process-id query name can be replaced without patching the package (see
    :meth:`with_overrides` and ``AdCreativeClient(feature_overrides=...)``).
    """

    name: str
    start_route: str
    start_fields: tuple[FieldSpec, ...]
    user_progress_route: str
    application_progress_route: str
    download_route: str
    process_id_query: str
    message_type: str
    render_type: int | None = None
    nothing_found_statuses: frozenset[int] = frozenset({400, 404})
    download_fields: tuple[FieldSpec, ...] = ()
    extra_routes: tuple[tuple[str, str], ...] = ()
    assumed: tuple[tuple[str, str], ...] = ()

    @property
    def assumptions(self) -> dict[str, str]:
        """What is assumed about this feature (see ``assumed``), as a dict."""
        return dict(self.assumed)

    def is_assumed(self, key: str) -> bool:
        """Whether ``key`` (``"process_id_query"``, ``"field:format"``, …) is an assumption."""
        return any(k == key for k, _ in self.assumed)

    def route(self, name: str) -> str:
        """One of the feature's ``extra_routes`` by name.

        Raises:
            KeyError: the feature has no such route.
        """
        for key, route in self.extra_routes:
            if key == name:
                return route
        raise KeyError(f"feature {self.name!r} has no route {name!r}")

    def with_overrides(self, overrides: Mapping[str, object]) -> RenderFeature:
        """A copy with some routes, the process-id query name or field names replaced.

        Args:
            overrides: any of ``start_route``, ``user_progress_route``, ``application_progress_route``,
                ``download_route`` and the names of ``extra_routes`` (a route under ``/api/v1/``; a
                leading ``/`` or ``/api/v1/`` is dropped), ``process_id_query`` (a query name), and
                ``field_names`` (a mapping of documented or assumed wire names of the start or download
                fields to the names to send instead). An overridden item is no longer listed as assumed.

        Raises:
            InvalidRequestError: an unknown key (named, with the known ones) or a malformed value.
        """
        where = f"feature_overrides[{self.name!r}]"
        extra = dict(self.extra_routes)
        known = [*OVERRIDABLE_ROUTES, *extra, "process_id_query", "field_names"]
        changes: dict[str, Any] = {}
        dropped: set[str] = set()
        for key, value in overrides.items():
            if key in OVERRIDABLE_ROUTES or key in extra:
                route = _override_route(value, f"{where}[{key!r}]")
                if key in extra:
                    extra[key] = route
                else:
                    changes[key] = route
                dropped.add(key)
            elif key == "process_id_query":
                changes[key] = _override_name(value, f"{where}[{key!r}]")
                dropped.add(key)
            elif key == "field_names":
                start, download = self._renamed_fields(value, f"{where}['field_names']", dropped)
                changes["start_fields"], changes["download_fields"] = start, download
            else:
                raise InvalidRequestError.for_field(
                    where, f"unknown key {key!r} (known: {', '.join(repr(k) for k in known)})"
                )
        changes["extra_routes"] = tuple(extra.items())
        changes["assumed"] = tuple((k, why) for k, why in self.assumed if k not in dropped)
        return dataclasses.replace(self, **changes)

    def _renamed_fields(
        self, value: object, where: str, dropped: set[str]
    ) -> tuple[tuple[FieldSpec, ...], tuple[FieldSpec, ...]]:
        if not isinstance(value, Mapping):
            raise InvalidRequestError.for_field(where, f"must be a mapping of wire names, got {value!r}")
        renames = {str(old): _override_name(new, f"{where}[{old!r}]") for old, new in value.items()}
        known = {f.wire for f in (*self.start_fields, *self.download_fields)}
        for old in renames:
            if old not in known:
                raise InvalidRequestError.for_field(
                    where, f"unknown field {old!r} (known: {', '.join(sorted(known))})"
                )
            dropped.add(f"field:{old}")

        def rename(specs: tuple[FieldSpec, ...]) -> tuple[FieldSpec, ...]:
            return tuple(dataclasses.replace(f, wire=renames.get(f.wire, f.wire)) for f in specs)

        return rename(self.start_fields), rename(self.download_fields)

    def is_nothing_found(self, error: APIError) -> bool:
        """Whether ``error`` is the documented "no process found" answer of a progress call."""
        if error.status not in self.nothing_found_statuses:
            return False
        messages = error.messages()
        if any(p.search(m) for p in _VALIDATION_PATTERNS for m in messages):
            return False
        return any(p.search(m) for p in NOTHING_FOUND_PATTERNS for m in messages)

    def params(self, fields: Iterable[FieldSpec] | None = None) -> dict[str, str]:
        """Wire name -> Python parameter, for error messages."""
        return {f.wire: f.param for f in (fields if fields is not None else self.start_fields)}


def _override_route(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequestError.for_field(where, f"must be a route string, got {value!r}")
    route = value.strip().lstrip("/")
    if route.lower().startswith("api/v1/"):
        route = route[len("api/v1/") :]
    if not route or any(c.isspace() or c in "?#" for c in route) or "://" in route:
        raise InvalidRequestError.for_field(
            where,
            f"must be a route under /api/v1/ such as 'Image/Upscaling/CheckUserProgress', got {value!r}",
        )
    return route


def _override_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not _QUERY_NAME.fullmatch(value):
        raise InvalidRequestError.for_field(where, f"must be a field or query name, got {value!r}")
    return value


@dataclass(frozen=True)
class RequestOptions:
    """Per-call escape hatches, because the docs are incomplete.

    Attributes:
        extra_form: more multipart fields (a list value sends one part per item).
        extra_query: more query parameters.
        extra_headers: more headers (they cannot replace the credentials' headers' names silently:
            they are sent as given, last).
        timeout: this call's timeout: a :class:`~adcreative_async.Timeout`, or a number of seconds
            for the whole call.
        retry: this call's retries: a :class:`~adcreative_async.RetryPolicy`, or a number of attempts
            in all over the client's policy (1: no retry). What may be sent again is the same as ever:
            a start or edit call only when it surely never reached the server.
    """

    extra_form: Mapping[str, object] | None = None
    extra_query: Mapping[str, object] | None = None
    extra_headers: Mapping[str, str] | None = None
    timeout: Timeout | float | None = None
    retry: RetryPolicy | int | None = None


def _pairs(values: Mapping[str, object] | None, where: str, reserved: Iterable[str]) -> list[tuple[str, str]]:
    """Serialise an escape-hatch mapping; a list value becomes repeated pairs."""
    if not values:
        return []
    taken = {r.lower() for r in reserved}
    out: list[tuple[str, str]] = []
    for name, value in values.items():
        if name.lower() in taken:
            raise InvalidRequestError.for_field(
                where, f"{name!r} is a documented field of this call: pass it as its parameter"
            )
        if value is None:
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        out.extend((name, wire_text(v)) for v in items if v is not None)
    return out
