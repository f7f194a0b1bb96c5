"""A shelf in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, Backblaze B2, Garage...).

Three requests, path-style (`{endpoint}/{bucket}/{prefix}{key}`), signed with AWS Signature
Version 4 over the whole body (no chunked signing, no presigned URLs: every file is read through
the app, which checks who asks). Written on httpx rather than boto3, which would bring a second
HTTP stack and its threads for three calls. Any failure of the store is an `OSError`, as a full
disk is for `Folder`: the image is not delivered and not charged.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import httpx

SERVICE = "s3"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class Bucket:
    """Files in `bucket` at `endpoint`, under `prefix`."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        prefix: str = "",
        timeout_s: float = 30.0,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.prefix = prefix
        self.client = httpx.AsyncClient(timeout=timeout_s)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self._call("PUT", key, data, {"content-type": content_type}, ok=(200,))

    async def get(self, key: str) -> bytes | None:
        response = await self._call("GET", key, b"", {}, ok=(200, 404))
        return None if response.status_code == 404 else response.content

    async def delete(self, key: str) -> None:
        await self._call("DELETE", key, b"", {}, ok=(200, 204, 404))

    async def close(self) -> None:
        await self.client.aclose()

    async def _call(
        self, method: str, key: str, body: bytes, headers: dict[str, str], ok: tuple[int, ...]
    ) -> httpx.Response:
        url = f"{self.endpoint}/{quote(self.bucket)}/{quote(self.prefix + key, safe='/')}"
        signed = sign(
            method, url, headers, body, self.access_key, self.secret_key, self.region,
            datetime.now(UTC),
        )  # fmt: skip
        try:
            response = await self.client.request(method, url, content=body, headers=signed)
        except httpx.HTTPError as exc:
            raise OSError(f"The image store could not be reached ({type(exc).__name__})") from exc
        if response.status_code not in ok:
            raise OSError(f"The image store answered {method} with HTTP {response.status_code}")
        return response


def sign(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    region: str,
    now: datetime,
) -> dict[str, str]:
    """`headers` and the ones AWS Signature Version 4 adds (host, date, payload hash,
    Authorization) for this request."""
    parts = urlsplit(url)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    payload = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    every = {
        **{k.lower(): v.strip() for k, v in headers.items()},
        "host": parts.netloc,
        "x-amz-content-sha256": payload,
        "x-amz-date": stamp,
    }
    names = sorted(every)
    canonical = "\n".join(
        [
            method,
            parts.path or "/",
            _canonical_query(parts.query),
            "".join(f"{name}:{every[name]}\n" for name in names),
            ";".join(names),
            payload,
        ]
    )
    scope = f"{day}/{region}/{SERVICE}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(f"AWS4{secret_key}".encode(), day)
    for part in (region, SERVICE, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    every["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return every


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _canonical_query(query: str) -> str:
    pairs = sorted(tuple(p.split("=", 1)) if "=" in p else (p, "") for p in query.split("&") if p)
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs)
