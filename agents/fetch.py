"""The one HTTP client a task's tools fetch URLs with, guarded.

- Only `http` and `https`, on any port, to hosts whose every address is public: loopback, private,
  link-local (the cloud metadata service at 169.254.169.254), shared, multicast and reserved
  addresses are refused, unless an operator allowed them (`allowed`: networks such as
  `10.0.0.0/8`, for an intranet).
- The address checked is the address connected to: the name is resolved once, here, and the
  connection goes to that address (the Host header and TLS keep the name), so a name that
  resolves to a public address when checked and a private one when used (DNS rebinding) gets
  nowhere.
- Redirects are followed by hand, at most `MOST_REDIRECTS`, each one checked the same way.
- At most `most_bytes` of the body are read and at most `timeout_s` spent in all; what came is
  returned with `cut` set when the body went on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from agents.errors import AgentError

MOST_REDIRECTS = 5
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchRefused(AgentError):
    """A URL a task may not fetch, or that could not be fetched (the message says which)."""


@dataclass(frozen=True)
class Fetched:
    url: str  # where it ended, after redirects
    status: int
    content_type: str
    body: bytes
    cut: bool  # the body went on past the limit

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


def networks(spec: str) -> tuple[Network, ...]:
    """`"10.0.0.0/8, 127.0.0.1"` as networks (an address alone is a network of one)."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()
    )


def public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def fetch(
    url: str,
    most_bytes: int = 1_000_000,
    timeout_s: float = 15.0,
    allowed: Sequence[Network] = (),
) -> Fetched:
    """GET `url` as the guard allows; `FetchRefused` saying why not."""
    try:
        async with asyncio.timeout(timeout_s), httpx.AsyncClient(timeout=timeout_s) as client:
            for _ in range(MOST_REDIRECTS + 1):
                response, body, cut = await _get(client, url, most_bytes, allowed)
                location = response.headers.get("location")
                if response.is_redirect and location:
                    url = urljoin(url, location)
                    continue
                return Fetched(
                    url, response.status_code, response.headers.get("content-type", ""), body, cut
                )
    except TimeoutError:
        raise FetchRefused(f"{url} did not answer within {timeout_s:g} s.") from None
    except httpx.HTTPError as exc:
        raise FetchRefused(f"{url} could not be fetched ({type(exc).__name__}).") from exc
    raise FetchRefused(f"{url} redirected more than {MOST_REDIRECTS} times.")


async def _get(
    client: httpx.AsyncClient, url: str, most_bytes: int, allowed: Sequence[Network]
) -> tuple[httpx.Response, bytes, bool]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchRefused(f"Only http and https URLs can be fetched, not {url[:100]!r}.")
    if parts.username or parts.password:
        raise FetchRefused("URLs with a user name or password are not fetched.")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = await _checked_address(host, port, allowed)
    pinned = parts._replace(netloc=_netloc(address, parts.port)).geturl()
    request = client.build_request(
        "GET", pinned, headers={"Host": parts.netloc.rsplit("@", 1)[-1]},
        extensions={"sni_hostname": host} if parts.scheme == "https" else {},
    )  # fmt: skip
    response = await client.send(request, stream=True)
    try:
        chunks: list[bytes] = []
        size = 0
        cut = False
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > most_bytes:
                cut = True
                break
        return response, b"".join(chunks)[:most_bytes], cut
    finally:
        await response.aclose()


async def _checked_address(host: str, port: int, allowed: Sequence[Network]) -> str:
    """The address to connect to for `host`: every address it has must be allowed."""
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise FetchRefused(f"{host} could not be resolved.") from exc
    addresses = [ipaddress.ip_address(info[4][0]) for info in found]
    if not addresses:
        raise FetchRefused(f"{host} could not be resolved.")
    for address in addresses:
        if not public(address) and not any(address in net for net in allowed):
            raise FetchRefused(
                f"{host} is at {address}, a private, loopback or reserved address: tasks may "
                "fetch public addresses only."
            )
    return str(addresses[0])


def _netloc(address: str, port: int | None) -> str:
    shown = f"[{address}]" if ":" in address else address
    return f"{shown}:{port}" if port else shown
