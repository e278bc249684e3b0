"""API tokens: created, listed and revoked with ``parity token``, shown once, stored as a hash.

Format: ``pty_`` + 30 random base62 characters (~178 bits) + a 6-character base62 CRC32 of them,
as GitHub's tokens: the prefix lets secret scanners find a leaked one, and the checksum lets
them (and this module) tell a real token from a typo without a lookup. Tokens are random, not
passwords, so one SHA-256 is the right hash (a slow password hash would add ~0.4 s per request
and no safety); the stored id is the first 12 hex digits of that hash, which is what
``list`` shows and ``revoke`` takes.

Every server worker keeps its own connection and a cache of looked-up tokens that it drops when
SQLite's ``data_version`` says another connection committed — so a revocation by the CLI is
refused by every worker on its next request, at the cost of one pragma per request.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import threading
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from parity.define.access import Principal
from parity.errors import AuthenticationError, DataError
from parity.semantics.time import now_micros

if TYPE_CHECKING:
    from parity.runtime.project import Project

PREFIX = "pty_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM, _CHECK = 30, 6
TOKEN_LENGTH = len(PREFIX) + _RANDOM + _CHECK
_CACHED_TOKENS = 4096  # per worker thread: the live tokens of a deployment fit many times
_LAST_USED_EVERY_US = 60_000_000  # last_used is written at most once a minute per token: no write per request

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, hash BLOB NOT NULL UNIQUE, principal TEXT NOT NULL, roles TEXT NOT NULL,
    created_us INTEGER NOT NULL, expires_us INTEGER, revoked_us INTEGER, last_used_us INTEGER
)
"""


def _base62(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        out.append(_ALPHABET[digit])
    return "".join(reversed(out))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _CHECK)


def new_token() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM))
    return PREFIX + body + _checksum(body)


def well_formed(token: str) -> bool:
    """Prefix, length, alphabet and checksum: what a scanner checks offline."""
    if len(token) != TOKEN_LENGTH or not token.startswith(PREFIX):
        return False
    body, check = token[len(PREFIX):-_CHECK], token[-_CHECK:]
    return all(c in _ALPHABET for c in body) and _checksum(body) == check


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class TokenInfo:
    id: str
    principal: str
    roles: tuple[str, ...]
    created_us: int
    expires_us: int | None
    revoked_us: int | None
    last_used_us: int | None


class TokenStore:
    """The project's tokens (``.parity/tokens.db`` by default); safe to share between threads."""

    @classmethod
    def of(cls, project: Project) -> TokenStore:
        """The project's store: ``.parity/tokens.db``, or ``PARITY_TOKENS_PATH``."""
        return cls(project.settings.resolve(os.environ.get("PARITY_TOKENS_PATH", ".parity/tokens.db")))

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._local = threading.local()  # a connection per thread, and its cache: data_version is per connection
        self._used: dict[str, int] = {}
        con = self._con()
        con.execute(_SCHEMA)
        con.commit()
        os.chmod(path, 0o600)  # hashes only, but nobody else's business

    def _con(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            self._local.cache, self._local.version = {}, -1
        return con

    # -- lifecycle (the CLI) -----------------------------------------------------------------

    def create(self, principal: str, roles: list[str], *, expires_us: int | None = None) -> tuple[str, TokenInfo]:
        """A new token for ``principal`` holding ``roles``: the secret is returned here, once."""
        if not principal or not principal.strip():
            raise DataError("a token needs a principal name: --principal NAME")
        token = new_token()
        digest = token_hash(token)
        info = TokenInfo(digest.hex()[:12], principal, tuple(roles), now_micros(), expires_us, None, None)
        con = self._con()
        self._local.cache.clear()  # data_version does not move for this connection's own commits
        con.execute("INSERT INTO tokens (id, hash, principal, roles, created_us, expires_us) VALUES (?, ?, ?, ?, ?, ?)",
                    (info.id, digest, principal, json.dumps(list(roles)), info.created_us, expires_us))
        return token, info

    def list(self) -> list[TokenInfo]:
        rows = self._con().execute("SELECT id, principal, roles, created_us, expires_us, revoked_us, last_used_us "
                                   "FROM tokens ORDER BY created_us").fetchall()
        return [TokenInfo(r[0], r[1], tuple(json.loads(r[2])), r[3], r[4], r[5], r[6]) for r in rows]

    def revoke(self, token_id: str) -> TokenInfo:
        con = self._con()
        self._local.cache.clear()  # data_version does not move for this connection's own commits
        cursor = con.execute("UPDATE tokens SET revoked_us = ? WHERE id = ? AND revoked_us IS NULL",
                             (now_micros(), token_id))
        found = [t for t in self.list() if t.id == token_id]
        if not found:
            raise DataError(f"no token with id {token_id!r}; `parity token list` shows the ids")
        if cursor.rowcount == 0:
            raise DataError(f"token {token_id!r} is already revoked")
        return found[0]

    # -- authentication (the server) ---------------------------------------------------------

    def authenticate(self, token: str) -> tuple[Principal, str]:
        """The principal a presented token stands for, and the token's id; AuthenticationError
        (without echoing the token) when it is malformed, unknown, expired or revoked."""
        con, local = self._con(), self._local
        version = con.execute("PRAGMA data_version").fetchone()[0]
        if version != local.version:  # another connection committed (a create or a revoke): look again
            local.cache.clear()
            local.version = version
        # By the token as presented: a known one costs a dictionary lookup, not a checksum and a
        # hash. Only tokens that authenticated are kept (never a guess), in this worker's memory.
        cache: dict[str, tuple[Principal, int | None, str]] = local.cache
        found = cache.get(token)
        if found is None:
            if not well_formed(token):
                raise AuthenticationError("the token is not a parity API token (pty_…); create one with "
                                          "`parity token create`")
            row = con.execute("SELECT id, principal, roles, expires_us, revoked_us FROM tokens WHERE hash = ?",
                              (token_hash(token),)).fetchone()
            if row is None or row[4] is not None:
                raise AuthenticationError("the token is unknown or revoked")
            if len(cache) >= _CACHED_TOKENS:
                cache.clear()
            found = cache[token] = (Principal(row[1], json.loads(row[2])), row[3], row[0])
        principal, expires_us, token_id = found
        now = now_micros()
        if expires_us is not None and now >= expires_us:
            raise AuthenticationError(f"token {token_id} expired; create a new one with `parity token create`")
        if now - self._used.get(token_id, 0) >= _LAST_USED_EVERY_US:
            self._used[token_id] = now
            con.execute("UPDATE tokens SET last_used_us = ? WHERE id = ?", (now, token_id))
        return principal, token_id

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
