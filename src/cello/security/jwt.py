"""JWT bearer authentication on top of PyJWT: HS secrets, RS/ES/EdDSA public keys, or a JWKS with key rotation.

    jwt_config = JwtConfig(secret=b"your-secret-key-min-32-bytes-long")
    app.use(JwtAuth(jwt_config))
    # in a handler: request.context["jwt_claims"], request.user (a Principal with roles and permissions)

Tokens come from ``Authorization: Bearer …`` or, with ``cookie=``, a cookie. Refused with 401 (and a
``WWW-Authenticate: Bearer`` challenge that says nothing of why): ``alg: none``, algorithms other than the
configured ones (so an RSA public key can never be used as an HMAC secret), bad signatures, expired or
not-yet-valid tokens, wrong issuer or audience, and tokens without the claims listed in ``require``.

A verified token is remembered (bounded, ``cache_size``) so the next request with it only re-checks its time
claims: clients send the same token many times, and full verification is the expensive part.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from ..http.exceptions import ConfigurationError
from .base import MIN_SECRET_BYTES, Authenticator, Principal, logger, names

try:
    import jwt as pyjwt
except ImportError:  # pragma: no cover - the jwt extra is missing
    pyjwt = None  # type: ignore[assignment]

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_KEY_ALGORITHMS = {"RSA": "RS256", "EllipticCurve": "ES256", "Ed25519": "EdDSA", "Ed448": "EdDSA"}


@dataclass
class JwtConfig:
    """How tokens are verified (and, with ``create_token``, issued).

    Exactly one source of verification keys: ``secret`` (HS algorithms, at least 32 bytes), ``public_key``
    (PEM text or a cryptography key; ``private_key`` alone also works, its public half verifies), or ``jwks``
    (a JWKS document as a dict, or its URL: fetched when needed, cached ``jwks_ttl`` seconds, fetched again at
    most every ``jwks_min_refresh`` seconds when a token names an unknown ``kid``). ``algorithms``: accepted
    ``alg`` values (default: HS256 for a secret, the key's own family for a key, RS256 for a JWKS).
    ``issuer`` / ``audience``: required values of ``iss`` / ``aud``. ``leeway``: seconds of clock skew allowed.
    ``require``: claims a token must carry (``exp`` by default). ``cookie``: also read the token from this
    cookie. ``roles_claim`` / ``permissions_claim``: where ``request.user`` finds roles and permissions (``role``
    and the OAuth ``scope``/``scp`` claims are read too). ``exclude_paths``: exact paths or ``prefix*``.
    ``optional``: requests without a token pass anonymously. ``realm``: named in the challenge.
    """

    secret: bytes | str | None = None
    public_key: Any = None
    private_key: Any = None
    jwks: Mapping[str, Any] | str | None = None
    algorithms: Sequence[str] | None = None
    issuer: str | None = None
    audience: str | Sequence[str] | None = None
    leeway: float = 0
    require: Sequence[str] = ("exp",)
    cookie: str | None = None
    roles_claim: str = "roles"
    permissions_claim: str = "permissions"
    exclude_paths: Sequence[str] = ()
    optional: bool = False
    realm: str = "api"
    key_id: str | None = None
    jwks_ttl: float = 300.0
    jwks_min_refresh: float = 10.0
    cache_size: int = 4096
    _signing_key: Any = field(default=None, init=False, repr=False)
    _verifying_key: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if pyjwt is None:
            raise ConfigurationError("JWT support needs PyJWT: pip install 'cello[jwt]'")
        sources = [s for s in (self.secret, self.public_key or self.private_key, self.jwks) if s is not None]
        if len(sources) != 1:
            raise ConfigurationError("JwtConfig needs exactly one of secret, public_key/private_key or jwks")
        if self.secret is not None:
            secret = self.secret.encode() if isinstance(self.secret, str) else bytes(self.secret)
            if len(secret) < MIN_SECRET_BYTES:
                raise ConfigurationError(f"a JWT HMAC secret needs at least {MIN_SECRET_BYTES} bytes")
            if secret.lstrip().startswith(b"-----BEGIN"):
                raise ConfigurationError("a PEM key is not an HMAC secret: pass it as public_key")
            self._signing_key = self._verifying_key = secret
            default = ["HS256"]
        elif self.jwks is not None:
            default = ["RS256"]
        else:
            self._signing_key = _load_private(self.private_key) if self.private_key is not None else None
            public = self.public_key
            if public is None:
                public = self._signing_key.public_key()
            self._verifying_key = _load_public(public)
            default = [_KEY_ALGORITHMS.get(_key_family(self._verifying_key), "RS256")]
        self.algorithms = list(self.algorithms or default)
        if not self.algorithms or any(a.lower() == "none" for a in self.algorithms):
            raise ConfigurationError("'none' is not a signing algorithm")
        hmac = [a for a in self.algorithms if a in HMAC_ALGORITHMS]
        if self.secret is not None and len(hmac) != len(self.algorithms):
            raise ConfigurationError("a secret verifies HS256/HS384/HS512 only")
        if self.secret is None and hmac:
            # NOTE: the classic algorithm confusion: an HS token "signed" with the public key as its secret
            raise ConfigurationError("HS algorithms need a secret; with public keys accept only asymmetric ones")
        if self.cache_size < 0 or self.leeway < 0:
            raise ConfigurationError("cache_size and leeway must be >= 0")

    def create_token(
        self,
        claims: Mapping[str, Any],
        expires_in: float | timedelta | None = 3600,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed token with these claims plus ``iat``, ``exp`` (unless ``expires_in`` is None) and the
        configured ``iss``/``aud`` when the claims do not set them. Needs ``secret`` or ``private_key``."""
        if self._signing_key is None:
            raise ConfigurationError("issuing tokens needs a secret or a private_key")
        now = int(time.time())
        payload = {"iat": now, **claims}
        if expires_in is not None:
            seconds = expires_in.total_seconds() if isinstance(expires_in, timedelta) else expires_in
            payload.setdefault("exp", now + int(seconds))
        if self.issuer is not None:
            payload.setdefault("iss", self.issuer)
        if self.audience is not None:
            payload.setdefault("aud", self.audience)
        header = dict(headers or {})
        if self.key_id is not None:
            header.setdefault("kid", self.key_id)
        assert self.algorithms is not None
        token: str = pyjwt.encode(payload, self._signing_key, algorithm=self.algorithms[0], headers=header or None)
        return token


class JwtAuth(Authenticator):
    """The JWT middleware: ``app.use(JwtAuth(jwt_config))``; per route or blueprint like any middleware."""

    scheme_name = "jwt"

    def __init__(self, config: JwtConfig | None = None, **options: Any) -> None:
        # options alone build the config; with a config they override some of its fields
        config = (replace(config, **options) if options else config) if config else JwtConfig(**options)
        super().__init__(config.exclude_paths, config.optional)
        self.config = config
        self.challenge = f'Bearer realm="{config.realm}"'
        self.invalid_challenge = f'Bearer realm="{config.realm}", error="invalid_token"'
        self._algorithms = list(config.algorithms or ())
        self._options = {"require": list(config.require)}
        self._cookie = config.cookie
        # token -> (claims, principal, exp, nbf): verified once, time claims checked on every use
        self._token_cache: dict[str, tuple[dict[str, Any], Principal, float, float]] = {}
        self._keys: dict[str | None, Any] = {}
        self._jwks_url: str | None = None
        self._jwks_fetched = -float("inf")
        self._jwks_lock: asyncio.Lock | None = None
        if isinstance(config.jwks, str):
            self._jwks_url = config.jwks
            self.is_async = True
        elif config.jwks is not None:
            self._keys = _key_set(config.jwks)
        else:
            self._keys = {None: config._verifying_key}

    # -- credentials ----------------------------------------------------------------------------------------

    def credentials(self, request: Any) -> str | None:
        authorization = request.header("authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            token = token.strip()
            if token and scheme.lower() == "bearer":
                return token  # type: ignore[no-any-return]
        if self._cookie is not None:
            return request.cookies.get(self._cookie) or None  # type: ignore[no-any-return]
        return None

    def verify(self, request: Any, token: str) -> Any:
        cached = self._token_cache.get(token)
        # NOTE: with a JWKS URL, a key set past its ttl is looked at again first: a withdrawn key's tokens must stop
        # working even while they are cached
        if cached is not None and self.is_async and time.monotonic() - self._jwks_fetched > self.config.jwks_ttl:
            cached = None
        if cached is not None:
            claims, principal, expires, not_before = cached
            now = time.time()
            leeway = self.config.leeway
            if now < expires + leeway and now >= not_before - leeway:
                request.context["jwt_claims"] = claims
                return principal
            del self._token_cache[token]
            return None
        if self.is_async:
            return self._verify_with_jwks(request, token)
        return self._admit(request, token, self._decode(token, self._key_for(token)))

    async def _verify_with_jwks(self, request: Any, token: str) -> Principal | None:
        kid = _kid(token)
        if kid is _BAD:
            return None
        stale = time.monotonic() - self._jwks_fetched > self.config.jwks_ttl
        if stale or (kid is not None and kid not in self._keys):
            await self._refresh_keys(kid)
        return self._admit(request, token, self._decode(token, self._key_for(token, kid)))

    def _key_for(self, token: str, kid: Any = None) -> Any:
        """The key for ``token``: the one key, or the one its ``kid`` names (read from its header unless given)."""
        keys = self._keys
        if len(keys) == 1 and None in keys:
            return keys[None]
        if kid is None:
            kid = _kid(token)
        if kid is _BAD:
            return None
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))
        return keys.get(kid)  # type: ignore[arg-type]

    def _decode(self, token: str, key: Any) -> dict[str, Any] | None:
        if key is None:
            logger.debug("JWT refused: no key for its kid")
            return None
        config = self.config
        try:
            claims: dict[str, Any] = pyjwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway,
                options=self._options,  # type: ignore[arg-type]
            )
        except pyjwt.PyJWTError as exc:  # every way a token can be wrong
            logger.debug("JWT refused: %s", exc)
            return None
        return claims

    def _admit(self, request: Any, token: str, claims: dict[str, Any] | None) -> Principal | None:
        if claims is None:
            return None
        config = self.config
        principal = Principal(
            str(claims.get("sub", "")),
            names(claims.get(config.roles_claim)) | names(claims.get("role")),
            names(claims.get(config.permissions_claim)) | names(claims.get("scope")) | names(claims.get("scp")),
            "jwt",
            claims,
        )
        if config.cache_size:
            cache = self._token_cache
            if len(cache) >= config.cache_size:
                del cache[next(iter(cache))]  # the oldest entry
            expires = claims.get("exp")
            not_before = claims.get("nbf")
            cache[token] = (
                claims,
                principal,
                float(expires) if isinstance(expires, (int, float)) else float("inf"),
                float(not_before) if isinstance(not_before, (int, float)) else float("-inf"),
            )
        request.context["jwt_claims"] = claims
        return principal

    # -- JWKS -----------------------------------------------------------------------------------------------

    async def refresh_keys(self) -> None:
        """Fetch the JWKS now (for example at startup, so the first request does not wait for it)."""
        await self._refresh_keys(None, force=True)

    async def _refresh_keys(self, kid: str | None, force: bool = False) -> None:
        """Fetch the key set again when it is stale or a token names a key we do not know (rotation)."""
        if self._jwks_lock is None:
            self._jwks_lock = asyncio.Lock()
        async with self._jwks_lock:
            age = time.monotonic() - self._jwks_fetched
            if not force and age < self.config.jwks_min_refresh:
                return  # fetched moments ago (perhaps by a concurrent request): no stampede on the key server
            assert self._jwks_url is not None
            try:
                document = await asyncio.to_thread(_fetch_json, self._jwks_url)
                keys = _key_set(document)
            except Exception as exc:  # unreachable or malformed: keep the keys we have
                logger.warning("could not fetch the JWKS from %s: %s", self._jwks_url, exc)
                self._jwks_fetched = time.monotonic()
                return
            if set(self._keys) - set(keys):
                self._token_cache.clear()  # a key was withdrawn: tokens it signed must not stay accepted
            self._keys = keys
            self._jwks_fetched = time.monotonic()

    def openapi_scheme(self) -> dict[str, Any]:
        # a cookie, when configured, is an extra source; the header is what API clients (and Swagger UI) use
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


_BAD = object()


def _kid(token: str) -> Any:
    try:
        return pyjwt.get_unverified_header(token).get("kid")
    except pyjwt.PyJWTError:
        return _BAD


def _key_set(document: Mapping[str, Any]) -> dict[str | None, Any]:
    keys: dict[str | None, Any] = {}
    for entry in document.get("keys", []):
        if entry.get("use", "sig") != "sig":
            continue
        jwk = pyjwt.PyJWK.from_dict(dict(entry))
        if jwk.key_type == "oct":
            raise ConfigurationError("a JWKS for token verification must not hold symmetric (oct) keys")
        keys[entry.get("kid")] = jwk
    return keys


def _fetch_json(url: str) -> Any:
    import json

    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - the app's own configured JWKS URL
        return json.loads(response.read(1_000_000))


def _key_family(key: Any) -> str:
    name = type(key).__name__
    for family in _KEY_ALGORITHMS:
        if family in name:
            return family
    return ""


def _load_public(key: Any) -> Any:
    if isinstance(key, (str, bytes)):
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        return load_pem_public_key(key.encode() if isinstance(key, str) else key)
    return key


def _load_private(key: Any) -> Any:
    if isinstance(key, (str, bytes)):
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        return load_pem_private_key(key.encode() if isinstance(key, str) else key, password=None)
    return key
