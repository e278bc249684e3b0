"""Driver log lines: redacted, and the last connection error kept to explain a timeout.

Connection pools log their connection failures instead of raising them, and those lines can hold
connection strings. A filter on the drivers' loggers removes every registered secret and any
credentials in URLs or ``password=`` settings before any handler sees a record; a recording
handler keeps the last warning per pool, so a lookup that times out can say why (and, being a
handler, it also keeps Python's last-resort handler from printing pool noise on stderr).
"""

from __future__ import annotations

import logging
import re
import threading

from parity.ports.secret import redact_credentials

_LOGGERS = ("psycopg", "psycopg.pool", "aiomysql")
_PASSWORD_SETTING = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)
_lock = threading.Lock()
_secrets: set[str] = set()
_last: dict[str, str] = {}


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return _PASSWORD_SETTING.sub(r"\1***", redact_credentials(text))


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True


class _Record(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING:
            return
        message = record.getMessage()
        with _lock:
            for pool in list(_last):
                if repr(pool) in message:  # psycopg_pool quotes its name: 'parity-x-1' is not 'parity-x-12'
                    _last[pool] = message


_installed = False


def watch(pool_name: str, *secrets: str) -> None:
    """Start keeping ``pool_name``'s last warning; redact ``secrets`` from every driver log line."""
    global _installed
    with _lock:
        _secrets.update(s for s in secrets if s)
        _last.setdefault(pool_name, "")
        if _installed:
            return
        _installed = True
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.addFilter(_Redact())
        logger.addHandler(_Record())


def last_warning(pool_name: str) -> str | None:
    """The pool's last logged warning (redacted), without the pool's name, or None."""
    with _lock:
        message = _last.get(pool_name)
    if not message:
        return None
    return message.replace(f"error connecting in {pool_name!r}: ", "").strip()
