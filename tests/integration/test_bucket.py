"""Images kept in an S3-compatible bucket: moto's S3 server on loopback, reached with our own
signed requests; the signature checked against botocore's for the same request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import boto3
import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto.server import ThreadedMotoServer
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import images as kept
from storage.bucket import Bucket, sign
from tests.e2e.process import free_port
from tests.fakes.image_server import picture

KEY, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
        region_name="eu-west-1",
    )  # fmt: skip
    client.create_bucket(
        Bucket="images", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
async def bucket(s3: str) -> AsyncIterator[Bucket]:
    shelf = Bucket(s3, "images", KEY, SECRET, "eu-west-1", prefix="creditchat/")
    yield shelf
    await shelf.close()


@pytest.mark.parametrize(
    ("method", "url", "body", "headers"),
    [
        ("PUT", "https://s3.eu-west-1.amazonaws.com/images/creditchat/a-full", b"\x89PNG data",
         {"content-type": "image/png"}),
        ("GET", "http://127.0.0.1:9000/images/p/element-0f3a", b"", {}),
        ("DELETE", "https://r2.example.com/my%20bucket/a/b-thumb", b"", {}),
        ("GET", "https://s3.example.com/images/x?versionId=3&acl", b"", {}),
    ],
)  # fmt: skip
def test_our_signature_is_the_one_botocore_makes(
    method: str, url: str, body: bytes, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime(2026, 12, 1, 12, 30, 5, tzinfo=UTC)
    ours = sign(method, url, headers, body, KEY, SECRET, "eu-west-1", now)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now.replace(tzinfo=None))
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    S3SigV4Auth(Credentials(KEY, SECRET), "s3", "eu-west-1").add_auth(request)
    assert request.headers["X-Amz-Date"] == ours["x-amz-date"] == "20261201T123005Z"
    assert ours["authorization"] == request.headers["Authorization"]


async def test_files_go_in_come_back_and_go(bucket: Bucket, s3: str) -> None:
    data = picture("a boat", 1, 0, 64, 64, "png")
    await bucket.put("one-full", data, "image/png")
    assert await bucket.get("one-full") == data
    listed = boto3.client(
        "s3", endpoint_url=s3, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
        region_name="eu-west-1",
    ).list_objects_v2(Bucket="images")  # fmt: skip
    assert [o["Key"] for o in listed["Contents"]] == ["creditchat/one-full"]
    await bucket.delete("one-full")
    assert await bucket.get("one-full") is None
    await bucket.delete("one-full")  # gone already: nothing to say


async def test_a_store_that_refuses_or_is_down_is_an_os_error(s3: str) -> None:
    wrong = Bucket(s3, "no-such-bucket", KEY, SECRET, "eu-west-1")
    with pytest.raises(OSError, match="HTTP 404"):
        await wrong.put("x", b"data", "image/png")
    await wrong.close()
    down = Bucket(f"http://127.0.0.1:{free_port()}", "images", KEY, SECRET, timeout_s=2)
    with pytest.raises(OSError, match="could not be reached"):
        await down.get("x")
    await down.close()


async def test_images_kept_in_a_bucket_are_served_like_those_in_a_folder(
    bucket: Bucket, engine: AsyncEngine
) -> None:
    data = picture("a fox", 1, 0, 640, 480, "png")
    made = kept.Made("ann", "t1", "image:abc", "m", "a fox")
    stored = await kept.keep(engine, bucket, made, data, "image/png", 640, 480)
    full = await kept.fetch(engine, bucket, stored.id, "ann", "full")
    assert full is not None and full.data == data
    assert await kept.fetch(engine, bucket, stored.id, "bob", "full") is None
    kept.thumbnail_soon(engine, bucket, stored.id, data)
    await kept.finish_thumbnails()
    thumb = await kept.fetch(engine, bucket, stored.id, "ann", "thumb")
    assert thumb is not None and thumb.content_type == "image/jpeg"
