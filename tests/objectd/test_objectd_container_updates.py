"""Container updates from object writes, and async pendings when they cannot be delivered.

Method: objectd updates itself (it is also the container server) or a container server that is
down (a closed port) or hung (a socket that accepts and never answers); the async_pending files
are then read back with ``objectd.async_pending``.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from objectd_helpers import md5, object_put_headers, ts

from objectd.async_pending import list_async_pendings, load_async_pending


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _target(host: str, partition: int = 9, device: str = "sda") -> dict[str, str]:
    return {
        "X-Container-Host": host,
        "X-Container-Device": device,
        "X-Container-Partition": str(partition),
    }


def _listing(process, container: str) -> list[dict]:
    response = process.request("GET", f"/sda/9/AUTH_u/{container}")
    assert response.status_code == 200
    return response.json()


def test_put_and_delete_update_the_container_server(objectd, unique):
    assert (
        objectd.request("PUT", f"/sda/9/AUTH_u/{unique}", headers={"X-Timestamp": ts()}).status_code
        == 201
    )
    me = _target(f"127.0.0.1:{objectd.port}")
    body = b"listed"
    headers = object_put_headers(**me, **{"Content-Type": "text/x-listed"})
    assert (
        objectd.request(
            "PUT", f"/sdb/1/AUTH_u/{unique}/obj", data=body, headers=headers
        ).status_code
        == 201
    )
    (row,) = _listing(objectd, unique)
    assert (row["name"], row["bytes"], row["hash"], row["content_type"]) == (
        "obj",
        6,
        md5(body),
        "text/x-listed",
    )
    response = objectd.request(
        "DELETE", f"/sdb/1/AUTH_u/{unique}/obj", headers={"X-Timestamp": ts(), **me}
    )
    assert response.status_code == 204
    assert _listing(objectd, unique) == []


def test_container_update_overrides(objectd, unique):
    objectd.request("PUT", f"/sda/9/AUTH_u/{unique}", headers={"X-Timestamp": ts()})
    headers = object_put_headers(
        **_target(f"127.0.0.1:{objectd.port}"),
        **{
            "X-Object-Sysmeta-Container-Update-Override-Etag": "from-sysmeta",
            "X-Backend-Container-Update-Override-Size": "12345",
        },
    )
    objectd.request("PUT", f"/sdb/1/AUTH_u/{unique}/slo", data=b"manifest", headers=headers)
    (row,) = _listing(objectd, unique)
    assert row["hash"] == "from-sysmeta" and row["bytes"] == 12345


def test_an_unreachable_container_server_leaves_an_async_pending(fresh_objectd):
    process = fresh_objectd
    dead = f"127.0.0.1:{_free_port()}"
    stamp = ts()
    headers = object_put_headers(stamp, **_target(dead))
    response = process.request("PUT", "/sda/1/AUTH_u/box/obj", data=b"x" * 10, headers=headers)
    assert response.status_code == 201
    ((policy, path),) = list(list_async_pendings(process.layout, "sda"))
    assert policy == 0
    assert path.endswith(f"{process.layout.hash_of('AUTH_u', 'box', 'obj')}-{stamp}")
    update = load_async_pending(path)
    assert (update.op, update.account, update.container, update.obj) == (
        "PUT",
        "AUTH_u",
        "box",
        "obj",
    )
    assert update.container_partition == 9
    assert update.headers["X-Size"] == "10" and update.headers["X-Timestamp"] == stamp
    assert update.headers["X-Etag"] == md5(b"x" * 10)


def test_a_delete_update_that_fails_is_saved_too_under_its_policy(fresh_objectd):
    process = fresh_objectd
    headers = {
        "X-Timestamp": ts(),
        "X-Backend-Storage-Policy-Index": "1",
        **_target(f"127.0.0.1:{_free_port()}"),
    }
    assert process.request("DELETE", "/sda/1/AUTH_u/box/gone", headers=headers).status_code == 404
    ((policy, path),) = list(list_async_pendings(process.layout, "sda"))
    assert policy == 1 and "/async_pending-1/" in path
    assert load_async_pending(path).op == "DELETE"


@pytest.fixture
def hung_server():
    """A TCP port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for sock in accepted:
        sock.close()
    listener.close()


def test_a_hung_container_server_costs_at_most_the_update_timeout(tmp_path, hung_server):
    from objectd_harness import start_objectd

    process = start_objectd(tmp_path, container_update_timeout_s=0.5)
    try:
        me = f"127.0.0.1:{process.port}"
        process.request("PUT", "/sda/9/AUTH_u/box", headers={"X-Timestamp": ts()})
        headers = object_put_headers(
            **{
                "X-Container-Host": f"{me},{hung_server}",
                "X-Container-Device": "sda,sda",
                "X-Container-Partition": "9",
            }
        )
        started = time.monotonic()
        response = process.request("PUT", "/sda/1/AUTH_u/box/obj", data=b"y", headers=headers)
        elapsed = time.monotonic() - started
        assert response.status_code == 201
        assert elapsed < 2.0, elapsed
        assert [row["name"] for row in _listing(process, "box")] == ["obj"]  # the good one landed
        assert len(list(list_async_pendings(process.layout, "sda"))) == 1  # the hung one is saved
    finally:
        process.stop()


@pytest.mark.parametrize(
    "bad",
    [
        {
            "X-Container-Host": "127.0.0.1:1,127.0.0.1:2",
            "X-Container-Device": "sda",
            "X-Container-Partition": "1",
        },
        {
            "X-Container-Host": "127.0.0.1:1",
            "X-Container-Device": "sda",
            "X-Container-Partition": "x",
        },
        {"X-Container-Host": "nohost", "X-Container-Device": "sda", "X-Container-Partition": "1"},
    ],
)
def test_malformed_container_targets_are_400_before_anything_is_written(objectd, unique, bad):
    response = objectd.request(
        "PUT", f"/sda/1/AUTH_u/c/{unique}", data=b"x", headers=object_put_headers(**bad)
    )
    assert response.status_code == 400
    assert objectd.request("HEAD", f"/sda/1/AUTH_u/c/{unique}").status_code == 404
