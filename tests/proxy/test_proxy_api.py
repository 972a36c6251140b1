"""The Swift API's statuses and headers, as Swift answers them, against a real ``shoal aio``.

Method: raw HTTP (requests) so every status, header and body can be checked exactly; each test
makes its own container, so tests do not depend on each other's order.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET

import pytest
import requests

from tests.proxy.aio_harness import AioCluster


class Client:
    """One tempauth user's session: ``request(method, 'c/o', ...)`` under the storage URL."""

    def __init__(self, aio: AioCluster, user: str = "test:tester", key: str = "testing"):
        login = requests.get(aio.auth_url, headers={"X-Auth-User": user, "X-Auth-Key": key},
                             timeout=10)  # fmt: skip
        assert login.status_code == 200, login.text
        self.token = login.headers["X-Auth-Token"]
        self.storage_url = login.headers["X-Storage-Url"]
        self.http = requests.Session()

    def request(self, method: str, path: str = "", *, token: str | None = None, **kwargs):
        headers = {"X-Auth-Token": self.token if token is None else token,
                   **kwargs.pop("headers", {})}  # fmt: skip
        if not headers["X-Auth-Token"]:
            del headers["X-Auth-Token"]
        url = self.storage_url + ("/" + path if path else "")
        return self.http.request(method, url, headers=headers, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def tester(aio: AioCluster) -> Client:
    return Client(aio)


@pytest.fixture
def cont(tester: Client) -> str:
    name = f"api-{uuid.uuid4().hex[:8]}"
    assert tester.request("PUT", name).status_code == 201
    return name


# --- auth and errors ---------------------------------------------------------------------------
def test_login_with_a_wrong_key_is_401(aio: AioCluster):
    answer = requests.get(aio.auth_url, headers={"X-Auth-User": "test:tester", "X-Auth-Key": "no"})
    assert answer.status_code == 401


def test_a_forged_token_is_401_and_no_token_is_401(tester: Client, cont: str):
    assert tester.request("GET", cont, token="AUTH_tk" + "0" * 60).status_code == 401
    assert tester.request("GET", cont, token="").status_code == 401


def test_every_response_carries_trans_id_and_request_id(tester: Client, cont: str):
    for answer in (tester.request("HEAD", cont), tester.request("GET", cont + "/missing"),
                   tester.request("GET", cont, token="bad")):  # fmt: skip
        assert answer.headers["X-Trans-Id"].startswith("tx")
        assert answer.headers["X-Openstack-Request-Id"] == answer.headers["X-Trans-Id"]
    extra = tester.request("HEAD", cont, headers={"X-Trans-Id-Extra": "mine"})
    assert extra.headers["X-Trans-Id"].endswith("mine")


def test_missing_object_and_container_are_404(tester: Client, cont: str):
    assert tester.request("GET", cont + "/nothing").status_code == 404
    assert tester.request("HEAD", cont + "/nothing").status_code == 404
    assert tester.request("GET", "no-such-container-" + uuid.uuid4().hex).status_code == 404
    assert tester.request("PUT", "no-such-container-x/o", data=b"x").status_code == 404


def test_deleting_a_non_empty_container_is_409(tester: Client, cont: str):
    tester.request("PUT", cont + "/o", data=b"x")
    assert tester.request("DELETE", cont).status_code == 409
    tester.request("DELETE", cont + "/o")
    assert tester.request("DELETE", cont).status_code == 204
    assert tester.request("HEAD", cont).status_code == 404


def test_put_without_length_is_411_and_too_large_is_413(tester: Client, cont: str):
    # a raw socket: HTTP client libraries add a Content-Length or chunking on their own
    url = urllib.parse.urlsplit(tester.storage_url + f"/{cont}/o")
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(f"PUT {url.path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {tester.token}\r\n"
                     "Connection: close\r\n\r\n".encode())  # fmt: skip
        assert sock.recv(4096).startswith(b"HTTP/1.1 411 ")
    too_big = requests.put(tester.storage_url + f"/{cont}/o", data=b"", timeout=10,
                           headers={"Content-Length": str(5 * 2**30 + 3),
                                    "X-Auth-Token": tester.token})  # fmt: skip
    assert too_big.status_code == 413


@pytest.mark.parametrize(
    "size", [4, 300_000, 2 * 2**20 + 1], ids=["small", "whole-with-footer", "streamed-with-footer"]
)
def test_etag_mismatch_is_422_and_nothing_is_stored(tester: Client, cont: str, size: int):
    body = os.urandom(size)
    answer = tester.request("PUT", cont + "/o", data=body, headers={"ETag": "0" * 32})
    assert answer.status_code == 422
    assert tester.request("HEAD", cont + "/o").status_code == 404
    good = tester.request("PUT", cont + "/o", data=body,
                          headers={"ETag": hashlib.md5(body).hexdigest()})  # fmt: skip
    assert good.status_code == 201
    assert good.headers["ETag"] == hashlib.md5(body).hexdigest()
    assert tester.request("GET", cont + "/o").content == body


def test_if_none_match_star_on_an_existing_object_is_412(tester: Client, cont: str):
    assert (
        tester.request("PUT", cont + "/o", data=b"1", headers={"If-None-Match": "*"}).status_code
        == 201
    )
    assert (
        tester.request("PUT", cont + "/o", data=b"2", headers={"If-None-Match": "*"}).status_code
        == 412
    )


def test_name_and_metadata_constraints_are_400(tester: Client, cont: str):
    assert tester.request("PUT", cont + "/" + "o" * 1025, data=b"").status_code == 400
    assert tester.request("PUT", "c" * 257).status_code == 400
    long_value = {"X-Object-Meta-Big": "v" * 257}
    assert tester.request("PUT", cont + "/o", data=b"", headers=long_value).status_code == 400
    many = {f"X-Container-Meta-K{i}": "v" for i in range(91)}
    assert tester.request("POST", cont, headers=many).status_code == 400


def test_bad_listing_limit_is_412(tester: Client, cont: str):
    assert tester.request("GET", cont, params={"limit": "10001"}).status_code == 412
    assert tester.request("GET", cont, params={"limit": "-1"}).status_code == 412
    assert tester.request("GET", cont, params={"delimiter": "ab"}).status_code == 412


def test_delete_after_in_the_past_or_not_a_number_is_400(tester: Client, cont: str):
    assert (
        tester.request("PUT", cont + "/o", data=b"", headers={"X-Delete-After": "x"}).status_code
        == 400
    )
    assert (
        tester.request("PUT", cont + "/o", data=b"", headers={"X-Delete-At": "1"}).status_code
        == 400
    )


# --- ranges and conditionals -------------------------------------------------------------------
def test_ranges_single_suffix_multi_and_unsatisfiable(tester: Client, cont: str):
    tester.request("PUT", cont + "/d", data=b"0123456789")
    one = tester.request("GET", cont + "/d", headers={"Range": "bytes=2-4"})
    assert (one.status_code, one.content, one.headers["Content-Range"]) == (
        206,
        b"234",
        "bytes 2-4/10",
    )
    assert tester.request("GET", cont + "/d", headers={"Range": "bytes=-3"}).content == b"789"
    multi = tester.request("GET", cont + "/d", headers={"Range": "bytes=0-1,8-9"})
    assert multi.status_code == 206
    assert multi.headers["Content-Type"].startswith("multipart/byteranges")
    assert b"01" in multi.content and b"89" in multi.content
    bad = tester.request("GET", cont + "/d", headers={"Range": "bytes=20-30"})
    assert bad.status_code == 416
    assert bad.headers["Content-Range"] == "bytes */10"


def test_conditional_get_answers_304_and_412(tester: Client, cont: str):
    etag = tester.request("PUT", cont + "/d", data=b"data").headers["ETag"]
    assert tester.request("GET", cont + "/d", headers={"If-None-Match": etag}).status_code == 304
    assert tester.request("GET", cont + "/d", headers={"If-Match": "nope"}).status_code == 412
    assert tester.request("GET", cont + "/d", headers={"If-Match": etag}).content == b"data"
    later = "Thu, 01 Jan 2099 00:00:00 GMT"
    assert (
        tester.request("GET", cont + "/d", headers={"If-Modified-Since": later}).status_code == 304
    )
    earlier = "Thu, 01 Jan 2015 00:00:00 GMT"
    assert (
        tester.request("GET", cont + "/d", headers={"If-Unmodified-Since": earlier}).status_code
        == 412
    )


# --- copy, expiry --------------------------------------------------------------------------------
def test_copy_and_x_copy_from_keep_or_refresh_metadata(tester: Client, cont: str):
    tester.request("PUT", cont + "/src", data=b"payload", headers={"X-Object-Meta-A": "1"})
    copied = tester.request("COPY", cont + "/src", headers={"Destination": f"{cont}/dst"})
    assert copied.status_code == 201
    assert copied.headers["X-Copied-From"] == f"{cont}/src"
    dst = tester.request("GET", cont + "/dst")
    assert (dst.content, dst.headers["X-Object-Meta-A"]) == (b"payload", "1")
    fresh = tester.request("PUT", cont + "/fresh", data=b"",
                           headers={"X-Copy-From": f"{cont}/src", "X-Fresh-Metadata": "true",
                                    "X-Object-Meta-B": "2"})  # fmt: skip
    assert fresh.status_code == 201
    headers = tester.request("HEAD", cont + "/fresh").headers
    assert headers["X-Object-Meta-B"] == "2" and "X-Object-Meta-A" not in headers
    bad = tester.request("PUT", cont + "/x", data=b"", headers={"X-Copy-From": "no-slash"})
    assert bad.status_code == 412
    missing = tester.request("PUT", cont + "/x", data=b"", headers={"X-Copy-From": f"{cont}/none"})
    assert missing.status_code == 404


def test_large_copy_streams_the_whole_body(tester: Client, cont: str):
    data = bytes(range(256)) * 4096 * 3  # 3 MiB
    tester.request("PUT", cont + "/big", data=data)
    assert (
        tester.request("COPY", cont + "/big", headers={"Destination": f"{cont}/big2"}).status_code
        == 201
    )
    assert tester.request("GET", cont + "/big2").content == data


def test_an_object_with_x_delete_after_disappears(tester: Client, cont: str):
    assert (
        tester.request("PUT", cont + "/tmp", data=b"x", headers={"X-Delete-After": "1"}).status_code
        == 201
    )
    assert "X-Delete-At" in tester.request("HEAD", cont + "/tmp").headers
    time.sleep(2.1)
    assert tester.request("GET", cont + "/tmp").status_code == 404


# --- listings ----------------------------------------------------------------------------------
def test_listings_with_every_parameter_in_every_format(tester: Client, cont: str):
    for name in ("a/1", "a/2", "b", "c/x/y", "d"):
        tester.request("PUT", f"{cont}/{name}", data=name.encode())
    names = lambda **params: tester.request("GET", cont, params=params).text.split()  # noqa: E731
    assert names() == ["a/1", "a/2", "b", "c/x/y", "d"]
    assert names(prefix="a/") == ["a/1", "a/2"]
    assert names(delimiter="/") == ["a/", "b", "c/", "d"]
    assert names(marker="b") == ["c/x/y", "d"]
    assert names(end_marker="b") == ["a/1", "a/2"]
    assert names(limit="2") == ["a/1", "a/2"]
    assert names(reverse="true") == ["d", "c/x/y", "b", "a/2", "a/1"]
    rows = tester.request("GET", cont, params={"format": "json"}).json()
    assert rows[0]["name"] == "a/1" and rows[0]["bytes"] == 3
    assert rows[0]["hash"] == hashlib.md5(b"a/1").hexdigest()
    by_accept = tester.request("GET", cont, headers={"Accept": "application/json"})
    assert by_accept.headers["Content-Type"].startswith("application/json")
    xml = tester.request("GET", cont, params={"format": "xml", "delimiter": "/"})
    root = ET.fromstring(xml.content)
    assert root.tag == "container" and root.get("name") == cont
    assert [e.findtext("name") for e in root] == ["a/", "b", "c/", "d"]
    account = tester.request("GET", "", params={"format": "json", "prefix": cont}).json()
    assert account[0]["name"] == cont  # counts reach the account later (container updater)


def test_an_empty_plain_listing_is_204_and_json_is_an_empty_array(tester: Client, cont: str):
    assert tester.request("GET", cont).status_code == 204
    answer = tester.request("GET", cont, params={"format": "json"})
    assert (answer.status_code, answer.json()) == (200, [])


# --- ACLs ----------------------------------------------------------------------------------------
def test_container_acls_across_accounts(aio: AioCluster, tester: Client, cont: str):
    other = Client(aio, "test2:tester2", "testing2")
    tester.request("PUT", cont + "/o", data=b"shared")
    path = f"{tester.storage_url}/{cont}/o"
    get = lambda client: client.http.get(path, headers={"X-Auth-Token": client.token})  # noqa: E731
    assert get(other).status_code == 403
    tester.request("POST", cont, headers={"X-Container-Read": "test2:tester2"})
    assert get(other).content == b"shared"
    put = other.http.put(path + "2", data=b"w", headers={"X-Auth-Token": other.token})
    assert put.status_code == 403
    tester.request("POST", cont, headers={"X-Container-Write": "test2"})
    put = other.http.put(path + "2", data=b"w", headers={"X-Auth-Token": other.token})
    assert put.status_code == 201


def test_public_read_acl_and_rlistings(aio: AioCluster, tester: Client, cont: str):
    tester.request("PUT", cont + "/o", data=b"public")
    url = f"{tester.storage_url}/{cont}"
    assert requests.get(url + "/o").status_code == 401
    tester.request("POST", cont, headers={"X-Container-Read": ".r:*"})
    assert requests.get(url + "/o").content == b"public"
    assert requests.get(url).status_code == 401  # listing needs .rlistings
    tester.request("POST", cont, headers={"X-Container-Read": ".r:*,.rlistings"})
    assert requests.get(url).text.split() == ["o"]
    assert requests.put(url + "/p", data=b"x").status_code == 401


def test_non_admin_user_needs_an_acl_and_cannot_set_one(aio: AioCluster, tester: Client, cont: str):
    limited = Client(aio, "test:tester3", "testing3")
    assert limited.request("GET", cont).status_code == 403
    assert (
        limited.request("POST", cont, headers={"X-Container-Read": "test:tester3"}).status_code
        == 403
    )
    tester.request("POST", cont, headers={"X-Container-Write": "test:tester3",
                                          "X-Container-Read": "test:tester3"})  # fmt: skip
    limited.request("POST", cont, headers={"X-Container-Read": ".r:*"})  # dropped: not an owner
    assert tester.request("HEAD", cont).headers["X-Container-Read"] == "test:tester3"


# --- info, healthcheck -------------------------------------------------------------------------
def test_info_publishes_constraints_and_policies(aio: AioCluster):
    info = requests.get(aio.url + "/info").json()
    assert info["swift"]["max_file_size"] == 5 * 2**30 + 2
    assert info["swift"]["container_listing_limit"] == 10_000
    assert [p["name"] for p in info["swift"]["policies"]] == ["gold", "silver"]
    assert "tempauth" in info


def test_healthcheck_is_ok(aio: AioCluster):
    answer = requests.get(aio.url + "/healthcheck")
    assert (answer.status_code, answer.text) == (200, "OK")


def test_account_head_of_a_new_account_reads_empty(aio: AioCluster):
    admin = Client(aio, "test5:tester5", "testing5")  # not an admin: cannot read its own account
    assert admin.request("HEAD").status_code == 403
    fresh = Client(aio, "test2:tester2", "testing2")
    answer = fresh.request("HEAD")
    assert answer.status_code == 204
    assert json.loads(json.dumps(dict(answer.headers)))["X-Account-Container-Count"].isdigit()


def test_a_zero_byte_object_round_trips(tester: Client, cont: str):
    put = tester.request("PUT", cont + "/empty", data=b"")
    assert (put.status_code, put.headers["ETag"]) == (201, hashlib.md5(b"").hexdigest())
    get = tester.request("GET", cont + "/empty")
    assert (get.status_code, get.content, get.headers["Content-Length"]) == (200, b"", "0")


def test_changing_a_containers_policy_is_409_and_bad_policy_is_400(tester: Client, cont: str):
    assert tester.request("PUT", cont, headers={"X-Storage-Policy": "silver"}).status_code == 409
    assert tester.request("PUT", cont, headers={"X-Storage-Policy": "nope"}).status_code == 400
    assert tester.request("PUT", cont).status_code == 202  # no policy named: the existing one


def test_account_put_and_delete_are_for_reseller_admins_and_off_by_default(
    aio: AioCluster, tester: Client
):
    assert tester.request("PUT").status_code == 403  # auth first, as Swift
    reseller = Client(aio, "admin:admin", "admin")
    url = tester.storage_url
    for method in ("PUT", "DELETE"):
        answer = reseller.http.request(method, url, headers={"X-Auth-Token": reseller.token})
        assert answer.status_code == 405  # allow_account_management is off


def _first_status_line(tester: Client, path: str, headers: dict[str, str]) -> bytes:
    """Send only the headers of a PUT with ``Expect: 100-continue``; the first status line."""
    url = urllib.parse.urlsplit(f"{tester.storage_url}/{path}")
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(f"PUT {url.path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {tester.token}\r\n"
                     f"Content-Length: 5\r\nExpect: 100-continue\r\n{lines}\r\n".encode())  # fmt: skip
        return sock.recv(4096).split(b"\r\n", 1)[0]


def test_expect_100_continue_is_answered_only_for_an_acceptable_upload(tester: Client, cont: str):
    assert _first_status_line(tester, f"{cont}/o", {}) == b"HTTP/1.1 100 Continue"
    assert _first_status_line(tester, "missing-container-x/o", {}).startswith(b"HTTP/1.1 404")
    tester.request("PUT", cont + "/exists", data=b"12345")
    refused = _first_status_line(tester, f"{cont}/exists", {"If-None-Match": "*"})
    assert refused.startswith(b"HTTP/1.1 412")


def test_non_ascii_metadata_is_the_same_in_head_get_and_listings_headers(tester: Client, cont: str):
    """UTF-8 header values pass through the nodes unchanged: HEAD (a whole backend exchange)
    and GET (a stream) must agree byte for byte, and so must container and account HEADs."""
    value = "café ☕".encode()
    put = tester.request("PUT", cont + "/o", data=b"body", headers={"X-Object-Meta-Color": value})
    assert put.status_code == 201
    head = tester.request("HEAD", cont + "/o")
    get = tester.request("GET", cont + "/o")
    assert head.headers["X-Object-Meta-Color"].encode("latin-1") == value
    assert get.headers["X-Object-Meta-Color"].encode("latin-1") == value
    assert tester.request("POST", cont, headers={"X-Container-Meta-Color": value}).ok
    container = tester.request("HEAD", cont)
    assert container.headers["X-Container-Meta-Color"].encode("latin-1") == value
