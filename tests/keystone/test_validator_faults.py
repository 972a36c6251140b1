"""KeystoneValidator against failures a real Keystone cannot be made to produce on demand.

Method: FakeKeystone, an in-process aiohttp server named as the fake it is, scripted per test;
time is virtual (ManualClock) where a test needs hours to pass. Everything a real Keystone can do
is tested against the real one in test_validator.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from shoal.clock import ManualClock
from shoal.keystone import KeystoneConfig, KeystoneUnavailable, KeystoneValidator


def keystone_time(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(epoch_s))


def token_body(expires_at: float) -> dict:
    return {
        "token": {
            "user": {"id": "u1", "name": "demo", "domain": {"id": "default", "name": "Default"}},
            "project": {"id": "p1", "name": "demo", "domain": {"id": "default", "name": "Default"}},
            "roles": [{"id": "r1", "name": "member"}],
            "methods": ["password"],
            "audit_ids": ["a1"],
            "issued_at": keystone_time(expires_at - 3600),
            "expires_at": keystone_time(expires_at),
        }
    }


class FakeKeystone:
    """A FAKE Keystone: POST /v3/auth/tokens answers ``issue_statuses`` in turn (201 = a service
    token valid ``service_lifetime_s``), GET answers ``validate_status`` with ``validate_body``."""

    def __init__(
        self,
        *,
        issue_statuses: list[int] | None = None,
        validate_status: int = 200,
        validate_body: bytes | None = None,
        service_lifetime_s: float = 3600,
        validate_delay_s: float = 0.0,
    ):
        self.issue_statuses = list(issue_statuses or [201])
        self.validate_status = validate_status
        self.validate_body = validate_body
        self.service_lifetime_s = service_lifetime_s
        self.validate_delay_s = validate_delay_s
        self.issued = 0
        self.app = web.Application()
        self.app.router.add_post("/v3/auth/tokens", self.issue)
        self.app.router.add_get("/v3/auth/tokens", self.validate)

    async def issue(self, request: web.Request) -> web.Response:
        status = self.issue_statuses[min(self.issued, len(self.issue_statuses) - 1)]
        self.issued += 1
        if status != 201:
            return web.Response(status=status, text="scripted failure")
        body = token_body(time.time() + self.service_lifetime_s)
        return web.json_response(body, status=201, headers={"X-Subject-Token": f"svc{self.issued}"})

    async def validate(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.validate_delay_s)
        if self.validate_body is None:
            return web.json_response(token_body(time.time() + 7200), status=self.validate_status)
        return web.Response(status=self.validate_status, body=self.validate_body)


@contextlib.asynccontextmanager
async def serve(fake: FakeKeystone) -> AsyncIterator[str]:
    runner = web.AppRunner(fake.app, shutdown_timeout=0.5)  # do not wait for slow handlers
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "body"),
    [(503, b"Service Unavailable"), (500, b"{}"), (200, b"<html>not json"), (200, b"{}")],
)
def test_keystone_5xx_or_nonsense_is_unavailable_and_not_cached(status: int, body: bytes):
    async def scenario():
        fake = FakeKeystone(validate_status=status, validate_body=body)
        async with serve(fake) as url:
            config = KeystoneConfig(auth_url=url, username="u", password="p")
            async with aiohttp.ClientSession() as session:
                validator = KeystoneValidator(config, session)
                for _ in range(2):
                    with pytest.raises(KeystoneUnavailable):
                        await validator.validate("gAAAAABtoken")
                await validator.close()
                assert not session.closed  # a shared session belongs to the caller
                return validator.stats

    stats = asyncio.run(scenario())
    assert stats.keystone_requests == 2 and stats.negative_cache_hits == 0


def test_failed_renewal_keeps_the_service_token_until_it_expires():
    clock = ManualClock(time.time())

    async def scenario():
        fake = FakeKeystone(issue_statuses=[201, 503], service_lifetime_s=3600)
        async with serve(fake) as url:
            config = KeystoneConfig(auth_url=url, username="u", password="p", cache_ttl_s=0)
            async with KeystoneValidator(config, clock=clock) as validator:
                await validator.validate("gAAAAABuser")
                clock.advance(3600 - 60)  # past the renewal point, before expiry
                identity = await validator.validate("gAAAAABuser")  # renewal fails: old token
                assert identity.project_id == "p1"
                assert validator.stats.service_token_fetches == 2
                clock.advance(120)  # the old token has now expired too
                with pytest.raises(KeystoneUnavailable):
                    await validator.validate("gAAAAABuser")
                return validator.stats

    stats = asyncio.run(scenario())
    assert stats.service_token_fetches == 3 and stats.keystone_requests == 2


def test_a_cancelled_caller_does_not_cancel_the_shared_validation_of_the_others():
    async def scenario():
        fake = FakeKeystone(validate_delay_s=0.5)
        async with serve(fake) as url:
            config = KeystoneConfig(auth_url=url, username="u", password="p")
            async with KeystoneValidator(config) as validator:
                callers = [asyncio.create_task(validator.validate("gAAAAABuser")) for _ in range(3)]
                await asyncio.sleep(0.2)
                callers[0].cancel()  # e.g. its client hung up
                results = await asyncio.gather(*callers, return_exceptions=True)
                return results, validator.stats

    results, stats = asyncio.run(scenario())
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1].project_id == results[2].project_id == "p1"
    assert stats.keystone_requests == 1


def test_close_cancels_validations_in_flight_and_refuses_new_ones():
    async def scenario():
        fake = FakeKeystone(validate_delay_s=5.0)
        async with serve(fake) as url:
            config = KeystoneConfig(auth_url=url, username="u", password="p")
            validator = KeystoneValidator(config)
            caller = asyncio.create_task(validator.validate("gAAAAABuser"))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            await validator.close()
            with pytest.raises(asyncio.CancelledError):
                await caller
            assert time.monotonic() - started < 2.0
            with pytest.raises(RuntimeError):
                await validator.validate("gAAAAABuser")

    asyncio.run(scenario())
