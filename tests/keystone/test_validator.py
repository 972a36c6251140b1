"""KeystoneValidator against a real Keystone 30 (tests.support.keystone): what each token yields.

Method: real tokens from the session's Keystone and from replicas (same database and keys) with
short token lifetimes or that a test stops; cache behaviour is read from the validator's own
counters (``stats``), never from mocks. Failures a real Keystone cannot produce on demand (5xx,
nonsense bodies, a renewal refused while validation works) are in test_validator_faults.py.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
import uvloop

from shoal.clock import ManualClock
from shoal.keystone import (
    AuthenticationFailed,
    InvalidToken,
    KeystoneUnavailable,
    KeystoneValidator,
    ServiceCredentialsRejected,
    identity_from_token_body,
    issue_token,
)
from tests.support.keystone import Keystone, KeystoneProcess

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop, the loop Shoal's daemons use."""
    return uvloop.run(coro)


# ---------------------------------------------------------------------------- valid tokens


def test_member_token_gives_the_identity_of_its_user_project_and_roles(keystone: Keystone):
    token, _ = keystone.issue_token("demo")

    async def scenario():
        async with KeystoneValidator(keystone.keystone_config()) as validator:
            return await validator.validate(token)

    identity = run(scenario())
    demo = keystone.demo
    assert identity.user_id == demo.user_id and identity.user_name == "demo"
    assert identity.project_id == demo.project_id and identity.project_name == "demo"
    assert identity.user_domain_id == "default" and identity.project_domain_id == "default"
    assert identity.scope == "project"
    assert {"member", "reader"} <= identity.roles  # member implies reader
    assert "admin" not in identity.roles and "service" not in identity.roles
    assert identity.methods == ("password",)
    assert 3000 < identity.expires_at - time.time() <= 3600


def test_reader_token_carries_reader_but_not_member(keystone: Keystone):
    token, _ = keystone.issue_token("reader")

    async def scenario():
        async with KeystoneValidator(keystone.keystone_config()) as validator:
            return await validator.validate(token)

    identity = run(scenario())
    assert identity.project_id == keystone.demo.project_id
    assert identity.roles == frozenset({"reader"})
    assert identity.has_any_role(["Reader"]) and not identity.has_any_role(["member", "admin"])


def test_tokens_of_two_projects_name_their_own_project(keystone: Keystone):
    demo_token, _ = keystone.issue_token("demo")
    other_token, _ = keystone.issue_token("other")

    async def scenario():
        async with KeystoneValidator(keystone.keystone_config()) as validator:
            return await validator.validate(demo_token), await validator.validate(other_token)

    demo, other = run(scenario())
    assert demo.project_id == keystone.demo.project_id
    assert other.project_id == keystone.other.project_id != demo.project_id
    assert other.user_id == keystone.other.user_id


def test_unscoped_token_is_valid_with_no_project_and_no_roles(keystone: Keystone):
    token, _ = keystone.issue_token("demo", project=None)

    async def scenario():
        async with KeystoneValidator(keystone.keystone_config()) as validator:
            return await validator.validate(token)

    identity = run(scenario())
    assert identity.scope == "unscoped" and identity.project_id is None
    assert identity.roles == frozenset()


def test_issue_token_returns_the_token_and_a_body_that_parses_to_the_same_identity(
    keystone: Keystone,
):
    async def scenario():
        token, body = await issue_token(
            keystone.auth_url, "other", keystone.other.password, "other"
        )
        async with KeystoneValidator(keystone.keystone_config()) as validator:
            return identity_from_token_body(body), await validator.validate(token)

    issued, validated = run(scenario())
    assert issued.project_id == validated.project_id == keystone.other.project_id
    assert issued.roles == validated.roles
    assert issued.expires_at == validated.expires_at


def test_issue_token_with_a_wrong_password_raises_authentication_failed(keystone: Keystone):
    with pytest.raises(AuthenticationFailed):
        run(issue_token(keystone.auth_url, "demo", "not-the-password", "demo"))


# -------------------------------------------------------------------------- invalid tokens


def test_garbage_token_is_invalid_after_asking_keystone(keystone: Keystone):
    async def scenario():
        async with KeystoneValidator(keystone.keystone_config()) as validator:
            with pytest.raises(InvalidToken):
                await validator.validate("gAAAAABgarbage-but-plausible")
            return validator.stats

    stats = run(scenario())
    assert stats.keystone_requests == 1 and stats.invalid == 1


@pytest.mark.parametrize(
    "token", ["", "has space", "tab\there", "caf\u00e9", "x" * 9000, "new\nline"]
)
def test_malformed_token_is_invalid_without_asking_keystone(keystone: Keystone, token: str):
    async def scenario():
        async with KeystoneValidator(keystone.keystone_config()) as validator:
            with pytest.raises(InvalidToken):
                await validator.validate(token)
            return validator.stats

    stats = run(scenario())
    assert stats.keystone_requests == 0 and stats.service_token_fetches == 0


def test_revoked_token_is_refused_once_the_cache_ttl_has_passed(keystone: Keystone):
    token, _ = keystone.issue_token("demo")
    cache_ttl_s = 1.0

    async def scenario():
        config = keystone.keystone_config(cache_ttl_s=cache_ttl_s, negative_cache_ttl_s=30.0)
        async with KeystoneValidator(config) as validator:
            await validator.validate(token)
            revoked_at = time.monotonic()
            keystone.revoke_token(token)
            if time.monotonic() - revoked_at < cache_ttl_s * 0.8:
                await validator.validate(token)  # bounded staleness: still the cached answer
                assert validator.stats.cache_hits == 1
            await asyncio.sleep(max(0.0, revoked_at + cache_ttl_s - time.monotonic()))
            with pytest.raises(InvalidToken):
                await validator.validate(token)
            assert validator.stats.keystone_requests == 2
            with pytest.raises(InvalidToken):  # the refusal is itself cached (briefly)
                await validator.validate(token)
            return validator.stats

    stats = run(scenario())
    assert stats.negative_cache_hits == 1 and stats.keystone_requests == 2


def test_revoked_token_is_refused_at_once_with_the_cache_off(keystone: Keystone):
    token, _ = keystone.issue_token("other")

    async def scenario():
        async with KeystoneValidator(keystone.keystone_config(cache_ttl_s=0)) as validator:
            await validator.validate(token)
            keystone.revoke_token(token)
            with pytest.raises(InvalidToken):
                await validator.validate(token)

    run(scenario())


def test_negative_result_is_forgotten_after_negative_cache_ttl(keystone: Keystone):
    async def scenario():
        config = keystone.keystone_config(negative_cache_ttl_s=0.5)
        async with KeystoneValidator(config) as validator:
            for _ in range(2):
                with pytest.raises(InvalidToken):
                    await validator.validate("gAAAAABnot-a-token")
            assert validator.stats.keystone_requests == 1
            await asyncio.sleep(0.6)
            with pytest.raises(InvalidToken):
                await validator.validate("gAAAAABnot-a-token")
            return validator.stats

    stats = run(scenario())
    assert stats.keystone_requests == 2 and stats.negative_cache_hits == 1


def test_expired_token_is_invalid_and_never_served_from_cache_past_expires_at(
    keystone: Keystone, short_lived: KeystoneProcess
):
    token, body = keystone.issue_token("demo", auth_url=short_lived.auth_url)
    expires_at = identity_from_token_body(body).expires_at

    async def scenario():
        # validated by the session's Keystone: fernet tokens carry their own expiry
        async with KeystoneValidator(keystone.keystone_config(cache_ttl_s=300)) as validator:
            identity = await validator.validate(token)
            assert identity.expires_at == expires_at
            await validator.validate(token)
            assert validator.stats.cache_hits == 1 and validator.stats.keystone_requests == 1
            await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.1)
            with pytest.raises(InvalidToken):
                await validator.validate(token)
            return validator.stats

    stats = run(scenario())
    assert stats.keystone_requests == 2  # the cache did not answer past expires_at


# ---------------------------------------------------------------------------------- cache


def test_second_validation_is_served_from_the_cache(keystone: Keystone):
    token, _ = keystone.issue_token("demo")

    async def scenario():
        async with KeystoneValidator(keystone.keystone_config()) as validator:
            first = await validator.validate(token)
            second = await validator.validate(token)
            return first, second, validator.stats

    first, second, stats = run(scenario())
    assert first == second
    assert stats.keystone_requests == 1 and stats.cache_hits == 1 and stats.validations == 2
    assert stats.service_token_fetches == 1


def test_concurrent_validations_of_one_token_share_one_keystone_request(keystone: Keystone):
    token, _ = keystone.issue_token("demo")

    async def scenario():
        async with KeystoneValidator(keystone.keystone_config()) as validator:
            identities = await asyncio.gather(*(validator.validate(token) for _ in range(20)))
            return identities, validator.stats

    identities, stats = run(scenario())
    assert len(set(identities)) == 1
    assert stats.keystone_requests == 1 and stats.service_token_fetches == 1


def test_cache_holds_at_most_cache_entries_max_tokens(keystone: Keystone):
    tokens = [keystone.issue_token("demo")[0] for _ in range(3)]

    async def scenario():
        async with KeystoneValidator(keystone.keystone_config(cache_entries_max=2)) as validator:
            for token in tokens:
                await validator.validate(token)
            await validator.validate(tokens[0])  # evicted (least recently used): asks again
            await validator.validate(tokens[2])  # still cached
            return validator.stats

    stats = run(scenario())
    assert stats.keystone_requests == 4 and stats.cache_hits == 1


# ------------------------------------------------------------------------- service token


def test_service_token_is_renewed_before_it_expires(keystone: Keystone, short_lived):
    token, _ = keystone.issue_token("demo")

    async def scenario():
        config = keystone.keystone_config(auth_url=short_lived.auth_url, cache_ttl_s=0)
        async with KeystoneValidator(config) as validator:
            await validator.validate(token)
            # the service token is renewed at half its lifetime
            await asyncio.sleep(short_lived.token_expiration_s / 2 + 0.5)
            await validator.validate(token)
            return validator.stats

    stats = run(scenario())
    assert stats.service_token_fetches == 2
    assert stats.keystone_requests == 2  # renewed ahead: no request was refused with 401


def test_service_token_refused_with_401_is_replaced_and_the_request_retried(
    keystone: Keystone, short_lived: KeystoneProcess
):
    """The validator's clock is frozen (an injected ManualClock), so it keeps using a service
    token that the real Keystone has meanwhile expired: Keystone answers 401, the validator
    re-authenticates once and retries, and the caller never notices."""
    token, _ = keystone.issue_token("demo")  # from the main instance: valid for an hour
    clock = ManualClock(time.time())

    async def scenario():
        config = keystone.keystone_config(auth_url=short_lived.auth_url, cache_ttl_s=0)
        async with KeystoneValidator(config, clock=clock) as validator:
            await validator.validate(token)
            await asyncio.sleep(
                short_lived.token_expiration_s + 0.5
            )  # real time: the token expires
            identity = await validator.validate(token)
            return identity, validator.stats

    identity, stats = run(scenario())
    assert identity.user_id == keystone.demo.user_id
    assert stats.service_token_fetches == 2
    assert stats.keystone_requests == 3  # ok, 401, ok after re-authentication


def test_wrong_service_password_is_unavailable_not_the_clients_fault(keystone: Keystone):
    token, _ = keystone.issue_token("demo")

    async def scenario():
        async with KeystoneValidator(keystone.keystone_config(password="wrong")) as validator:
            await validator.validate(token)

    with pytest.raises(ServiceCredentialsRejected) as raised:
        run(scenario())
    assert isinstance(raised.value, KeystoneUnavailable)


def test_service_user_without_the_service_role_is_rejected_as_service_credentials(
    keystone: Keystone,
):
    token, _ = keystone.issue_token("other")
    demo = keystone.demo

    async def scenario():
        config = keystone.keystone_config(
            username=demo.name, password=demo.password, project_name=demo.project_name
        )
        async with KeystoneValidator(config) as validator:
            await validator.validate(token)

    with pytest.raises(ServiceCredentialsRejected):  # Keystone answers 403
        run(scenario())


# ------------------------------------------------------------------------ Keystone outage


def test_keystone_paused_then_stopped_is_unavailable_while_cached_tokens_still_work(
    keystone: Keystone, doomed: KeystoneProcess
):
    cached, _ = keystone.issue_token("demo")
    fresh, _ = keystone.issue_token("other")

    async def scenario():
        # timeout: 3 s, so that the first (real) exchange succeeds on a loaded 2-core machine
        config = keystone.keystone_config(auth_url=doomed.auth_url, timeout_s=3.0)
        async with KeystoneValidator(config) as validator:
            await validator.validate(cached)
            doomed.pause()
            started = time.monotonic()
            with pytest.raises(KeystoneUnavailable):
                await validator.validate(fresh)  # no answer: the timeout fires
            assert 2.9 < time.monotonic() - started < 10.0
            assert (await validator.validate(cached)).user_id == keystone.demo.user_id
            doomed.stop()
            with pytest.raises(KeystoneUnavailable):
                await validator.validate(fresh)  # connection refused; never cached as invalid
            return validator.stats

    stats = run(scenario())
    assert stats.unavailable == 2 and stats.invalid == 0 and stats.negative_cache_hits == 0


def test_keystone_down_from_the_start_is_unavailable(keystone: Keystone):
    with socket.socket() as probe:  # a loopback port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario():
        config = keystone.keystone_config(auth_url=f"http://127.0.0.1:{port}/v3", timeout_s=1.0)
        async with KeystoneValidator(config) as validator:
            for _ in range(3):
                with pytest.raises(KeystoneUnavailable):
                    await validator.validate("gAAAAABwhatever")
            return validator.stats

    stats = run(scenario())
    # after one failed fetch of the service token, the next requests fail fast for a second
    assert stats.service_token_fetches == 1 and stats.unavailable == 3


# ---------------------------------------------------------------------- other token scopes


def test_system_and_domain_scoped_tokens_say_so(keystone: Keystone):
    # bootstrap gives admin the admin role on the system; give it one on the Default domain
    status, _, _ = keystone.request(
        "PUT", f"/domains/default/users/{keystone.admin.user_id}/roles/{keystone.roles['admin']}"
    )
    assert status == 204
    system_token, _ = keystone.issue_token("admin", scope={"system": {"all": True}})
    domain_token, _ = keystone.issue_token("admin", scope={"domain": {"id": "default"}})

    async def scenario():
        async with KeystoneValidator(keystone.keystone_config()) as validator:
            return await validator.validate(system_token), await validator.validate(domain_token)

    system, domain = run(scenario())
    assert system.scope == "system" and system.system_scoped and system.project_id is None
    assert domain.scope == "domain" and domain.domain_id == "default" and domain.project_id is None
    assert "admin" in system.roles and "admin" in domain.roles
