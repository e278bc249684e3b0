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
    "nats": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 "
            "-js -sd /var/lib/nats-server -l /var/log/nats-server.log",
    "mosquitto": "mosquitto -d -c /etc/mosquitto/mosquitto.conf",
}
NATS_URL = os.environ.get("PARITY_TEST_NATS_URL", "nats://127.0.0.1:4222")
MQTT_URL = os.environ.get("PARITY_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
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


def stop_by_pid(pid: int, sig: int, port: int, timeout: float = 60.0) -> None:
    """Stop exactly the process ``pid`` and wait until it is gone and ``port`` is closed.

    Waiting for the process itself matters: a server closes its port before it finishes shutting
    down, and a restart issued in between sees it still running and does nothing.
    """
    import time

    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    while reachable("127.0.0.1", port, timeout=0.2) and time.monotonic() < deadline:
        time.sleep(0.05)


def start_service(name: str, port: int, timeout: float = 60.0) -> None:
    """Start a stopped service with its documented command and wait for its port."""
    import subprocess
    import time

    subprocess.run(START[name], shell=True, check=False, capture_output=True)
    deadline = time.monotonic() + timeout
    while not reachable("127.0.0.1", port, timeout=0.2) and time.monotonic() < deadline:
        time.sleep(0.1)
