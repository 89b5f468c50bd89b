"""Outbound URLs a tenant chooses (webhooks): refuse any that reach the portal's own network, and connect only
to the address that was checked.

`url_check` parses the URL, resolves its host and checks every address it resolves to: loopback, link-local
(169.254.169.254, the instance metadata service, among them), private (RFC 1918, IPv6 ULA), multicast,
reserved, unspecified and IPv4-mapped IPv6 addresses are refused, and so is anything else not globally
routable. With `allow_private` (development: a receiver on the developer's own machine) loopback and private
addresses pass, and plain http too; link-local, multicast and the rest are refused all the same.

`pinned_session` sends to the address the check returned, never resolving the name again: a name that
answered a public address to the check and a private one a moment later (DNS rebinding) cannot redirect the
request. TLS still verifies the certificate against the URL's host name (SNI and hostname check).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

MAX_URL_LENGTH = 2000

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")


class UrlRefused(ValueError):
    """The URL may not be used; the message says why (naming the address when that is the reason)."""


@dataclass(frozen=True)
class CheckedUrl:
    url: str
    scheme: str
    host: str  # as written in the URL, without brackets
    port: int
    address: str  # the checked address to connect to


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def address_problem(address: Address, *, allow_private: bool) -> str:
    """Why this address is refused ('' when it is fine)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"an IPv4-mapped IPv6 address (of {address.ipv4_mapped})"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_loopback:
        return "" if allow_private else "a loopback address"
    if address.is_reserved:
        return "a reserved address"
    if isinstance(address, ipaddress.IPv6Address) and address in _UNIQUE_LOCAL:
        return "" if allow_private else "a private (unique local) address"
    if address.is_private:
        return "" if allow_private else "a private address"
    if not address.is_global:
        return "" if allow_private else "an address that is not publicly routable"
    return ""


def url_check(url: str, *, allow_private: bool,
              resolve: Callable[[str, int], list[str]] | None = None) -> CheckedUrl:
    """The URL, its host and the address to connect to; UrlRefused when any resolved address is refused."""
    if not isinstance(url, str) or not url.strip():
        raise UrlRefused("Enter a URL.")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"Not a valid URL: {exc}.") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise UrlRefused("The URL must start with https://." if not allow_private
                         else "The URL must start with https:// or http://.")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("The URL may not carry a user name or password.")
    host = parts.hostname or ""
    if not host:
        raise UrlRefused("The URL has no host.")
    if parts.fragment:
        raise UrlRefused("The URL may not have a #fragment.")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        literal = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = (resolve or _resolve)(host, port)
        except (OSError, UnicodeError):
            raise UrlRefused(f"The host {host} does not resolve.") from None
        if not addresses:
            raise UrlRefused(f"The host {host} does not resolve.")
    for raw in addresses:
        try:
            address = ipaddress.ip_address(raw.split("%", 1)[0])
        except ValueError:
            raise UrlRefused(f"The host {host} resolves to {raw}, which is not an IP address.") from None
        problem = address_problem(address, allow_private=allow_private)
        if problem:
            named = f"{host} resolves to {address}" if literal is None else f"{address}"
            raise UrlRefused(f"{named} is {problem}; webhooks may only reach public addresses.")
    return CheckedUrl(url=url, scheme=parts.scheme, host=host, port=port, address=addresses[0])


class _PinnedAdapter(HTTPAdapter):
    """Connects to one checked address whatever the URL's host; TLS verifies the URL's host name."""

    def __init__(self, checked: CheckedUrl) -> None:
        self.checked = checked
        super().__init__(max_retries=0)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        host_params["host"] = self.checked.address
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = self.checked.host
            pool_kwargs["assert_hostname"] = self.checked.host
        return host_params, pool_kwargs


def pinned_session(checked: CheckedUrl) -> requests.Session:
    """A session that sends only to `checked.address`, ignores proxy variables (a proxy would resolve the
    name itself) and sends the URL's own Host header."""
    session = requests.Session()
    session.trust_env = False
    adapter = _PinnedAdapter(checked)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    default_port = 443 if checked.scheme == "https" else 80
    host = f"[{checked.host}]" if ":" in checked.host else checked.host
    session.headers["Host"] = host if checked.port == default_port else f"{host}:{checked.port}"
    return session
