"""API tokens: a recognisable format whose checksum catches typos, stored as SHA-256 only,
expiry and revocation."""

from __future__ import annotations

import re

import pytest

from parity.errors import AuthenticationError, DataError
from parity.server import tokens as tk
from parity.server.tokens import TokenStore


def test_tokens_have_the_scannable_format_and_every_single_typo_fails_the_checksum():
    made = {tk.new_token() for _ in range(200)}
    assert len(made) == 200
    for token in made:
        assert re.fullmatch(r"pty_[0-9A-Za-z]{36}", token) and tk.well_formed(token)
    token = sorted(made)[0]
    for at in range(4, len(token)):
        for c in "0aZ":
            typo = token[:at] + c + token[at + 1:]
            if typo != token:
                assert not tk.well_formed(typo), (at, c)
    assert not tk.well_formed(token + "x") and not tk.well_formed("ghp_" + token[4:])


def test_a_malformed_token_is_refused_before_any_lookup(tmp_path):
    store = TokenStore(str(tmp_path / "t.db"))
    with pytest.raises(AuthenticationError, match="not a parity API token"):
        store.authenticate("pty_" + "A" * 36)
    with pytest.raises(AuthenticationError, match="unknown or revoked"):
        store.authenticate(tk.new_token())


def test_create_authenticate_expire_and_revoke(tmp_path, monkeypatch):
    store = TokenStore(str(tmp_path / "t.db"))
    token, info = store.create("svc", ["a", "b"])
    principal, token_id = store.authenticate(token)
    assert principal.name == "svc" and principal.roles == {"a", "b"} and token_id == info.id
    assert store.list()[0].last_used_us is not None  # recorded on first use
    other = TokenStore(str(tmp_path / "t.db"))  # the CLI's connection, another process in real life
    other.revoke(info.id)
    with pytest.raises(AuthenticationError, match="unknown or revoked"):
        store.authenticate(token)  # the cached principal is dropped: another connection committed
    with pytest.raises(DataError, match="already revoked"):
        other.revoke(info.id)
    with pytest.raises(DataError, match="no token with id"):
        other.revoke("nope")
    soon, _ = store.create("svc", ["a"], expires_us=tk.now_micros() + 1_000_000)
    store.authenticate(soon)
    monkeypatch.setattr(tk, "now_micros", lambda: 2**62)
    with pytest.raises(AuthenticationError, match="expired"):
        store.authenticate(soon)
    assert token not in str(store.list())


def test_a_revocation_on_the_same_connection_is_seen_at_once(tmp_path):
    store = TokenStore(str(tmp_path / "t.db"))
    token, info = store.create("svc", ["a"])
    store.authenticate(token)
    store.revoke(info.id)
    with pytest.raises(AuthenticationError):
        store.authenticate(token)
