"""Dynamic large objects through a real ``shoal aio`` with python-swiftclient: Swift's DLO
behaviour (concatenation in listing order, ETag, ranges, conditionals, ``multipart-manifest=get``,
the segments' ACL). The CLI's and rclone's segmented uploads are in their own test files."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid

import pytest
import requests
import swiftclient

from objectd.client import BackendClient
from ring import Ring
from shoal.timestamp import Timestamp
from tests.proxy.aio_harness import AioCluster
from tests.proxy.conftest import connect
from tests.proxy.test_proxy_client_gone import hang_up_mid_body


@pytest.fixture
def dlo(swift: swiftclient.Connection):
    """A manifest ``m`` in container ``c`` over three segments ``s/p/00..02`` in ``segs``."""
    c, segs = f"c-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
    swift.put_container(c)
    swift.put_container(segs)
    parts = [os.urandom(1000), os.urandom(2500), os.urandom(7)]
    etags = [swift.put_object(segs, f"p/{i:02d}", data) for i, data in enumerate(parts)]
    swift.put_object(segs, "other", b"not under the prefix")
    swift.put_object(
        c, "m", b"", content_type="application/x-whole",
        headers={"X-Object-Manifest": f"{segs}/p/", "X-Object-Meta-Kind": "dlo"},
    )  # fmt: skip
    return c, segs, parts, etags


def test_get_and_head_serve_the_concatenation(swift: swiftclient.Connection, dlo):
    c, segs, parts, etags = dlo
    whole = b"".join(parts)
    headers, body = swift.get_object(c, "m")
    assert body == whole
    expected_etag = '"' + hashlib.md5("".join(etags).encode()).hexdigest() + '"'
    assert headers["etag"] == expected_etag
    assert headers["content-length"] == str(len(whole))
    assert headers["content-type"] == "application/x-whole"
    assert headers["x-object-manifest"] == f"{segs}/p/"
    assert headers["x-object-meta-kind"] == "dlo"
    head = swift.head_object(c, "m")
    assert (head["etag"], head["content-length"]) == (expected_etag, str(len(whole)))


def test_a_segment_uploaded_later_is_part_of_the_object(swift: swiftclient.Connection, dlo):
    c, segs, parts, _ = dlo
    swift.put_object(segs, "p/03", b"tail")
    assert swift.get_object(c, "m")[1] == b"".join(parts) + b"tail"


def test_ranges(aio: AioCluster, swift: swiftclient.Connection, dlo):
    c, _, parts, _ = dlo
    whole = b"".join(parts)
    across = swift.get_object(c, "m", headers={"Range": "bytes=990-1009"})
    assert across[1] == whole[990:1010]
    assert across[0]["content-range"] == f"bytes 990-1009/{len(whole)}"
    assert swift.get_object(c, "m", headers={"Range": "bytes=-5"})[1] == whole[-5:]
    assert swift.get_object(c, "m", headers={"Range": "bytes=3499-"})[1] == whole[3499:]
    url, token = swift.get_auth()
    answer = requests.get(
        f"{url}/{c}/m", headers={"X-Auth-Token": token, "Range": f"bytes={len(whole)}-"}
    )
    assert answer.status_code == 416
    assert answer.headers["Content-Range"] == f"bytes */{len(whole)}"
    for ranges in ("bytes=0-1,5-6", f"bytes=0-1,{len(whole)}-"):  # as Swift's DLO: all of it
        several = requests.get(f"{url}/{c}/m", headers={"X-Auth-Token": token, "Range": ranges})
        assert (several.status_code, several.content) == (200, whole)


def test_conditionals_use_the_dlo_etag(swift: swiftclient.Connection, dlo):
    c, _, parts, etags = dlo
    etag = '"' + hashlib.md5("".join(etags).encode()).hexdigest() + '"'
    url, token = swift.get_auth()
    auth = {"X-Auth-Token": token}
    assert requests.get(f"{url}/{c}/m", headers={**auth, "If-None-Match": etag}).status_code == 304
    assert requests.get(f"{url}/{c}/m", headers={**auth, "If-Match": '"nope"'}).status_code == 412
    matched = requests.get(f"{url}/{c}/m", headers={**auth, "If-Match": etag})
    assert (matched.status_code, matched.content) == (200, b"".join(parts))


def test_multipart_manifest_get_returns_the_manifest(swift: swiftclient.Connection, dlo):
    c, segs, _, _ = dlo
    headers, body = swift.get_object(c, "m", query_string="multipart-manifest=get")
    assert body == b""
    assert headers["x-object-manifest"] == f"{segs}/p/"
    assert headers["etag"] == hashlib.md5(b"").hexdigest()


def test_no_segments_is_an_empty_object_and_no_container_a_404(
    swift: swiftclient.Connection, container: str
):
    swift.put_object(container, "m", b"", headers={"X-Object-Manifest": f"{container}/none-"})
    headers, body = swift.get_object(container, "m")
    assert (body, headers["content-length"]) == (b"", "0")
    assert headers["etag"] == '"' + hashlib.md5(b"").hexdigest() + '"'
    swift.put_object(container, "n", b"", headers={"X-Object-Manifest": f"gone-{container}/x"})
    with pytest.raises(swiftclient.ClientException) as missing:
        swift.get_object(container, "n")
    assert missing.value.http_status == 404  # as Swift: the segment listing's answer


def _delete_behind_the_listing(aio: AioCluster, container: str, obj: str) -> None:
    """Tombstone ``obj`` on every object server without touching the container listing, so
    the listing still names a segment that is gone."""
    ring = Ring(aio.data / "rings" / "object.ring")
    part, nodes = ring.get_nodes("AUTH_test", container, obj)
    headers = {"X-Timestamp": Timestamp(time.time()).internal}

    async def delete_all() -> None:
        async with BackendClient() as client:
            for node in nodes:
                answer = await client.delete_object(
                    node, part, "AUTH_test", container, obj, headers
                )
                assert answer.status in (204, 404)

    asyncio.run(delete_all())


def test_a_missing_first_segment_is_409_and_a_later_one_cuts_the_body(
    aio: AioCluster, swift: swiftclient.Connection, dlo
):
    c, segs, _, _ = dlo
    url, token = swift.get_auth()
    _delete_behind_the_listing(aio, segs, "p/01")
    answer = requests.get(f"{url}/{c}/m", headers={"X-Auth-Token": token}, stream=True)
    assert answer.status_code == 200  # the first segment was fine: the status went out
    with pytest.raises(requests.exceptions.RequestException):
        answer.content  # noqa: B018 (reading the body is the test)
    ranged = requests.get(
        f"{url}/{c}/m", headers={"X-Auth-Token": token, "Range": "bytes=1000-1001"}
    )
    assert ranged.status_code == 409  # the first segment of that range is the missing one
    _delete_behind_the_listing(aio, segs, "p/00")
    assert requests.get(f"{url}/{c}/m", headers={"X-Auth-Token": token}).status_code == 409
    copy = requests.put(f"{url}/{c}/copy", headers={"X-Auth-Token": token, "X-Copy-From": f"{c}/m"})
    assert copy.status_code == 409
    with pytest.raises(swiftclient.ClientException) as absent:
        swift.head_object(c, "copy")
    assert absent.value.http_status == 404


@pytest.mark.parametrize("value", ["no-slash", "/leading", "c/", "c//p", "c/p?x=1", "c/p&y"])
def test_a_malformed_manifest_header_is_400(swift: swiftclient.Connection, container, value):
    swift.put_object(container, "plain", b"x")
    copy_headers = {"X-Copy-From": f"{container}/plain", "X-Object-Manifest": value}
    for call in (
        lambda: swift.put_object(container, "bad", b"", headers={"X-Object-Manifest": value}),
        lambda: swift.post_object(container, "bad", headers={"X-Object-Manifest": value}),
        lambda: swift.put_object(container, "bad", b"", headers=copy_headers),
    ):
        with pytest.raises(swiftclient.ClientException) as refused:
            call()
        assert refused.value.http_status == 400
        assert "X-Object-Manifest must be in the format container/prefix" in (
            refused.value.http_response_content.decode()
        )


def test_reading_needs_access_to_the_segments_container(aio: AioCluster, dlo):
    c, segs, parts, _ = dlo
    owner = connect(aio)
    other = connect(aio, "test2:tester2", "testing2")
    owner_url = owner.get_auth()[0]
    owner.post_container(c, {"X-Container-Read": "test2:tester2"})
    token = other.get_auth()[1]
    with pytest.raises(swiftclient.ClientException) as denied:
        swiftclient.get_object(owner_url, token, c, "m")
    assert denied.value.http_status == 403
    owner.post_container(segs, {"X-Container-Read": "test2:tester2"})
    assert swiftclient.get_object(owner_url, token, c, "m")[1] == b"".join(parts)


def test_copy_of_a_manifest_copies_the_content(swift: swiftclient.Connection, dlo):
    """As Swift: the copy is an ordinary object with the bytes, which outlives the segments;
    with ``multipart-manifest=get`` the manifest itself is copied."""
    c, segs, parts, _ = dlo
    whole = b"".join(parts)
    swift.copy_object(c, "m", f"/{c}/whole")
    url, token = swift.get_auth()
    answer = requests.request(
        "COPY",
        f"{url}/{c}/m?multipart-manifest=get",
        headers={"X-Auth-Token": token, "Destination": f"{c}/manifest-copy"},
    )
    assert answer.status_code == 201, answer.text
    fresh = requests.request(
        "COPY",
        f"{url}/{c}/m?multipart-manifest=get",
        headers={"X-Auth-Token": token, "Destination": f"{c}/fresh", "X-Fresh-Metadata": "true"},
    )
    assert fresh.status_code == 201, fresh.text
    assert swift.head_object(c, "fresh")["x-object-manifest"] == f"{segs}/p/"  # still a DLO
    copied = swift.head_object(c, "whole")
    assert "x-object-manifest" not in copied
    assert copied["etag"] == hashlib.md5(whole).hexdigest()
    assert copied["x-object-meta-kind"] == "dlo"
    assert swift.head_object(c, "manifest-copy")["x-object-manifest"] == f"{segs}/p/"
    for name in ("p/00", "p/01", "p/02"):
        swift.delete_object(segs, name)
    assert swift.get_object(c, "whole")[1] == whole
    assert swift.get_object(c, "manifest-copy")[1] == b""


def test_a_client_that_hangs_up_mid_dlo_is_not_an_error(aio: AioCluster, swift, container):
    """The segment streams are closed and nothing is logged as a failure with a traceback."""
    segs = f"{container}-segs"
    swift.put_container(segs)
    part = os.urandom(1024 * 1024)
    for index in range(4):
        swift.put_object(segs, f"s/{index}", part)
    swift.put_object(container, "big", b"", headers={"X-Object-Manifest": f"{segs}/s/"})
    url, token = swift.get_auth()
    logged = hang_up_mid_body(aio, f"{url}/{container}/big", token)
    assert swift.get_object(container, "big")[1] == part * 4  # still serving
    assert "Traceback" not in logged and "Error handling request" not in logged
