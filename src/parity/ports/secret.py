"""A secret value passed to connectors: it never shows itself in repr/str, logs or errors."""

from __future__ import annotations

import re

_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*)(:(?P<pw>[^@\s]*))?@", re.IGNORECASE)


class Secret:
    __slots__ = ("_value", "reference")

    def __init__(self, value: str, reference: str) -> None:
        self._value = value
        self.reference = reference

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.reference!r})"

    __str__ = __repr__

    def redact(self, text: str) -> str:
        """``text`` with the secret (and any credentials in URLs) removed — for error messages."""
        if self._value:
            text = text.replace(self._value, f"<{self.reference}>")
        return redact_credentials(text)


def redact_credentials(text: str) -> str:
    return _CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:***@" if m.group("pw") else m.group(0), text)
