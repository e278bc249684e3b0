"""Real services on loopback for integration tests.

In CI (``CI=true``) a service that is not reachable fails the test: it must never pass by skipping.
Elsewhere the test skips and says how to start the service.
"""

from __future__ import annotations

import os
import socket

import pytest

START = {
    "postgresql": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "redis": 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
             "--dir /var/lib/redis --logfile /var/log/redis/ci.log",
    "mariadb": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
}
POSTGRES_URL = os.environ.get("PARITY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("PARITY_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("PARITY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int, start_hint: str | None = None) -> None:
    """Fail (CI) or skip (elsewhere) unless ``host:port`` accepts connections."""
    if reachable(host, port):
        return
    hint = start_hint or START.get(name, "")
    message = f"{name} is not reachable on {host}:{port}; start it with: {hint}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)
