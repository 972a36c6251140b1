"""Dynamic large objects through a real ``shoal aio`` with python-swiftclient: Swift's DLO
behaviour (concatenation in listing order, ETag, ranges, conditionals, ``multipart-manifest=get``,
the segments' ACL). The CLI's and rclone's segmented uploads are in their own test files."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest
import requests
import swiftclient

from tests.proxy.aio_harness import AioCluster
from tests.proxy.conftest import connect


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
    several = requests.get(
        f"{url}/{c}/m", headers={"X-Auth-Token": token, "Range": "bytes=0-1,5-6"}
    )
    assert (several.status_code, several.content) == (200, whole)  # as Swift's DLO: all of it


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


def test_no_segments_is_an_empty_object(swift: swiftclient.Connection, container: str):
    swift.put_object(container, "m", b"", headers={"X-Object-Manifest": f"gone-{container}/x"})
    headers, body = swift.get_object(container, "m")
    assert (body, headers["content-length"]) == (b"", "0")
    assert headers["etag"] == '"' + hashlib.md5(b"").hexdigest() + '"'


@pytest.mark.parametrize("value", ["no-slash", "/leading", "c/", "c//p", "c/p?x=1", "c/p&y"])
def test_a_malformed_manifest_header_is_400(swift: swiftclient.Connection, container, value):
    for call in (
        lambda: swift.put_object(container, "bad", b"", headers={"X-Object-Manifest": value}),
        lambda: swift.post_object(container, "bad", headers={"X-Object-Manifest": value}),
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
    copied = swift.head_object(c, "whole")
    assert "x-object-manifest" not in copied
    assert copied["etag"] == hashlib.md5(whole).hexdigest()
    assert copied["x-object-meta-kind"] == "dlo"
    assert swift.head_object(c, "manifest-copy")["x-object-manifest"] == f"{segs}/p/"
    for name in ("p/00", "p/01", "p/02"):
        swift.delete_object(segs, name)
    assert swift.get_object(c, "whole")[1] == whole
    assert swift.get_object(c, "manifest-copy")[1] == b""
