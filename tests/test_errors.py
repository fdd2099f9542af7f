"""The error tree and the parser of both error body shapes."""

from __future__ import annotations

import json

import pytest

from adcreative_async import (
    AdCreativeError,
    APIError,
    AuthenticationError,
    BadRequestError,
    InvalidRequestError,
    NoActiveNotificationChannelError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from adcreative_async._errors import build_api_error, parse_error_body, split_error_key

CHANNEL_BODY = {
    "errors": {
        "engine: Active": ["No active notification channel configurations found for Application x."],
        "business: Active": ["Error getting active notification channel configurations for Application: x"],
    },
    "type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
    "title": "One or more errors occurred.",
    "status": 404,
    "detail": None,
    "instance": None,
    "extensions": {"traceId": "00-ac4f3a19e10981f5f4b5aa22ffd0d0f4-60f1194e0090da68-00"},
}
VALIDATION_BODY = {
    "$id": "1",
    "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
    "title": "One or more validation errors occurred.",
    "status": 400,
    "errors": {
        "$id": "2",
        "Color1Hex": ["The Color1Hex field is required."],
        "BrandImage": ["The BrandImage field is required."],
    },
    "traceId": "00-35fea5107319e5521fddbcc6daeeef12-474bf812d683ae81-00",
}


def _error(status: int, body: object, **kwargs: object) -> APIError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return build_api_error(status, raw, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (418, APIError),
    ],
)
def test_status_maps_to_its_class(status: int, cls: type[APIError]) -> None:
    error = _error(status, {"title": "t", "status": status})
    assert type(error) is cls
    assert error.status == status
    assert isinstance(error, AdCreativeError)


def test_channel_error_is_recognised_by_its_engine_active_key() -> None:
    error = _error(404, CHANNEL_BODY, method="POST", path="/api/v1/Image/Generation/AdCreativesByKind")
    assert isinstance(error, NoActiveNotificationChannelError)
    assert isinstance(error, NotFoundError)
    assert error.trace_id == "00-ac4f3a19e10981f5f4b5aa22ffd0d0f4-60f1194e0090da68-00"
    assert error.layer_errors("engine") == {
        "Active": ["No active notification channel configurations found for Application x."]
    }
    assert "engine: Active" in str(error)
    assert "trace 00-ac4f" in str(error)


def test_other_404s_are_not_channel_errors() -> None:
    body = {"errors": {"engine: Generation/Download": ["Image content not found."]}, "status": 404}
    error = _error(404, body)
    assert type(error) is NotFoundError


def test_validation_shape_parses_with_python_parameter_names() -> None:
    error = _error(400, VALIDATION_BODY, params={"color1Hex": "color1_hex", "brandImage": "brand_image"})
    assert isinstance(error, BadRequestError)
    assert error.errors == {
        "Color1Hex": ["The Color1Hex field is required."],
        "BrandImage": ["The BrandImage field is required."],
    }
    assert error.field_errors() == {
        "color1_hex": ["The Color1Hex field is required."],
        "brand_image": ["The BrandImage field is required."],
    }
    assert "Color1Hex (parameter color1_hex)" in str(error)
    assert error.trace_id == VALIDATION_BODY["traceId"]
    assert error.title == "One or more validation errors occurred."


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("engine: Active", ("engine", "Active", None)),
        ("business:", ("business", None, None)),
        ("business: CheckApplicationAllProgresses", ("business", "CheckApplicationAllProgresses", None)),
        ("engine: BackgroundRemoving/Download", ("engine", "BackgroundRemoving/Download", None)),
        ("UploadedImage", (None, None, "UploadedImage")),
    ],
)
def test_error_keys_split_into_layer_function_and_field(
    key: str, expected: tuple[str | None, str | None, str | None]
) -> None:
    assert split_error_key(key) == expected


def test_business_key_without_function_still_parses() -> None:
    body = {
        "errors": {"business:": ["Token is missing, invalid or ApplicationId is not found in the token."]},
        "title": "One or more errors occurred.",
        "status": 401,
        "extensions": {"traceId": "00-1-2-00"},
    }
    error = _error(401, body)
    assert isinstance(error, AuthenticationError)
    (detail,) = error.details
    assert (detail.layer, detail.function, detail.field) == ("business", None, None)
    assert error.messages() == ["Token is missing, invalid or ApplicationId is not found in the token."]


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>502 Bad Gateway</body></html>",
        b"",
        b"\xff\xfe not utf-8",
        b"[1, 2, 3]",
        b'"just a string"',
        b'{"errors": "not a map", "title": 5, "extensions": []}',
        b'{"errors": {"a": null, "b": 7, "c": {"$values": ["wrapped"]}, "$id": "2"}}',
    ],
)
def test_any_body_gives_a_useful_error(body: bytes) -> None:
    error = build_api_error(502, body, method="GET", path="/api/v1/x")
    assert isinstance(error, ServerError)
    assert str(error).startswith("502 from GET /api/v1/x")
    assert error.body == body


def test_a_non_json_body_is_kept_on_the_error_but_never_quoted_in_its_message() -> None:
    body = b"<html>502 Bad Gateway for user 2581c740-8e9d-4d63-96bc-5665bb9a646b</html>"
    error = build_api_error(502, body)
    assert error.body == body
    assert str(error) == f"502: a body of {len(body)} bytes that is not JSON (in the error's .body)"


def test_the_servers_messages_name_no_user_or_application_in_the_errors_text() -> None:
    user, app, process = (
        "2581c740-8e9d-4d63-96bc-5665bb9a646b",
        "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
    )
    body = {
        "title": f"Not found for the Application {app}",
        "errors": {
            "engine: CheckUserProgress": [
                f"ImageRenderProcess(ImageRenderProcessId: {process}) was not found for the User: {user}"
            ],
            "business: CheckUserProgress": [f"Error for the UserId: {user}"],
        },
    }
    error = _error(404, body)
    text = str(error) + repr(error)
    assert user not in text
    assert app.lower() not in text.lower()
    assert process in text  # a random handle, what support needs
    assert "the User: <redacted>" in text
    assert user in error.errors["engine: CheckUserProgress"][0]  # the typed attributes keep everything


def test_wrapped_messages_and_non_string_values_are_read() -> None:
    parsed = parse_error_body(b'{"errors": {"a": null, "b": 7, "c": {"$values": ["wrapped"]}, "$id": "2"}}')
    assert dict(parsed.entries) == {"a": (), "b": ("7",), "c": ("wrapped",)}


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None)])
def test_rate_limit_reads_retry_after(header: str, expected: float | None) -> None:
    error = _error(429, {"title": "Too many"}, headers={"Retry-After": header})
    assert isinstance(error, RateLimitError)
    assert error.retry_after == expected


def test_rate_limit_reads_an_http_date() -> None:
    error = _error(429, {}, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 0.0  # in the past


def test_only_safe_response_headers_are_kept() -> None:
    error = _error(
        500, {}, headers={"Content-Type": "application/json", "Set-Cookie": "session=secret", "Date": "x"}
    )
    assert error.headers == {"Content-Type": "application/json", "Date": "x"}


def test_invalid_request_error_is_a_value_error_naming_the_field() -> None:
    error = InvalidRequestError.for_field("color1_hex", "must be a hex colour", wire="color1Hex")
    assert isinstance(error, ValueError)
    assert str(error) == "color1_hex (color1Hex): must be a hex colour"
    assert (error.field, error.rule) == ("color1_hex", "must be a hex colour")
