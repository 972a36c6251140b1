"""Keystone v3 token validation, shared by the proxy (Swift API) and blockd.

Public: :class:`KeystoneConfig`, :class:`Identity`, :class:`KeystoneValidator`,
:class:`ValidatorStats`, :func:`issue_token`, :func:`identity_from_token_body`, and the errors
:class:`KeystoneError`, :class:`InvalidToken`, :class:`KeystoneUnavailable`,
:class:`ServiceCredentialsRejected`, :class:`AuthenticationFailed`.
Internal: the service-token bookkeeping and response reading. Beside it:
:mod:`shoal.keystone_identity` (Identity and the parsing of token bodies, no I/O) and
:mod:`shoal.keystone_cache` (the LRU + TTL cache).

How a token is validated (what keystonemiddleware does, without its WSGI and eventlet baggage):
the service authenticates itself once with a password (``POST /v3/auth/tokens``) and keeps that
*service token*; each user token is then checked with ``GET /v3/auth/tokens?nocatalog``, with
``X-Auth-Token`` = the service token and ``X-Subject-Token`` = the user token. Keystone's default
policy lets a user with role ``service`` (or ``admin``) do this; ``HEAD`` is refused to ``service``,
hence ``GET``. ``?nocatalog`` cuts the answer from ~1.8 KB to ~0.6 KB: Shoal needs no catalog.

Errors are named by who is at fault: :class:`InvalidToken` is the client's (answer 401);
:class:`KeystoneUnavailable` is the outside world's (answer 503, never cached);
:class:`ServiceCredentialsRejected` (a kind of unavailable) means Keystone refuses the *service's*
own credentials or role, an operator error that must not be blamed on the client.

Caching: valid results for ``cache_ttl_s`` but never at or past the token's ``expires_at``;
invalid results for ``negative_cache_ttl_s`` only (a few seconds: enough to absorb a client
retrying a bad token in a loop, short enough that a token that was refused by mistake recovers
quickly). A revoked token is therefore accepted for at most ``cache_ttl_s`` after revocation,
the same bounded staleness keystonemiddleware has; lower ``cache_ttl_s`` to shorten it.
Concurrent validations of one token share a single Keystone request.

Use (an aiohttp app keeps one validator for its lifetime, e.g. in ``cleanup_ctx``)::

    async with KeystoneValidator(config) as validator:
        try:
            identity = await validator.validate(request.headers["X-Auth-Token"])
        except InvalidToken:
            ...  # 401 with WWW-Authenticate: Keystone uri="<auth_url>"
        except KeystoneUnavailable:
            ...  # 503
        account = f"AUTH_{identity.project_id}"; allowed = identity.has_any_role(["member"])
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp

from shoal.clock import Clock
from shoal.config import option
from shoal.keystone_cache import TokenCache
from shoal.keystone_identity import Identity, parse_time, parse_token_body
from shoal.units import KiB, MiB

__all__ = [
    "AuthenticationFailed",
    "Identity",
    "InvalidToken",
    "KeystoneConfig",
    "KeystoneError",
    "KeystoneUnavailable",
    "KeystoneValidator",
    "ServiceCredentialsRejected",
    "ValidatorStats",
    "identity_from_token_body",
    "issue_token",
    "v3_url",
]

log = logging.getLogger("shoal.keystone")

TOKEN_CHARS_MAX = 8 * KiB  # fernet tokens are <= 255 chars, JWS ~800; longer is garbage
RESPONSE_BYTES_MAX = 1 * MiB  # a nocatalog token body is ~600 B; a catalog body a few KB
SERVICE_TOKEN_REFRESH_MARGIN_S = 120.0  # renew this long before expiry (or at half-life)
SERVICE_FETCH_RETRY_DELAY_S = 1.0  # after a failed fetch, fail fast this long (no pile-up)
CONNECTIONS_MAX = 16  # connections to Keystone from one validator's own session
INFLIGHT_VALIDATIONS_MAX = 1024  # distinct tokens awaiting Keystone; beyond this, 503
ERROR_TEXT_CHARS_MAX = 200  # how much of a Keystone error body goes into a message

assert SERVICE_TOKEN_REFRESH_MARGIN_S > 0
assert INFLIGHT_VALIDATIONS_MAX >= CONNECTIONS_MAX


# ----------------------------------------------------------------------------------- errors


class KeystoneError(Exception):
    """Base class of everything this module raises."""


class InvalidToken(KeystoneError):
    """The client's token is not valid: garbage, expired, revoked, unknown. Answer 401."""


class KeystoneUnavailable(KeystoneError):
    """Keystone could not give an answer: down, timeout, 5xx, unparseable reply. Answer 503."""


class ServiceCredentialsRejected(KeystoneUnavailable):
    """Keystone refuses the service's own credentials or role (operator error). Answer 503."""


class AuthenticationFailed(KeystoneError):
    """:func:`issue_token`: Keystone refused these credentials (wrong password, user, scope)."""


# ----------------------------------------------------------------------------------- config


def v3_url(auth_url: str) -> str:
    """``auth_url`` normalised: ``http://h:5000``, ``…/v3`` and ``…/v3/`` all give ``…/v3``."""
    url = auth_url.rstrip("/")
    return url if url.endswith("/v3") else url + "/v3"


def _non_negative(value: float) -> bool:
    return value >= 0 and not math.isnan(value)


def _positive(value: float) -> bool:
    return value > 0 and not math.isnan(value)


@dataclass(frozen=True, repr=False)
class KeystoneConfig:
    """How a Shoal service reaches Keystone (a ``[keystone]`` TOML table)."""

    auth_url: str = option(
        "http://127.0.0.1:5000/v3", "Keystone identity endpoint; '/v3' is appended if missing"
    )
    username: str = option("", "service user that validates tokens (role 'service' suffices)")
    password: str = option("", "password of the service user")
    project_name: str = option("service", "project the service token is scoped to")
    user_domain_name: str = option("Default", "domain of the service user")
    project_domain_name: str = option("Default", "domain of the service project")
    cache_ttl_s: float = option(
        300.0,
        "seconds a valid token is cached (never past its expires_at); bounds revocation delay",
        check=_non_negative,
    )
    negative_cache_ttl_s: float = option(
        3.0, "seconds an invalid token is remembered as invalid", check=_non_negative
    )
    cache_entries_max: int = option(
        10_000, "most cached validations (LRU); 0 disables the cache", check=lambda v: v >= 0
    )
    timeout_s: float = option(5.0, "timeout of one request to Keystone", check=_positive)
    verify_tls: bool = option(True, "verify Keystone's TLS certificate (https auth_url)")
    ca_file: str = option("", "CA bundle for Keystone's certificate; '' = system store")

    @property
    def v3_url(self) -> str:
        """``auth_url`` normalised to end in ``/v3`` without a trailing slash."""
        return v3_url(self.auth_url)

    def __repr__(self) -> str:
        # the password must not end up in logs or tracebacks
        shown = ", ".join(
            f"{f.name}={'***' if f.name == 'password' else repr(getattr(self, f.name))}"
            for f in dataclasses.fields(self)
        )
        return f"KeystoneConfig({shown})"

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What aiohttp's ``ssl=`` wants for these settings (True = verify with system CAs)."""
        if not self.verify_tls:
            return False
        if self.ca_file:
            return ssl.create_default_context(cafile=self.ca_file)
        return True


# --------------------------------------------------------------------------------- identity


def identity_from_token_body(body: Any) -> Identity:
    """Build an :class:`Identity` from a Keystone ``{"token": {...}}`` document.

    Raises:
        KeystoneUnavailable: the document does not have the v3 token shape (Keystone's fault).
    """
    try:
        return parse_token_body(body)
    except ValueError as exc:
        raise KeystoneUnavailable(f"Keystone token body: {exc}") from None


# ------------------------------------------------------------------------------------- HTTP


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    """The response body, refusing more than RESPONSE_BYTES_MAX (Keystone is outside input)."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_any():
        total += len(chunk)
        if total > RESPONSE_BYTES_MAX:
            raise KeystoneUnavailable(f"Keystone reply larger than {RESPONSE_BYTES_MAX} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _excerpt(data: bytes) -> str:
    return data[:ERROR_TEXT_CHARS_MAX].decode("utf-8", "replace")


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise KeystoneUnavailable(f"Keystone reply is not JSON: {_excerpt(data)!r}") from None


async def issue_token(
    auth_url: str,
    username: str,
    password: str,
    project_name: str | None = None,
    *,
    user_domain_name: str = "Default",
    project_domain_name: str = "Default",
    session: aiohttp.ClientSession | None = None,
    timeout_s: float = 10.0,
    ssl_context: ssl.SSLContext | bool = True,
) -> tuple[str, dict[str, Any]]:
    """Get a token with password auth (project-scoped, or unscoped if ``project_name`` is None).

    For the validator's own service token, for blockd's clients, and for tests.

    Returns:
        ``(token, body)``: the ``X-Subject-Token`` and the JSON document ``{"token": {...}}``
        (with the catalog; feed it to :func:`identity_from_token_body` for the ids).

    Raises:
        AuthenticationFailed: Keystone refused the credentials or the scope (4xx).
        KeystoneUnavailable: Keystone is down, slow, answered 5xx or nonsense.
    """
    url = v3_url(auth_url) + "/auth/tokens"
    auth: dict[str, Any] = {
        "identity": {
            "methods": ["password"],
            "password": {
                "user": {
                    "name": username,
                    "domain": {"name": user_domain_name},
                    "password": password,
                }
            },
        }
    }
    if project_name is not None:
        auth["scope"] = {"project": {"name": project_name, "domain": {"name": project_domain_name}}}
    own_session = session is None
    http = session or aiohttp.ClientSession()
    try:
        async with http.post(
            url,
            json={"auth": auth},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            ssl=ssl_context,
        ) as response:
            data = await _read_bounded(response)
            status = response.status
            token = response.headers.get("X-Subject-Token", "")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise KeystoneUnavailable(f"POST {url}: {exc!r}") from exc
    finally:
        if own_session:
            await http.close()
    if status >= 500:
        raise KeystoneUnavailable(f"POST {url} -> {status}: {_excerpt(data)}")
    if status != 201 or not token:
        raise AuthenticationFailed(f"Keystone refused {username!r}: {status} {_excerpt(data)}")
    return token, _json(data)


# -------------------------------------------------------------------------------- validator


@dataclass
class ValidatorStats:
    """Counters, so tests and operators can see what the cache saves (mutable, live)."""

    validations: int = 0  # calls to validate()
    cache_hits: int = 0  # answered from the cache, valid
    negative_cache_hits: int = 0  # answered from the cache, invalid
    keystone_requests: int = 0  # GET /v3/auth/tokens sent
    service_token_fetches: int = 0  # POST /v3/auth/tokens for the service's own token
    invalid: int = 0  # InvalidToken raised (cached or not)
    unavailable: int = 0  # KeystoneUnavailable raised


@dataclass
class _ServiceToken:
    token: str
    refresh_at: float  # wall clock: fetch a new one from here on
    expires_at: float


class KeystoneValidator:
    """Validates user tokens against Keystone, with a bounded cache.

    Args:
        config: where Keystone is and the service's credentials.
        session: an aiohttp session to share (not closed by :meth:`close`); by default the
            validator makes its own on first use, limited to CONNECTIONS_MAX connections.
        clock: time source; ``ManualClock`` in tests of the cache logic.
    """

    def __init__(
        self,
        config: KeystoneConfig,
        session: aiohttp.ClientSession | None = None,
        *,
        clock: Clock | None = None,
    ):
        self.config = config
        self.stats = ValidatorStats()
        self._clock = clock or Clock()
        self._session = session
        self._own_session = session is None
        self._ssl = config.ssl_context()
        self._cache: TokenCache[Identity] = TokenCache(config.cache_entries_max, self._clock)
        self._service: _ServiceToken | None = None
        self._service_lock = asyncio.Lock()
        self._service_failure: tuple[float, KeystoneUnavailable] | None = None  # (retry_at, error)
        self._inflight: dict[bytes, asyncio.Task[Identity]] = {}
        self._closed = False

    # -- public

    async def validate(self, token: str) -> Identity:
        """The identity behind ``token``.

        Raises:
            InvalidToken: garbage, expired, revoked or unknown to Keystone.
            KeystoneUnavailable: Keystone cannot answer now (ServiceCredentialsRejected when
                it refuses the service's own credentials).
        """
        self.stats.validations += 1
        try:
            return await self._validate(token)
        except InvalidToken:
            self.stats.invalid += 1
            raise
        except KeystoneUnavailable:
            self.stats.unavailable += 1
            raise

    def invalidate(self, token: str) -> None:
        """Forget a cached result for ``token`` (e.g. after the service itself revoked it)."""
        self._cache.discard(_digest(token))

    async def close(self) -> None:
        """Cancel validations in flight and close the session if the validator made it."""
        self._closed = True
        for task in list(self._inflight.values()):
            task.cancel()
        for task in list(self._inflight.values()):
            with contextlib.suppress(BaseException):
                await task
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> KeystoneValidator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- internal

    async def _validate(self, token: str) -> Identity:
        if self._closed:
            raise RuntimeError("KeystoneValidator is closed")
        if not _plausible(token):
            raise InvalidToken("malformed token")
        key = _digest(token)
        entry = self._cache.get(key)
        if entry is not None:
            if entry.value is None:
                self.stats.negative_cache_hits += 1
                raise InvalidToken("token refused by Keystone (cached)")
            self.stats.cache_hits += 1
            return entry.value
        task = self._inflight.get(key)
        if task is None:
            if len(self._inflight) >= INFLIGHT_VALIDATIONS_MAX:
                raise KeystoneUnavailable("too many token validations in flight")
            task = asyncio.ensure_future(self._fetch_and_cache(key, token))
            self._inflight[key] = task
            task.add_done_callback(lambda done, key=key: self._finished(key, done))
        # shield: one caller giving up (client gone) must not cancel the others' answer
        return await asyncio.shield(task)

    def _finished(self, key: bytes, task: asyncio.Task[Identity]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # mark retrieved even if every waiter was cancelled

    async def _fetch_and_cache(self, key: bytes, token: str) -> Identity:
        try:
            identity = await self._ask_keystone(token)
        except InvalidToken:
            self._cache.put(key, None, self.config.negative_cache_ttl_s)
            raise
        if identity.expires_at <= self._clock.time():
            # Keystone vouched for it but our clock says it is over: trust the stricter one.
            raise InvalidToken("token expired")
        self._cache.put(key, identity, self.config.cache_ttl_s, identity.expires_at)
        return identity

    async def _ask_keystone(self, token: str) -> Identity:
        """GET /v3/auth/tokens; on 401 (our service token went bad) re-authenticate once."""
        for attempt in (1, 2):
            service_token = await self._service_token()
            status, data = await self._get_validation(service_token, token)
            if status == 200:
                return identity_from_token_body(_json(data))
            if status == 404:
                raise InvalidToken("Keystone does not know this token (expired, revoked, bad)")
            if status == 401:
                self._drop_service_token(service_token)
                if attempt == 1:
                    log.info("Keystone refused our service token; re-authenticating")
                    continue
                raise ServiceCredentialsRejected(
                    f"Keystone refused a fresh service token: {_excerpt(data)}"
                )
            if status == 403:
                raise ServiceCredentialsRejected(
                    f"service user {self.config.username!r} may not validate tokens "
                    f"(needs role service or admin): {_excerpt(data)}"
                )
            if status >= 500:
                raise KeystoneUnavailable(f"Keystone answered {status}: {_excerpt(data)}")
            raise InvalidToken(f"Keystone answered {status}: {_excerpt(data)}")
        raise AssertionError("unreachable: the loop returns or raises")

    async def _get_validation(self, service_token: str, token: str) -> tuple[int, bytes]:
        url = self.config.v3_url + "/auth/tokens"
        session = self._http()
        self.stats.keystone_requests += 1
        try:
            async with session.get(
                url,
                params={"nocatalog": "1"},
                headers={"X-Auth-Token": service_token, "X-Subject-Token": token},
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
                ssl=self._ssl,
            ) as response:
                return response.status, await _read_bounded(response)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KeystoneUnavailable(f"GET {url}: {exc!r}") from exc

    async def _service_token(self) -> str:
        """The service token, fetched or renewed when due.

        One fetch at a time, however many requests need it. After a failed fetch, requests fail
        fast for SERVICE_FETCH_RETRY_DELAY_S instead of queueing a timeout each behind the lock.
        A renewal that fails while the old token is still unexpired keeps the old token.
        """
        current = self._service
        if current is not None and self._clock.time() < current.refresh_at:
            return current.token
        async with self._service_lock:
            current = self._service
            if current is not None and self._clock.time() < current.refresh_at:
                return current.token
            failure = self._service_failure
            if failure is not None and self._clock.monotonic() < failure[0]:
                raise KeystoneUnavailable(
                    f"service token unavailable (recent failure): {failure[1]}"
                )
            try:
                self._service = await self._fetch_service_token()
            except KeystoneUnavailable as exc:
                retry_at = self._clock.monotonic() + SERVICE_FETCH_RETRY_DELAY_S
                self._service_failure = (retry_at, exc)
                if current is not None and self._clock.time() < current.expires_at:
                    log.warning("service token renewal failed, keeping the current one: %s", exc)
                    return current.token
                raise
            self._service_failure = None
            return self._service.token

    async def _fetch_service_token(self) -> _ServiceToken:
        cfg = self.config
        self.stats.service_token_fetches += 1
        try:
            token, body = await issue_token(
                cfg.v3_url,
                cfg.username,
                cfg.password,
                cfg.project_name,
                user_domain_name=cfg.user_domain_name,
                project_domain_name=cfg.project_domain_name,
                session=self._http(),
                timeout_s=cfg.timeout_s,
                ssl_context=self._ssl,
            )
        except AuthenticationFailed as exc:
            log.error("Keystone refuses the service credentials: %s", exc)
            raise ServiceCredentialsRejected(str(exc)) from exc
        now = self._clock.time()
        try:
            expires_at = parse_time(body["token"]["expires_at"])
        except (KeyError, TypeError, ValueError) as exc:
            raise KeystoneUnavailable(f"service token body without expires_at: {exc!r}") from None
        margin = min(SERVICE_TOKEN_REFRESH_MARGIN_S, max(0.0, expires_at - now) / 2)
        return _ServiceToken(token, expires_at - margin, expires_at)

    def _drop_service_token(self, token: str) -> None:
        if self._service is not None and self._service.token == token:
            self._service = None
            self._service_failure = None  # a 401 is news: let the next request re-authenticate

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=CONNECTIONS_MAX)
            )
        return self._session


def _digest(token: str) -> bytes:
    """Cache key: a digest, so the cache never holds usable tokens and keys have a fixed size."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _plausible(token: str) -> bool:
    """Worth asking Keystone about: non-empty, bounded, printable ASCII (a valid header value)."""
    return (
        0 < len(token) <= TOKEN_CHARS_MAX
        and token.isascii()
        and token.isprintable()
        and " " not in token
    )
