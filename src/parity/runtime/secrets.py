"""Secrets: connection strings are referenced, never written into definitions or configuration.

A reference is ``env:NAME`` (an environment variable) or ``file:PATH`` (a file whose content,
stripped, is the secret; relative to the project folder). ``Secret`` never shows its value in
``repr``/``str``, so it cannot leak into logs or error messages by accident.
"""

from __future__ import annotations

import os

from parity.errors import ConfigError
from parity.ports.secret import _CREDENTIALS, Secret, redact_credentials

__all__ = ["Secret", "connection", "redact_credentials", "resolve"]


def resolve(reference: str, *, root: str = ".", what: str = "a connection string") -> Secret:
    if reference.startswith("env:"):
        name = reference[4:]
        value = os.environ.get(name)
        if value is None:
            raise ConfigError(f"{what} refers to environment variable {name!r}, which is not set")
        return Secret(value, reference)
    if reference.startswith("file:"):
        path = reference[5:]
        path = path if os.path.isabs(path) else os.path.join(root, path)
        try:
            with open(path, encoding="utf-8") as fh:
                return Secret(fh.read().strip(), reference)
        except OSError as exc:
            raise ConfigError(f"{what} refers to secrets file {path!r}, which cannot be read ({exc.strerror})") from None
    raise ConfigError(
        f"{what} must be a reference such as 'env:PARITY_PG_URL' or 'file:secrets/pg.url', never the secret itself"
    )


def connection(value: str, *, root: str = ".", what: str = "a connection string") -> Secret:
    """A connection string from configuration: a reference, or a plain URL that holds no password."""
    if value.startswith(("env:", "file:")):
        return resolve(value, root=root, what=what)
    match = _CREDENTIALS.search(value)
    if match and match.group("pw"):
        raise ConfigError(
            f"{what} holds a password in plain text; move it to an environment variable and write 'env:NAME'"
        )
    return Secret(value, redact_credentials(value))
