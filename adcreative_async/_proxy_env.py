"""What ``trust_env=True`` takes from the environment, read once when the client opens.

aiohttp's own ``trust_env=True`` reads the proxy variables and the netrc file again for every request,
in two worker-thread calls (``get_env_proxy_for_url`` and the netrc lookup): two thread hand-offs and a
file parse per request, for settings that do not change while a client is open. The SDK sends every
request to one origin (its base URL), so it resolves them once, with aiohttp's own functions (the same
variables, the same precedence, the same warnings), and sends with ``trust_env=False``, passing what
applies explicitly:

- the proxy for the base URL's scheme (``HTTP_PROXY`` / ``HTTPS_PROXY``, lower case first, as
  ``urllib.request.getproxies`` reads them) unless ``NO_PROXY`` names the host; as in aiohttp,
  ``ALL_PROXY`` is not read and an ``https://`` proxy URL is ignored with a warning;
- the proxy's credentials, from its URL's user info or else the netrc entry of the proxy's host: sent
  as ``Proxy-Authorization`` (on each request through a plain proxy, on the ``CONNECT`` of a tunnel);
- the netrc entry of the API's host (``NETRC`` or ``~/.netrc``): sent as ``Authorization: Basic`` on
  the requests that carry no ``Authorization`` of their own (the token requests), as aiohttp did.
  aiohttp also added it to requests with a bearer token and then refused them (``ValueError``: an
  ``Authorization`` header and an ``auth``); the SDK never sends it beside its bearer token.

Changes to the environment after the client opened are not seen: open a new client.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import BasicAuth, hdrs
from aiohttp.helpers import basicauth_from_netrc, get_env_proxy_for_url, netrc_from_env
from yarl import URL

__all__ = ["NO_ENVIRONMENT", "EnvironmentRoute", "resolve_environment"]


@dataclass(frozen=True)
class EnvironmentRoute:
    """What the environment says about requests to one origin (see the module docstring).

    Attributes:
        proxy: the proxy to send through, or None (no proxy variable for the scheme, or ``NO_PROXY``).
        proxy_authorization: the ``Proxy-Authorization`` value for that proxy, or None.
        authorization: the netrc ``Authorization`` value for the origin's host, or None.
    """

    proxy: URL | None = None
    proxy_authorization: str | None = field(default=None, repr=False)
    authorization: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:  # credentials never in a repr
        return (
            f"EnvironmentRoute(proxy={str(self.proxy) if self.proxy else None!r}, "
            f"proxy_auth={self.proxy_authorization is not None}, netrc_auth={self.authorization is not None})"
        )

    def apply(self, headers: dict[str, str], kwargs: dict[str, object], *, tunnel: bool) -> None:
        """Add what applies to one request: ``headers`` are the request's, ``kwargs`` aiohttp's
        ``request()`` arguments; ``tunnel``: the origin is ``https`` (a proxy is reached by
        ``CONNECT``, which carries the proxy's credentials)."""
        if self.authorization is not None and not any(k.lower() == "authorization" for k in headers):
            headers[hdrs.AUTHORIZATION] = self.authorization
        if self.proxy is None:
            return
        kwargs["proxy"] = self.proxy
        if self.proxy_authorization is not None:
            if tunnel:
                kwargs["proxy_headers"] = {hdrs.PROXY_AUTHORIZATION: self.proxy_authorization}
            else:
                headers[hdrs.PROXY_AUTHORIZATION] = self.proxy_authorization


#: Nothing from the environment (``trust_env=False``).
NO_ENVIRONMENT = EnvironmentRoute()


def resolve_environment(base_url: str, *, proxy_given: bool) -> EnvironmentRoute:
    """Read the proxy variables and the netrc file for ``base_url`` (blocking: run it in a thread).

    ``proxy_given``: the client has an explicit ``proxy=``, which wins over the variables (as in
    aiohttp); the netrc entry of the API's host still applies.
    """
    url = URL(base_url)
    authorization: str | None = None
    if url.host is not None:
        try:
            authorization = _encode(basicauth_from_netrc(netrc_from_env(), url.host))
        except LookupError:
            authorization = None
    route = EnvironmentRoute(authorization=authorization)
    if not proxy_given:
        try:
            proxy, proxy_auth = get_env_proxy_for_url(url)
        except LookupError:  # no proxy for this scheme, or NO_PROXY names the host
            pass
        else:
            route = EnvironmentRoute(
                proxy=proxy,
                proxy_authorization=_encode(proxy_auth) if proxy_auth is not None else None,
                authorization=authorization,
            )
    return NO_ENVIRONMENT if route == NO_ENVIRONMENT else route  # the transport tests identity


def _encode(auth: BasicAuth) -> str:
    return auth.encode()
