"""The emulator's endpoint table: one :class:`Endpoint` row per documented route (its method, how its
inputs come, its validation rules, its handler's name), found case-insensitively, as ASP.NET routing
does; and the failures a test queues for a route (:func:`queue_failure`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import MappingProxyType

from aiohttp import web

from . import _features as features
from . import _responses as responses
from ._responses import ValidationStyle
from ._state import (
    State,
)
from ._validation import (
    BACKGROUND_CHECK_USER,
    BACKGROUND_DOWNLOAD,
    BACKGROUND_START,
    CHECK_APPLICATION,
    FACE_ENHANCING_CHECK_USER,
    FACE_ENHANCING_DOWNLOAD,
    FACE_ENHANCING_START,
    FILE,
    GENERATION_CHECK_USER,
    GENERATION_DOWNLOAD,
    GENERATION_EDIT,
    GENERATION_START,
    PRODUCT_CHECK_USER,
    PRODUCT_DOWNLOAD,
    PRODUCT_PRESETS,
    PRODUCT_RECOMMENDATIONS,
    PRODUCT_START,
    SCAN_MY_WEBSITE,
    STOCK_GENERATION_CHECK_USER,
    STOCK_GENERATION_DOWNLOAD,
    STOCK_GENERATION_START,
    TEXT_APPLICATION_QUERY,
    TEXT_IDS,
    TEXT_UPDATE,
    TEXT_USER_QUERY,
    TOKEN_GENERATE,
    TOKEN_REFRESH,
    UPSCALING_CHECK_USER,
    UPSCALING_DOWNLOAD,
    UPSCALING_START,
    Rule,
)

MAX_REQUEST_BODY = 1 << 40
"""aiohttp's ``client_max_size``: effectively unlimited (uploads are streamed, never held whole)."""
UPLOAD_CHUNK = 1 << 16
FORM_VALUE_LIMIT = 4 * 1024 * 1024
"""ASP.NET's default limit of one form value (FormOptions.ValueLengthLimit)."""

AUTH_HEADERS = ("Authorization", "x-api-key", "x-api-secret")
"""The credential headers every feature endpoint requires (seeds)."""

FORM = "form"
JSON = "json"
QUERY = "query"

Handler = Callable[[web.Request, "Endpoint"], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Endpoint:
    """One documented route.

    Attributes:
        method: HTTP method.
        route: Path after ``/api/v1/``.
        function: Function name in its layered error keys (``"business: <function>"``).
        body: Where inputs come from: FORM (multipart or urlencoded), JSON or QUERY.
        rules: Its inputs, in the order their errors are listed.
        style: Optional parts of its validation (shape B) bodies.
        handler: Name of its handler.
        authenticated: Whether it needs the Bearer token, API key and secret.
    """

    method: str
    route: str
    function: str
    body: str
    rules: tuple[Rule, ...]
    style: ValidationStyle
    handler: str
    authenticated: bool = True

    @property
    def fields(self) -> tuple[str, ...]:
        """Names of its text inputs (form fields, JSON properties or query parameters)."""
        return tuple(rule.name for rule in self.rules if rule.kind != FILE)

    @property
    def files(self) -> tuple[str, ...]:
        """Names of its file parts."""
        return tuple(rule.name for rule in self.rules if rule.kind == FILE)


GENERATION_CHECK_USER_ROUTE = "Image/Generation/CheckUserProgress"
GENERATION_CHECK_APPLICATION_ROUTE = "Image/Generation/CheckApplicationAllProgresses"

ENDPOINTS = (
    # assumed: the token endpoints' validation style (Newtonsoft, like the token response's "$id").
    Endpoint(
        "POST",
        "Authorization/GenerateJwtToken",
        "GenerateJwtToken",
        JSON,
        TOKEN_GENERATE,
        responses.STYLE_NEWTONSOFT,
        "generate_token",
        authenticated=False,  # assumed: whether x-api-key/x-api-secret are needed is undocumented
    ),
    Endpoint(
        "POST",
        "Authorization/RefreshJwtToken",
        "RefreshJwtToken",
        JSON,
        TOKEN_REFRESH,
        responses.STYLE_NEWTONSOFT,
        "refresh_token",
        authenticated=False,
    ),
    Endpoint(
        "POST",
        "Image/Generation/AdCreativesByKind",
        "AdCreativesByKind",
        FORM,
        GENERATION_START,
        responses.STYLE_GENERATION_FORM,
        "start_generation",
    ),
    Endpoint(
        "POST",
        "Image/Editing/AdCreativesByTasks",
        "AdCreativesByTasks",
        FORM,
        GENERATION_EDIT,
        responses.STYLE_GENERATION_FORM,
        "edit_generation",
    ),
    # assumed: the style of generation's query validation errors (its Download example's).
    Endpoint(
        "GET",
        GENERATION_CHECK_USER_ROUTE,
        "CheckUserProgress",
        QUERY,
        GENERATION_CHECK_USER,
        responses.STYLE_NEWTONSOFT,
        "check_user_progress",
    ),
    Endpoint(
        "GET",
        GENERATION_CHECK_APPLICATION_ROUTE,
        "CheckApplicationAllProgresses",
        QUERY,
        CHECK_APPLICATION,
        responses.STYLE_NEWTONSOFT,
        "check_application_progresses",
    ),
    Endpoint(
        "GET",
        "Image/Generation/Download",
        "Generation/Download",
        QUERY,
        GENERATION_DOWNLOAD,
        responses.STYLE_NEWTONSOFT,
        "download",
    ),
    Endpoint(
        "POST",
        "Image/BackgroundRemoving/AdCreative",
        "AdCreative",
        FORM,
        BACKGROUND_START,
        responses.STYLE_NEWTONSOFT,
        "start_background_removal",
    ),
    Endpoint(
        "GET",
        "Image/BackgroundRemoving/CheckUserProgress",
        "CheckUserProgress",
        QUERY,
        BACKGROUND_CHECK_USER,
        responses.STYLE_NEWTONSOFT,
        "check_user_progress",
    ),
    Endpoint(
        "GET",
        "Image/BackgroundRemoving/CheckApplicationAllProgresses",
        "CheckApplicationAllProgresses",
        QUERY,
        CHECK_APPLICATION,
        responses.STYLE_BR_APPLICATION_QUERY,
        "check_application_progresses",
    ),
    Endpoint(
        "GET",
        "Image/BackgroundRemoving/Download",
        "BackgroundRemoving/Download",
        QUERY,
        BACKGROUND_DOWNLOAD,
        responses.STYLE_NEWTONSOFT,
        "download",
    ),
    # The features documented after the seeds (reference §5-§11). Documented: the start routes of
    # Upscaling, FaceEnhancing and StockGeneration, FaceEnhancing/CheckUserProgress, PresetKeys,
    # ScanMyWebsite and every Text route with its method. assumed: the other image routes (the seeds'
    # Image/<Segment>/… pattern), methods not stated (as the seeds'), every validation style (the
    # Newtonsoft one of Background Remover) and every answer the docs do not show (see _features).
    *(
        row
        for segment, start_rules, check_rules, download_rules in (
            ("Upscaling", UPSCALING_START, UPSCALING_CHECK_USER, UPSCALING_DOWNLOAD),
            ("FaceEnhancing", FACE_ENHANCING_START, FACE_ENHANCING_CHECK_USER, FACE_ENHANCING_DOWNLOAD),
            (
                "StockGeneration",
                STOCK_GENERATION_START,
                STOCK_GENERATION_CHECK_USER,
                STOCK_GENERATION_DOWNLOAD,
            ),
            ("ProductGeneration", PRODUCT_START, PRODUCT_CHECK_USER, PRODUCT_DOWNLOAD),
        )
        for row in (
            Endpoint(
                "POST",
                f"Image/{segment}/AdCreative",
                "AdCreative",
                FORM,
                start_rules,
                responses.STYLE_NEWTONSOFT,
                "start_product_generation" if segment == "ProductGeneration" else "start_image_feature",
            ),
            Endpoint(
                "GET",
                f"Image/{segment}/CheckUserProgress",
                "CheckUserProgress",
                QUERY,
                check_rules,
                responses.STYLE_NEWTONSOFT,
                "check_user_progress",
            ),
            Endpoint(
                "GET",
                f"Image/{segment}/CheckApplicationAllProgresses",
                "CheckApplicationAllProgresses",
                QUERY,
                CHECK_APPLICATION,
                responses.STYLE_BR_APPLICATION_QUERY,
                "check_application_progresses",
            ),
            Endpoint(
                "GET",
                f"Image/{segment}/Download",
                f"{segment}/Download",
                QUERY,
                download_rules,
                responses.STYLE_NEWTONSOFT,
                "download",
            ),
        )
    ),
    Endpoint(
        "POST",
        "Image/ProductGeneration/Recommendations",
        "Recommendations",
        FORM,
        PRODUCT_RECOMMENDATIONS,
        responses.STYLE_NEWTONSOFT,
        "product_recommendations",
    ),
    Endpoint(
        "GET",
        "Image/ProductGeneration/PresetKeys",
        "PresetKeys",
        QUERY,
        PRODUCT_PRESETS,
        responses.STYLE_NEWTONSOFT,
        "product_preset_keys",
    ),
    Endpoint(
        "GET",
        "ScanMyWebsite",
        "ScanMyWebsite",
        QUERY,
        SCAN_MY_WEBSITE,
        responses.STYLE_NEWTONSOFT,
        "scan_my_website",
    ),
    Endpoint("POST", "Text/Generation/Ads", "Ads", JSON, TEXT_IDS, responses.STYLE_NEWTONSOFT, "text_ads"),
    Endpoint("PUT", "Text/Generation/Ads", "Ads", JSON, TEXT_UPDATE, responses.STYLE_NEWTONSOFT, "text_ads"),
    Endpoint(
        "GET",
        "Text/Generation/UserAd",
        "UserAd",
        QUERY,
        TEXT_USER_QUERY,
        responses.STYLE_NEWTONSOFT,
        "text_list",
    ),
    Endpoint(
        "GET",
        "Text/Generation/ApplicationAllAds",
        "ApplicationAllAds",
        QUERY,
        TEXT_APPLICATION_QUERY,
        responses.STYLE_NEWTONSOFT,
        "text_list",
    ),
    Endpoint(
        "GET",
        "Text/Generation/ProductDescription",
        "ProductDescription",
        QUERY,
        TEXT_USER_QUERY,
        responses.STYLE_NEWTONSOFT,
        "text_operation",
    ),
    *(
        Endpoint(
            "POST",
            route,
            route.rsplit("/", 1)[1],
            JSON,
            TEXT_IDS,
            responses.STYLE_NEWTONSOFT,
            "text_operation",
        )
        for route in (
            "Text/Generation/AdStrategies",
            "Text/Generation/AdCopies",
            "Text/Craft/ChangeSentiment",
            "Text/Craft/MakeShorten",
            "Text/Craft/Translate",
            "Text/Craft/CreateVariations",
        )
    ),
)
"""Every route the emulator serves under ``/api/v1/`` (one row per method and route)."""

ENDPOINTS_BY_ROUTE = MappingProxyType(
    {endpoint.route.lower(): endpoint for endpoint in reversed(ENDPOINTS)}  # the first row of a route
)
ENDPOINTS_BY_METHOD = MappingProxyType({(e.method, e.route.lower()): e for e in ENDPOINTS})
"""(method, lowercased route) -> endpoint: ``Text/Generation/Ads`` has a POST and a PUT."""

INJECTABLE_STATUSES = range(400, 600)

RENDER_HANDLERS = frozenset(
    {
        "start_generation",
        "edit_generation",
        "start_background_removal",
        "start_image_feature",
        "start_product_generation",
    }
)
"""The handlers of the paid calls that make (or re-open) a render: their answers wait ``start_latency``."""


def find_endpoint(route: str) -> Endpoint | None:
    """The endpoint of a route given as ``Image/Generation/CheckUserProgress`` (any case, with or without
    a leading ``/api/v1/``)."""
    route = route.strip("/")
    if route.lower().startswith("api/v1/"):
        route = route[len("api/v1/") :]
    return ENDPOINTS_BY_ROUTE.get(route.lower())


def queue_failure(state: State, route: str, status: int, count: int, retry_after: int) -> None:
    """Check and queue injected failures (ValueError for an unknown route or a bad status or count)."""
    endpoint = find_endpoint(route)
    if endpoint is None:
        raise ValueError(f"unknown route {route!r}")
    if status not in INJECTABLE_STATUSES or count < 1:
        raise ValueError("status must be 4xx or 5xx and count >= 1")
    state.fail_next(endpoint.route, status, count, retry_after)


def _feature(endpoint: Endpoint) -> str:
    return features.feature_of_route(endpoint.route)


def _process_parameter(endpoint: Endpoint) -> str:
    """The query name of the process id: each feature has its own (seeds; see ``_features``)."""
    return features.PROCESS_PARAMETERS[_feature(endpoint)]
