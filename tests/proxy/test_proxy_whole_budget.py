"""The worker's budget of PUT bytes held whole (proxy.byte_budget, whole_put_buffer_bytes_max).

Method: ByteBudget on its own (plain arithmetic, the real class); then two proxies beside the
session's ``shoal aio`` (same rings and nodes) at DEBUG level, one with room for a 300 KB body
and one without. What must hold: with room the body is held whole (no "streamed" line), without
it streams; either way the object is stored intact; and the budget is back to zero after each
PUT, also after one that failed (so it cannot leak away under errors).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import requests

from proxy.byte_budget import ByteBudget
from tests.proxy.aio_harness import AioCluster, ProxyProcess

BODY = os.urandom(300_000)  # above SMALL_PUT_BYTES_MAX, below WHOLE_PUT_BYTES_MAX
STREAMED = "streamed, the whole-body budget is spent"


def test_a_budget_never_goes_above_its_max_nor_below_zero():
    budget = ByteBudget(1000)
    assert budget.take(600)
    assert not budget.take(500)  # would be 1100
    assert budget.take(400)
    budget.give_back(600)
    assert budget.bytes_used == 400
    with pytest.raises(ValueError):
        budget.give_back(401)
    with pytest.raises(ValueError):
        ByteBudget(-1)
    assert not ByteBudget(0).take(1)


@pytest.fixture(scope="module", params=[10 * len(BODY), 0], ids=["room-for-ten", "no-room"])
def proxy(request, aio: AioCluster, tmp_path_factory) -> Iterator[ProxyProcess]:
    process = ProxyProcess(
        tmp_path_factory.mktemp("budget-proxy"),
        {"ring_dir": str(aio.data / "rings"), "log_level": "DEBUG",
         "whole_put_buffer_bytes_max": request.param},
        {},
    ).start()  # fmt: skip
    try:
        yield process
    finally:
        process.stop()


def _login(proxy: ProxyProcess) -> tuple[str, str]:
    answer = requests.get(f"{proxy.url}/auth/v1.0", timeout=10,
                          headers={"X-Auth-User": "test:tester", "X-Auth-Key": "testing"})  # fmt: skip
    return answer.headers["X-Auth-Token"], answer.headers["X-Storage-Url"]


def test_a_body_is_held_whole_only_while_the_budget_has_room(proxy: ProxyProcess):
    token, url = _login(proxy)
    headers = {"X-Auth-Token": token}
    assert requests.put(f"{url}/budget", headers=headers, timeout=10).ok
    put = requests.put(f"{url}/budget/o", data=BODY, headers=headers, timeout=30)
    assert put.status_code == 201
    assert requests.get(f"{url}/budget/o", headers=headers, timeout=30).content == BODY
    time.sleep(0.2)  # the log line is written by another process
    streamed = STREAMED in proxy.log_path.read_text()
    assert streamed == (proxy.options["whole_put_buffer_bytes_max"] == 0)


def test_a_failed_put_gives_its_bytes_back(proxy: ProxyProcess):
    """A 422 (wrong ETag) ends the PUT by an exception: the bytes must still return, or a
    worker would soon stream everything. With room for exactly what ten bodies need, eleven
    failed PUTs followed by a good one must leave the good one held whole."""
    token, url = _login(proxy)
    headers = {"X-Auth-Token": token}
    assert requests.put(f"{url}/budget", headers=headers, timeout=10).ok
    for _ in range(11):
        bad = requests.put(f"{url}/budget/bad", data=BODY, timeout=30,
                           headers={**headers, "ETag": "0" * 32})  # fmt: skip
        assert bad.status_code == 422
    log_before = proxy.log_path.read_text().count(STREAMED)
    good = requests.put(f"{url}/budget/good", data=BODY, headers=headers, timeout=30)
    assert good.status_code == 201
    time.sleep(0.2)
    streamed_now = proxy.log_path.read_text().count(STREAMED) - log_before
    assert streamed_now == (1 if proxy.options["whole_put_buffer_bytes_max"] == 0 else 0)
