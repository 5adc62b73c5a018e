"""Security headers: the response headers that tell a browser to refuse what this app never meant to allow.

``app.enable_security_headers()`` (or ``app.use(SecurityHeaders(...))``) adds to every response, error answers
included (the middleware sees the framework's 404, 405 and 422 like any other response):

- ``Content-Security-Policy`` — where scripts, styles, images, frames… may come from; built with ``CSP``;
- ``Strict-Transport-Security`` — only on responses sent over TLS (``request.scheme == "https"``, which honours
  ``X-Forwarded-Proto`` from the app's ``trusted_proxies``): over plain HTTP a browser ignores it, and sending it
  there would only advertise a promise the connection cannot back;
- ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``, ``Referrer-Policy``, ``Permissions-Policy``
  (built with ``PermissionsPolicy``), ``Cross-Origin-Opener-Policy`` and ``Cross-Origin-Resource-Policy``.

Every option takes ``None`` or ``False`` to leave its header out, and ``True`` for its default. The defaults are a
safe preset in the spirit of helmet's: a page may load scripts, styles, images, fonts and frames from its own
origin only (plus ``data:`` images and fonts), runs no inline script or style, cannot be framed, and has the
powerful browser features off. A page that needs inline code asks for a nonce: with ``csp_nonce=True`` every
response gets a fresh ``secrets.token_urlsafe(16)``, put in ``request.context["csp_nonce"]`` (templates see it as
``csp_nonce``: ``<script nonce="{{ csp_nonce }}">``) and added to that response's ``script-src`` and
``style-src``. Routes pay for the nonce only where it is on.

A route changes what it gets with an option of its own, whose keys are ``SecurityHeadersConfig``'s fields,
applied over the middleware's configuration (``False`` turns every security header off for that route)::

    @app.get("/embed", security_headers={"x_frame_options": None,
                                         "csp": DEFAULT_CSP.with_(frame_ancestors=["https://partner.example"])})

A header the handler (or an inner middleware) set itself is kept: a handler that knows its page needs a
different policy wins over the app-wide default, which is the less specific of the two.

Cost: the headers are rendered once per configuration and per route into tuples of ``(name, value)`` pairs; a
request costs one dict lookup keyed by its route, one pass over the response's few headers and a list extend.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from secrets import token_urlsafe
from types import MappingProxyType
from typing import Any

from ..http.exceptions import ConfigurationError
from ..http.response import Response
from ..middleware.base import HookMiddleware

__all__ = [
    "CSP",
    "DEFAULT_CSP",
    "DEFAULT_PERMISSIONS_POLICY",
    "HSTS",
    "PermissionsPolicy",
    "SecurityHeaders",
    "SecurityHeadersConfig",
]

Sources = Iterable[str] | str | bool | None
Allowlist = Iterable[str] | str | bool | None

_DIRECTIVE_NAME = re.compile(r"[a-z][a-z0-9-]*")
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f;,]")
# CSP keywords are only keywords inside single quotes: a bare `self` is a host name, which silently allows nothing
_KEYWORDS = frozenset(
    {"self", "none", "unsafe-inline", "unsafe-eval", "strict-dynamic", "unsafe-hashes", "report-sample",
     "wasm-unsafe-eval", "unsafe-allow-redirects", "inline-speculation-rules"}
)  # fmt: skip
_UNQUOTED_NONCE_OR_HASH = re.compile(r"(nonce|sha256|sha384|sha512)-[A-Za-z0-9+/_=-]+", re.IGNORECASE)
# where a fetch directive's sources come from when it is absent (CSP Level 3, "effective directive" fallback)
_FALLBACKS: dict[str, tuple[str, ...]] = {
    "script-src-elem": ("script-src", "default-src"),
    "script-src-attr": ("script-src", "default-src"),
    "style-src-elem": ("style-src", "default-src"),
    "style-src-attr": ("style-src", "default-src"),
    "worker-src": ("child-src", "script-src", "default-src"),
    "frame-src": ("child-src", "default-src"),
    **dict.fromkeys(("child-src", "connect-src", "font-src", "img-src", "manifest-src", "media-src", "object-src",
                     "script-src", "style-src"), ("default-src",)),
}  # fmt: skip
_SOURCE_LIST_DIRECTIVES = frozenset({*_FALLBACKS, "default-src", "base-uri", "form-action", "frame-ancestors"})
# NOTE: a control character cannot come from configuration, so it marks where the per-request nonce goes
_NONCE_SLOT = "'nonce-\x00'"


def _directive_name(name: str) -> str:
    directive = name.replace("_", "-").lower()
    if not _DIRECTIVE_NAME.fullmatch(directive):
        raise ConfigurationError(f"not a CSP directive name: {name!r}")
    return directive


def _sources(directive: str, value: Sources) -> tuple[str, ...]:
    if value is True:
        return ()  # a directive that takes no sources, such as upgrade-insecure-requests
    items: list[Any] = value.split() if isinstance(value, str) else list(value or ())
    checked: list[str] = []
    for source in items:
        if not isinstance(source, str) or not source or _FORBIDDEN.search(source):
            raise ConfigurationError(f"CSP {directive}: {source!r} is not a valid source expression")
        if directive in _SOURCE_LIST_DIRECTIVES and (
            source.lower() in _KEYWORDS or _UNQUOTED_NONCE_OR_HASH.fullmatch(source)
        ):
            raise ConfigurationError(f"CSP {directive}: write \"'{source}'\" with its single quotes")
        if source not in checked:
            checked.append(source)
    if "'none'" in checked and len(checked) > 1:
        # browsers ignore 'none' next to other sources: the directive would silently allow the others
        raise ConfigurationError(f"CSP {directive}: 'none' cannot be combined with other sources")
    return tuple(checked)


def _parse_policy(policy: str) -> dict[str, Sources]:
    parsed: dict[str, Sources] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            # the first occurrence of a directive is the one browsers apply
            parsed.setdefault(words[0], words[1:] or True)
    return parsed


def _effective(directives: Mapping[str, tuple[str, ...]], name: str) -> tuple[str, ...] | None:
    """The sources that govern ``name``: its own, or those of the directive it falls back to."""
    if name in directives:
        return directives[name]
    for fallback in _FALLBACKS.get(name, ()):
        if fallback in directives:
            return directives[fallback]
    return None


def _render(directives: Mapping[str, tuple[str, ...]]) -> str:
    return "; ".join(" ".join((name, *sources)) for name, sources in directives.items())


class _HeaderValue:
    """An immutable header value rendered once, when built: printed, compared and hashed by its text."""

    __slots__ = ()
    header: str

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: build a changed copy with with_()")

    def __str__(self) -> str:
        return self.header

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.header!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.header == self.header  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self.header)


class CSP(_HeaderValue):
    """A Content-Security-Policy, rendered to its header value once, when built.

    Directives are keyword arguments (``default_src=["'self'"]`` → ``default-src 'self'``) or a mapping, or a
    whole policy string; keywords apply over the positional policy. A directive's value is a list of sources (or
    one string of them, space-separated), ``True`` for a directive without sources (``upgrade_insecure_requests``)
    and ``None`` or ``False`` to leave it out. Keywords must keep their single quotes (``"'self'"``): without them
    they are host names, and a policy meant to allow ``self`` would allow nothing.

    Instances are immutable; ``with_(...)`` replaces directives and ``merge(...)`` adds sources to them.
    """

    __slots__ = ("directives", "header")

    directives: Mapping[str, tuple[str, ...]]
    header: str

    def __init__(self, policy: CSP | Mapping[str, Sources] | str | None = None, /, **directives: Sources) -> None:
        built: dict[str, tuple[str, ...]] = {}
        _apply(built, policy, directives)
        self._freeze(built)

    @classmethod
    def _of(cls, directives: dict[str, tuple[str, ...]]) -> CSP:
        """A policy from directives already checked."""
        policy = cls.__new__(cls)
        policy._freeze(directives)
        return policy

    def _freeze(self, directives: dict[str, tuple[str, ...]]) -> None:
        object.__setattr__(self, "directives", MappingProxyType(directives))
        object.__setattr__(self, "header", _render(directives))

    def with_(self, policy: CSP | Mapping[str, Sources] | str | None = None, /, **directives: Sources) -> CSP:
        """A copy with these directives replaced (``None`` removes one)."""
        changed = dict(self.directives)
        _apply(changed, policy, directives)
        return CSP._of(changed)

    def merge(self, policy: CSP | Mapping[str, Sources] | str | None = None, /, **directives: Sources) -> CSP:
        """A copy allowing what this policy allows and also these sources.

        A fetch directive this policy lacks starts from the sources it fell back to (``script-src`` from
        ``default-src``), so adding a CDN to scripts never takes away ``'self'``; ``'none'`` gives way to the
        sources added.
        """
        extra = CSP(policy, **directives)
        merged = dict(self.directives)
        for name, sources in extra.directives.items():
            current = _effective(merged, name)
            if current is not None and (sources == ("'none'",) or set(sources) <= set(current)):
                continue  # already allowed (or nothing more allowed): the policy stays as short as it was
            if current is None or current == ("'none'",):
                current = ()
            merged[name] = tuple(dict.fromkeys((*current, *sources)))
        return CSP._of(merged)


def _apply(
    directives: dict[str, tuple[str, ...]],
    policy: CSP | Mapping[str, Sources] | str | None,
    keywords: Mapping[str, Sources],
) -> None:
    """Set (or, with None or False, remove) the directives of ``policy`` and then of ``keywords``, checked."""
    if policy is None:
        given: Mapping[str, Sources] = {}
    elif isinstance(policy, CSP):
        given = policy.directives
    else:
        given = _parse_policy(policy) if isinstance(policy, str) else policy
    for entries in (given, keywords):
        for name, value in entries.items():
            directive = _directive_name(name)
            if value is None or value is False:
                directives.pop(directive, None)
            else:
                directives[directive] = _sources(directive, value)


def _nonce_template(csp: CSP) -> tuple[str, ...]:
    """The policy's header split where a per-request nonce goes: ``"'nonce-…'".join(parts)`` is the header.

    The nonce joins ``script-src`` and ``style-src`` (and their ``-elem`` forms when present), created from their
    fallback when absent; a directive that is ``'none'``, or that nothing governs (anything is allowed), stays as
    it is. NOTE: next to a nonce, browsers ignore ``'unsafe-inline'`` in the same directive, by design.
    """
    directives = dict(csp.directives)
    for name in ("script-src", "style-src", "script-src-elem", "style-src-elem"):
        if name.endswith("-elem") and name not in directives:
            continue
        current = _effective(directives, name)
        if current is None or current == ("'none'",):
            continue
        directives[name] = (*current, _NONCE_SLOT)
    return tuple(_render(directives).split(_NONCE_SLOT))


@dataclass(frozen=True)
class HSTS:
    """Strict-Transport-Security: browsers use only HTTPS for this host for ``max_age`` seconds (default two
    years), and for its subdomains with ``include_subdomains``. ``preload`` asks to be built into browsers — hard
    to undo, so it is opt-in, and the preload list's own requirements (a year or more, with subdomains) are
    checked here."""

    max_age: int = 63072000
    include_subdomains: bool = True
    preload: bool = False

    def __post_init__(self) -> None:
        if self.max_age < 0:
            raise ConfigurationError("HSTS max_age must be >= 0")
        if self.preload and (self.max_age < 31536000 or not self.include_subdomains):
            raise ConfigurationError("HSTS preload needs max_age >= 31536000 and include_subdomains=True")

    @property
    def header(self) -> str:
        value = f"max-age={self.max_age}"
        if self.include_subdomains:
            value += "; includeSubDomains"
        if self.preload:
            value += "; preload"
        return value


_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^\s\"'(),;]+", re.IGNORECASE)


def _allowlist(feature: str, value: Allowlist) -> str:
    """One feature's allowlist in the header's structured-field syntax: ``*``, ``()`` or ``(self "https://…")``."""
    if value is True:
        return "*"
    if value is False or value is None:
        return "()"
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("(") and text.endswith(")"):
            text = text[1:-1]  # the header's own syntax, as in a policy string
        items: list[Any] = text.split()
    else:
        items = list(value)
    if items == ["*"]:
        return "*"
    rendered: list[str] = []
    for item in items:
        token = item.strip("'\"") if isinstance(item, str) else item
        if token in ("self", "src"):
            rendered.append(token)
        elif isinstance(token, str) and _ORIGIN.fullmatch(token):
            rendered.append(f'"{token}"')
        else:
            raise ConfigurationError(f"Permissions-Policy {feature}: {item!r} is not 'self', 'src', '*' or an origin")
    return "(" + " ".join(dict.fromkeys(rendered)) + ")"


class PermissionsPolicy(_HeaderValue):
    """A Permissions-Policy header from ``{feature: allowlist}``: ``{"camera": [], "geolocation": ["self"]}`` →
    ``camera=(), geolocation=(self)``. An allowlist holds ``"self"``, ``"src"`` and origins
    (``"https://maps.example"``); ``[]`` or ``False`` turns the feature off, ``"*"`` or ``True`` allows it
    everywhere, ``None`` leaves the feature out. Also accepts the header's own text. Immutable, rendered once."""

    __slots__ = ("features", "header")

    features: Mapping[str, str]
    header: str

    def __init__(
        self,
        policy: PermissionsPolicy | Mapping[str, Allowlist] | str | None = None,
        /,
        **features: Allowlist,
    ) -> None:
        built: dict[str, str] = {}
        if isinstance(policy, PermissionsPolicy):
            built.update(policy.features)
        elif isinstance(policy, str):
            for item in filter(None, (part.strip() for part in policy.split(","))):
                feature, sep, allowlist = item.partition("=")
                if not sep:
                    raise ConfigurationError(f"not a Permissions-Policy entry: {item!r}")
                _feature(built, feature.strip(), allowlist)
        elif policy is not None:
            for name, value in policy.items():
                _feature(built, name, value)
        for name, value in features.items():
            _feature(built, name, value)
        object.__setattr__(self, "features", MappingProxyType(built))
        object.__setattr__(self, "header", ", ".join(f"{name}={value}" for name, value in built.items()))

    def with_(self, policy: Mapping[str, Allowlist] | None = None, /, **features: Allowlist) -> PermissionsPolicy:
        """A copy with these features set (``None`` removes one)."""
        # NOTE: the rendered allowlists read back as they were written, so the copy starts from them
        return PermissionsPolicy({**self.features, **dict(policy or {})}, **features)


def _feature(built: dict[str, str], name: str, value: Allowlist) -> None:
    feature = name.replace("_", "-").lower()
    if not _DIRECTIVE_NAME.fullmatch(feature):
        raise ConfigurationError(f"not a Permissions-Policy feature name: {name!r}")
    if value is None:
        built.pop(feature, None)
    else:
        built[feature] = _allowlist(feature, value)


DEFAULT_CSP = CSP(
    default_src=["'self'"],
    base_uri=["'self'"],
    font_src=["'self'", "data:"],
    form_action=["'self'"],
    frame_ancestors=["'none'"],
    img_src=["'self'", "data:"],
    object_src=["'none'"],
    script_src=["'self'"],
    script_src_attr=["'none'"],
    style_src=["'self'"],
)
"""Same-origin everything, no inline code, no plugins, no framing; see ``SecurityHeadersConfig``."""

DEFAULT_PERMISSIONS_POLICY = PermissionsPolicy(
    {
        feature: []
        for feature in ("accelerometer", "browsing-topics", "camera", "display-capture", "geolocation", "gyroscope",
                        "magnetometer", "microphone", "midi", "payment", "usb")
    }
)  # fmt: skip
"""The powerful features a page could ask a visitor for, all off; grant one with ``.with_(camera=["self"])``."""

_FRAME_OPTIONS = frozenset({"DENY", "SAMEORIGIN"})
_REFERRER_POLICIES = frozenset(
    {"no-referrer", "no-referrer-when-downgrade", "origin", "origin-when-cross-origin", "same-origin",
     "strict-origin", "strict-origin-when-cross-origin", "unsafe-url"}
)  # fmt: skip
_OPENER_POLICIES = frozenset({"same-origin", "same-origin-allow-popups", "noopener-allow-popups", "unsafe-none"})
_RESOURCE_POLICIES = frozenset({"same-origin", "same-site", "cross-origin"})
_EMBEDDER_POLICIES = frozenset({"require-corp", "credentialless", "unsafe-none"})
_NOSNIFF = frozenset({"nosniff"})


@dataclass
class SecurityHeadersConfig:
    """What ``SecurityHeaders`` sends; ``None`` or ``False`` leaves a header out, ``True`` means its default.

    ``csp``: a ``CSP``, a mapping of directives or a policy string (default ``DEFAULT_CSP``: ``default-src
    'self'; base-uri 'self'; font-src 'self' data:; form-action 'self'; frame-ancestors 'none'; img-src 'self'
    data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; style-src 'self'``).
    ``csp_merge``: sources added to ``csp`` (``CSP.merge``) — for a route that needs one more origin without
    restating the app's whole policy: ``security_headers={"csp_merge": {"img_src": ["https://tiles.example"]}}``.
    ``csp_report_only``: send it as ``Content-Security-Policy-Report-Only`` (reports violations, blocks nothing —
    for trying a policy out). ``csp_nonce``: a fresh nonce per response for inline scripts and styles.
    ``hsts``: an ``HSTS`` (default two years, includeSubDomains, no preload), sent over TLS only.
    ``x_frame_options``: ``"DENY"`` (default) or ``"SAMEORIGIN"``; ``x_content_type_options``: ``nosniff``.
    ``referrer_policy``: default ``strict-origin-when-cross-origin`` (other origins see the origin only, and
    plain-HTTP ones nothing). ``permissions_policy``: a ``PermissionsPolicy`` or ``{feature: allowlist}``
    (default ``DEFAULT_PERMISSIONS_POLICY``). ``cross_origin_opener_policy`` / ``cross_origin_resource_policy``:
    default ``same-origin``; ``cross_origin_embedder_policy``: off by default (``require-corp`` breaks every
    cross-origin image or script that does not opt in). ``extra``: more headers to send, ``{name: value}``.
    """

    csp: CSP | Mapping[str, Sources] | str | bool | None = DEFAULT_CSP
    csp_merge: CSP | Mapping[str, Sources] | str | None = None
    csp_report_only: bool = False
    csp_nonce: bool = False
    hsts: HSTS | str | bool | None = True
    x_frame_options: str | bool | None = "DENY"
    x_content_type_options: str | bool | None = True
    referrer_policy: str | bool | None = "strict-origin-when-cross-origin"
    permissions_policy: PermissionsPolicy | Mapping[str, Allowlist] | str | bool | None = DEFAULT_PERMISSIONS_POLICY
    cross_origin_opener_policy: str | bool | None = "same-origin"
    cross_origin_resource_policy: str | bool | None = "same-origin"
    cross_origin_embedder_policy: str | bool | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


_OPTION_NAMES = frozenset(f.name for f in fields(SecurityHeadersConfig))


def _choice(option: str, value: str | bool | None, default: str, allowed: frozenset[str]) -> str | None:
    if value is None or value is False:
        return None
    if value is True:
        return default
    if not isinstance(value, str):
        raise ConfigurationError(f"{option}: expected a string, True, False or None, got {value!r}")
    for token in value.split(","):
        if token.strip() not in allowed:
            obsolete = value.upper().startswith("ALLOW-FROM")
            hint = " (ALLOW-FROM is obsolete: use the CSP frame-ancestors directive)" if obsolete else ""
            raise ConfigurationError(f"{option}: {value!r} is not one of {sorted(allowed)}{hint}")
    return value


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class _Policy:
    """One configuration rendered: the pairs a response gets over plain HTTP, and over TLS (with HSTS).

    With a nonce, the CSP is not among the pairs: ``nonce_template`` joined by the request's nonce source is.
    ``names`` are every header this policy may add, to find one the handler set itself.
    """

    __slots__ = ("pairs", "tls_pairs", "hsts", "names", "nonce", "csp_name", "nonce_template")

    def __init__(self, config: SecurityHeadersConfig) -> None:
        self.csp_name = "content-security-policy-report-only" if config.csp_report_only else "content-security-policy"
        csp = _csp(config.csp)
        if csp is not None and config.csp_merge is not None:
            csp = csp.merge(config.csp_merge)
        self.nonce = bool(config.csp_nonce)
        if self.nonce and csp is None:
            raise ConfigurationError("csp_nonce needs a CSP to add the nonce to")
        self.nonce_template = _nonce_template(csp) if self.nonce and csp is not None else ()
        pairs = [(self.csp_name, csp.header)] if csp is not None and not self.nonce else []
        frame = config.x_frame_options.upper() if isinstance(config.x_frame_options, str) else config.x_frame_options
        for name, value in (
            ("x-frame-options", _choice("x_frame_options", frame, "DENY", _FRAME_OPTIONS)),
            ("x-content-type-options", _choice("x_content_type_options", config.x_content_type_options, "nosniff",
                                               _NOSNIFF)),
            ("referrer-policy", _choice("referrer_policy", config.referrer_policy, "strict-origin-when-cross-origin",
                                        _REFERRER_POLICIES)),
            ("permissions-policy", _permissions(config.permissions_policy)),
            ("cross-origin-opener-policy", _choice("cross_origin_opener_policy", config.cross_origin_opener_policy,
                                                   "same-origin", _OPENER_POLICIES)),
            ("cross-origin-resource-policy", _choice("cross_origin_resource_policy",
                                                     config.cross_origin_resource_policy, "same-origin",
                                                     _RESOURCE_POLICIES)),
            ("cross-origin-embedder-policy", _choice("cross_origin_embedder_policy",
                                                     config.cross_origin_embedder_policy, "require-corp",
                                                     _EMBEDDER_POLICIES)),
        ):  # fmt: skip
            if value is not None:
                pairs.append((name, value))
        for name, value in config.extra.items():
            if not _TOKEN.fullmatch(name) or any(char in value for char in "\r\n\0"):
                raise ConfigurationError(f"invalid extra header {name!r}: {value!r}")
            if name.lower() in {self.csp_name, "strict-transport-security", *(known for known, _ in pairs)}:
                raise ConfigurationError(f"extra header {name!r} has an option of its own: set it there")
            pairs.append((name.lower(), value))
        self.pairs = tuple(pairs)
        hsts = _hsts(config.hsts)
        self.hsts = hsts is not None
        self.tls_pairs = (*self.pairs, ("strict-transport-security", hsts)) if hsts is not None else self.pairs
        self.names = frozenset([*(name for name, _ in self.tls_pairs), *([self.csp_name] if self.nonce else [])])


def _csp(value: CSP | Mapping[str, Sources] | str | bool | None) -> CSP | None:
    if value is None or value is False:
        return None
    csp = DEFAULT_CSP if value is True else value if isinstance(value, CSP) else CSP(value)
    return csp if csp.directives else None


def _permissions(value: PermissionsPolicy | Mapping[str, Allowlist] | str | bool | None) -> str | None:
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_PERMISSIONS_POLICY.header
    policy = value if isinstance(value, PermissionsPolicy) else PermissionsPolicy(value)
    return policy.header or None


def _hsts(value: HSTS | str | bool | None) -> str | None:
    if value is None or value is False:
        return None
    if value is True:
        return HSTS().header
    if isinstance(value, HSTS):
        return value.header
    if not value.lower().startswith("max-age=") or "\r" in value or "\n" in value or "\0" in value:
        raise ConfigurationError(f"not a Strict-Transport-Security value: {value!r}")
    return value


# what a route declared with security_headers=False gets
_NONE = _Policy(
    SecurityHeadersConfig(
        csp=None, hsts=None, x_frame_options=None, x_content_type_options=None, referrer_policy=None,
        permissions_policy=None, cross_origin_opener_policy=None, cross_origin_resource_policy=None,
    )
)  # fmt: skip


class SecurityHeaders(HookMiddleware):
    """The security headers middleware; see the module, and ``SecurityHeadersConfig`` for the options (also
    accepted as keywords). A route's ``security_headers`` option changes them for that route; a header the
    handler set itself is left as it is."""

    def __init__(self, config: SecurityHeadersConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise ConfigurationError("SecurityHeaders takes a SecurityHeadersConfig or keywords, not both")
        self.config = config or _config(SecurityHeadersConfig(), options)
        self.default = _Policy(self.config)
        # route → its rendered headers; routes are fixed once the app has compiled, so this stays small.
        # None stands for a request that reached no route.
        self._policies: dict[Any, _Policy] = {None: self.default}

    def policy_for(self, route: Any) -> _Policy:
        """The headers ``route`` gets, worked out from its ``security_headers`` option once and then kept."""
        policy = self._policies.get(route)
        if policy is not None:
            return policy
        override = route.meta.get("security_headers")
        if override is None or override is True:
            policy = self.default
        elif override is False:
            policy = _NONE
        elif isinstance(override, (SecurityHeadersConfig, Mapping)):
            where = f"security_headers of {route!r}"
            try:
                config = override if isinstance(override, SecurityHeadersConfig) else _config(self.config, override)
                policy = _Policy(config)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{where}: {exc}") from None
        else:
            raise ConfigurationError(f"security_headers of {route!r} must be a dict of options or False")
        self._policies[route] = policy
        return policy

    def prepare_route(self, route: Any) -> None:
        """Called for each route as the app compiles it (see ``cello.middleware.base``)."""
        self.policy_for(route)

    def enter(self, request: Any) -> Any:
        policy = self._policies.get(request.route)
        if policy is None:
            policy = self.policy_for(request.route)
        if policy.nonce:
            nonce = token_urlsafe(16)
            request.context["csp_nonce"] = nonce
            return policy, nonce
        return policy

    def leave(self, request: Any, response: Response, state: Any) -> Response:
        if state.__class__ is tuple:
            policy, nonce = state
        else:
            policy, nonce = state, None
        pairs = policy.tls_pairs if policy.hsts and request.scheme == "https" else policy.pairs
        headers = response.raw_headers
        names = policy.names
        existing: frozenset[str] | None = None
        for key, _ in headers:
            if key in names:  # the handler set one of ours: it keeps its own
                existing = frozenset(k for k, _ in headers)
                headers.extend([pair for pair in pairs if pair[0] not in existing])
                break
        else:
            headers.extend(pairs)
        if nonce is not None and (existing is None or policy.csp_name not in existing):
            headers.append((policy.csp_name, f"'nonce-{nonce}'".join(policy.nonce_template)))
        return response


def _config(base: SecurityHeadersConfig, options: Mapping[str, Any]) -> SecurityHeadersConfig:
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise ConfigurationError(
            f"unknown security headers option(s) {sorted(unknown)}; known: {sorted(_OPTION_NAMES)}"
        )
    return replace(base, **options)
