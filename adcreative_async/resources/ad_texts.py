"""Ad text generation and crafting (reference §10: ``/api/v1/Text/Generation/…``, ``Text/Craft/…``).

The docs give every route and method, and not one request or response field. So each call takes the
documented minimum the SDK sends itself (the application and user ids, assumed from every other
feature) plus what you pass: ``fields`` (the JSON body of POST/PUT calls) or ``params`` (the query of
GET calls), with the server's own field names (camelCase). Answers come back as plain JSON
(:data:`~adcreative_async.JSONValue`, ``$`` metadata removed), since their shape is not documented.
The calls are synchronous (no ad-text progress or notification exists).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

import msgspec

from .._errors import InvalidRequestError
from .._feature_models import JSONValue, decode_clean
from ._base import RequestOptions, Resource
from ._feature import _pairs

if TYPE_CHECKING:
    from .._config import RetryPolicy, Timeout

__all__ = ["AD_TEXT_BODY_ENCODING", "AD_TEXT_ROUTES", "AdTextsResource"]

#: Every route of the Ad Text page, with its documented method: SDK method -> (method, route).
AD_TEXT_ROUTES: dict[str, tuple[str, str]] = {
    "generate_ads": ("POST", "Text/Generation/Ads"),
    "update_ads": ("PUT", "Text/Generation/Ads"),
    "user_ads": ("GET", "Text/Generation/UserAd"),
    "application_ads": ("GET", "Text/Generation/ApplicationAllAds"),
    "product_description": ("GET", "Text/Generation/ProductDescription"),
    "ad_strategies": ("POST", "Text/Generation/AdStrategies"),
    "ad_copies": ("POST", "Text/Generation/AdCopies"),
    "change_sentiment": ("POST", "Text/Craft/ChangeSentiment"),
    "shorten": ("POST", "Text/Craft/MakeShorten"),
    "translate": ("POST", "Text/Craft/Translate"),
    "create_variations": ("POST", "Text/Craft/CreateVariations"),
}

#: assumed: the body encoding of the POST/PUT calls is not documented. These are text endpoints of an
#: ASP.NET API (the token endpoints, the only documented JSON bodies, use JSON): the SDK sends JSON.
AD_TEXT_BODY_ENCODING = "application/json"

#: assumed: not documented for Ad Text; every other feature sends both ids (in the body of POST/PUT
#: calls, in the query of GET calls; ApplicationAllAds only the application's).
AD_TEXT_IDS = ("applicationId", "userId")

_ENCODER = msgspec.json.Encoder()


class AdTextsResource(Resource):
    """Ad texts: generate, update and list ads; product descriptions, strategies and copies; rewrite
    a text (sentiment, shorter, translated, variations).

    Request fields are not documented: pass them in ``fields`` / ``params`` with the server's names.

    Example::

        ads = await client.ad_texts.generate_ads({"productName": "Fireflies", "language": "en"})
        shorter = await client.ad_texts.shorten({"text": "Meet your AI notetaker for every meeting."})
    """

    name = "ad_texts"

    # ------------------------------------------------------------------------------------ helpers

    def _body(self, fields: Mapping[str, object] | None, user_id: str | uuid.UUID | None) -> bytes:
        client = self._client
        payload: dict[str, object] = {
            "applicationId": client.application_id,
            "userId": client._user_id(user_id),
        }
        for key, value in (fields or {}).items():
            if not isinstance(key, str) or not key:
                raise InvalidRequestError.for_field("fields", f"keys must be non-empty strings, got {key!r}")
            if key.lower() in ("applicationid", "userid"):
                raise InvalidRequestError.for_field(
                    "fields",
                    f"{key!r} is sent by the SDK: pass user_id=... (the application is the client's)",
                )
            payload[key] = value
        try:
            return _ENCODER.encode(payload)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidRequestError.for_field("fields", f"must be JSON-serialisable: {exc}") from None

    async def _send(
        self,
        operation: str,
        fields: Mapping[str, object] | None,
        user_id: str | uuid.UUID | None,
        extra_headers: Mapping[str, str] | None,
        timeout: Timeout | float | None,
        retry: RetryPolicy | int | None,
    ) -> JSONValue:
        method, route = AD_TEXT_ROUTES[operation]
        return await self._call(
            method,
            route,
            decode_clean,
            json=self._body(fields, user_id),
            params={"userId": "user_id"},
            options=RequestOptions(None, None, extra_headers, timeout, retry),
        )

    async def _get(
        self,
        operation: str,
        params: Mapping[str, object] | None,
        user_id: str | uuid.UUID | None,
        extra_headers: Mapping[str, str] | None,
        timeout: Timeout | float | None,
        retry: RetryPolicy | int | None,
        *,
        with_user: bool = True,
    ) -> JSONValue:
        method, route = AD_TEXT_ROUTES[operation]
        client = self._client
        query = [("applicationId", client.application_id)]
        if with_user:
            query.append(("userId", client._user_id(user_id)))
        query += _pairs(params, "params", [name for name, _ in query])
        return await self._call(
            method,
            route,
            decode_clean,
            query=query,
            params={"applicationId": "application_id", "userId": "user_id"},
            options=RequestOptions(None, None, extra_headers, timeout, retry),
        )

    # ------------------------------------------------------------------------------ generation

    async def generate_ads(
        self,
        fields: Mapping[str, object] | None = None,
        *,
        user_id: str | uuid.UUID | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> JSONValue:
        """Generate ad texts (``POST Text/Generation/Ads``).

        Args:
            fields: the request's fields by their wire names (not documented; third-party write-ups
                mention product, description, audience, framework, tone, language, website, CTA, emoji
                preference and instructions). Sent as JSON with ``applicationId`` and ``userId``.
            user_id: the user (default: the client's).
            extra_headers, timeout, retry: per-call escape hatches
            (see :class:`~adcreative_async.resources.RequestOptions`).

        Returns:
            The answer as plain JSON.

        Raises:
            InvalidRequestError: ``fields`` names an id the SDK sends, or is not JSON-serialisable.
            APIError: the server's error (400, 401, 500…).
        """
        return await self._send("generate_ads", fields, user_id, extra_headers, timeout, retry)

    async def update_ads(
        self,
        fields: Mapping[str, object] | None = None,
        *,
        user_id: str | uuid.UUID | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> JSONValue:
        """Update or regenerate ad texts (``PUT Text/Generation/Ads``); ``fields`` as :meth:`generate_ads`
        (which ad to update is one of them: its name is not documented)."""
        return await self._send("update_ads", fields, user_id, extra_headers, timeout, retry)

    async def user_ads(
        self,
        params: Mapping[str, object] | None = None,
        *,
        user_id: str | uuid.UUID | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> JSONValue:
        """The ad texts of one user (``GET Text/Generation/UserAd``).

        Args:
            params: more query parameters by their wire names (a list value repeats the name).
            user_id: the user (default: the client's).

        Returns:
            The answer as plain JSON (a ``$values`` list arrives as a list).
        """
        return await self._get("user_ads", params, user_id, extra_headers, timeout, retry)

    async def application_ads(
        self,
        params: Mapping[str, object] | None = None,
        *,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> JSONValue:
        """Every ad text of the application (``GET Text/Generation/ApplicationAllAds``); only
        ``applicationId`` is sent besides ``params``."""
        return await self._get(
            "application_ads", params, None, extra_headers, timeout, retry, with_user=False
        )

    async def product_description(
        self,
        params: Mapping[str, object] | None = None,
        *,
        user_id: str | uuid.UUID | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> JSONValue:
        """A product description (``GET Text/Generation/ProductDescription``); ``params`` as
        :meth:`user_ads` (what describes the product is not documented)."""
        return await self._get("product_description", params, user_id, extra_headers, timeout, retry)

    async def ad_strategies(
        self,
        fields: Mapping[str, object] | None = None,
        *,
        user_id: str | uuid.UUID | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> JSONValue:
        """Ad strategies (``POST Text/Generation/AdStrategies``); ``fields`` as :meth:`generate_ads`."""
        return await self._send("ad_strategies", fields, user_id, extra_headers, timeout, retry)

    async def ad_copies(
        self,
        fields: Mapping[str, object] | None = None,
        *,
        user_id: str | uuid.UUID | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> JSONValue:
        """Ad copies (``POST Text/Generation/AdCopies``); ``fields`` as :meth:`generate_ads`."""
        return await self._send("ad_copies", fields, user_id, extra_headers, timeout, retry)

    # ----------------------------------------------------------------------------------- craft

    async def change_sentiment(
        self,
        fields: Mapping[str, object] | None = None,
        *,
        user_id: str | uuid.UUID | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> JSONValue:
        """Rewrite a text with another sentiment (``POST Text/Craft/ChangeSentiment``); ``fields`` as
        :meth:`generate_ads`."""
        return await self._send("change_sentiment", fields, user_id, extra_headers, timeout, retry)

    async def shorten(
        self,
        fields: Mapping[str, object] | None = None,
        *,
        user_id: str | uuid.UUID | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> JSONValue:
        """Shorten a text (``POST Text/Craft/MakeShorten``); ``fields`` as :meth:`generate_ads`."""
        return await self._send("shorten", fields, user_id, extra_headers, timeout, retry)

    async def translate(
        self,
        fields: Mapping[str, object] | None = None,
        *,
        user_id: str | uuid.UUID | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> JSONValue:
        """Translate a text (``POST Text/Craft/Translate``); ``fields`` as :meth:`generate_ads`."""
        return await self._send("translate", fields, user_id, extra_headers, timeout, retry)

    async def create_variations(
        self,
        fields: Mapping[str, object] | None = None,
        *,
        user_id: str | uuid.UUID | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> JSONValue:
        """Variations of a text (``POST Text/Craft/CreateVariations``); ``fields`` as :meth:`generate_ads`."""
        return await self._send("create_variations", fields, user_id, extra_headers, timeout, retry)
