"""Database URLs, parsed and checked by parity before any driver sees them.

A driver that is handed a malformed URL tends to quote it back — password included — in its error
text or its log lines. So the URL is taken apart here, every part checked, and the drivers get
keyword parameters or a URL rebuilt from checked parts. Errors name the reference the URL came
from (``env:NAME``) and what is wrong with it, never the URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from parity.errors import ConfigError
from parity.ports.secret import Secret

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class DatabaseURL:
    scheme: str
    user: str | None
    password: str | None = field(repr=False)
    host: str | None
    port: int | None
    database: str
    options: tuple[tuple[str, str], ...] = ()

    def rebuilt(self, scheme: str | None = None) -> str:
        """The URL again, every part escaped (for drivers that only take a URL)."""
        auth = ""
        if self.user is not None:
            auth = quote(self.user, safe="")
            if self.password is not None:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        host = self.host or ""
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        port = f":{self.port}" if self.port is not None else ""
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in self.options)
        return f"{scheme or self.scheme}://{auth}{host}{port}/{quote(self.database, safe='')}" + (f"?{query}" if query else "")


def _decode(part: str | None, what: str, reference: str) -> str | None:
    if part is None:
        return None
    if _BAD_ESCAPE.search(part):
        raise ConfigError(f"{reference}: the {what} in the URL has a '%' that is not a %XX escape; "
                          f"write a literal '%' as %25")
    return unquote(part)


def parse(secret: Secret, *, schemes: tuple[str, ...], example: str) -> DatabaseURL:
    """Take ``secret``'s URL apart, or raise a ConfigError that says what is wrong without showing it."""
    reference = secret.reference
    text = secret.reveal().strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in schemes:
        raise ConfigError(f"{reference}: expected a URL like {example}")
    # A '/', '?' or '#' in the password ends the host part early; the '@' then shows up later.
    authority_end = min([i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0] or [len(rest)])
    if "@" in rest[authority_end:] and "@" not in rest[:authority_end]:
        raise ConfigError(f"{reference}: the user or password in the URL contains '/', '?' or '#'; "
                          f"percent-encode it (%2F, %3F, %23)")
    try:
        parts = urlsplit(f"{scheme.lower()}://{rest}")
        port = parts.port
    except ValueError:
        raise ConfigError(f"{reference}: the URL has an invalid host or port; expected {example}") from None
    if parts.fragment:
        raise ConfigError(f"{reference}: the URL has a '#' part; percent-encode a '#' as %23")
    user = _decode(parts.username, "user", reference)
    password = _decode(parts.password, "password", reference)
    database = _decode(parts.path.lstrip("/"), "database name", reference) or ""
    try:
        options = tuple(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
    except ValueError:
        raise ConfigError(f"{reference}: the URL's ?options are malformed; write them as ?name=value&name=value") from None
    host = parts.hostname
    if not host and not any(k == "host" for k, _ in options):
        raise ConfigError(f"{reference}: the URL names no host; expected {example}")
    if not database:
        raise ConfigError(f"{reference}: the URL names no database; expected {example}")
    return DatabaseURL(scheme.lower(), user, password, host, port, database, options)
