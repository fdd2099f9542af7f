"""Scan My Website (reference §8: ``GET /api/v1/ScanMyWebsite``): brand, logo and colours of a site.

A synchronous call: the answer comes when the scan is done, which takes a while for large sites
(longer with ``advance_mode``), hence a long default read timeout.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping

from .._config import RetryPolicy, Timeout
from .._feature_models import WebsiteScan, decode_website_scan
from .._fields import FieldKind, FieldSpec, validate, wire_text
from ._base import RequestOptions, Resource

__all__ = ["SCAN_MY_WEBSITE_ROUTE", "SCAN_READ_TIMEOUT", "ScanMyWebsiteResource"]

#: The documented route (reference §8.1).
SCAN_MY_WEBSITE_ROUTE = "ScanMyWebsite"

#: assumed: the docs say large sites take longer (especially with advanceMode) without a figure; the
#: scan's default read and total timeouts are this many seconds (or the client's, if longer). Pass
#: ``timeout=`` to choose another.
SCAN_READ_TIMEOUT = 600.0

#: The documented query parameters, in the docs' order.
SCAN_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("applicationId", "application_id", FieldKind.GUID, required=True),
    FieldSpec("userId", "user_id", FieldKind.GUID, required=True),
    FieldSpec("url", "url", FieldKind.URL, required=True),
    FieldSpec("includeLogoContent", "include_logo_content", FieldKind.BOOL),
    FieldSpec("advanceMode", "advance_mode", FieldKind.BOOL),
)


class ScanMyWebsiteResource(Resource):
    """Extract a site's brand (name, description, type), logos and colours.

    Example::

        scan = await client.scan_my_website.scan("https://fireflies.ai", include_logo_content=True)
        print(scan.brand_name, scan.main_colors, scan.raw)
    """

    name = "scan_my_website"

    async def scan(
        self,
        url: str,
        *,
        include_logo_content: bool | None = None,
        advance_mode: bool | None = None,
        user_id: str | uuid.UUID | None = None,
        extra_query: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | int | None = None,
    ) -> WebsiteScan:
        """Scan a website (``GET ScanMyWebsite``).

        Args:
            url: the site, an absolute http(s) URL such as ``"https://fireflies.ai"``; the SDK
                percent-encodes it in the query (the docs' example does not).
            include_logo_content: also return the logo's bytes (server default: true); not sent when
                None.
            advance_mode: the slower, advanced analysis (server default: false); not sent when None.
            user_id: the user (default: the client's).
            extra_query, extra_headers: per-call escape hatches.
            timeout: this call's timeout; by default the client's, with a read timeout of at least
                :data:`SCAN_READ_TIMEOUT` seconds.

        Returns:
            A :class:`~adcreative_async.WebsiteScan`: the assumed fields typed, the whole answer in
            ``.raw``. Never an error for an unexpected shape, only for a body that is not JSON.

        Raises:
            InvalidRequestError: before sending: not an absolute http(s) URL, a bad user id.
            BadRequestError: the server refused the input.
        """
        client = self._client
        values = {
            "application_id": client.application_id,
            "user_id": client._user_id(user_id),
            "url": url,
            "include_logo_content": include_logo_content,
            "advance_mode": advance_mode,
        }
        wire = validate(SCAN_FIELDS, values, strict=client.strict_validation)
        if timeout is None:
            base = client.timeout
            read = None if base.read is None else max(base.read, SCAN_READ_TIMEOUT)
            total = None if base.total is None else max(base.total, SCAN_READ_TIMEOUT)
            timeout = dataclasses.replace(base, read=read, total=total)
        return await self._call(
            "GET",
            SCAN_MY_WEBSITE_ROUTE,
            decode_website_scan,
            query=[(name, wire_text(value)) for name, value in wire.items()],
            params={f.wire: f.param for f in SCAN_FIELDS},
            options=RequestOptions(None, extra_query, extra_headers, timeout, retry),
        )
