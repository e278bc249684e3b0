#!/usr/bin/env bash
# Make sure the real services the integration tests use are up on loopback; start what is down.
# Probes each port first, so the same script serves CI, a developer machine and a laptop.
set -uo pipefail
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_up() { for _ in $(seq 1 60); do up "$1" && return 0; sleep 0.5; done; echo "service on port $1 did not come up" >&2; return 1; }
status=0
if ! up 5432; then pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start; wait_up 5432 || status=1; fi
if ! up 6379; then redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log; wait_up 6379 || status=1; fi
if ! up 3306; then start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd; wait_up 3306 || status=1; fi
if ! up 4222; then
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_up 4222 || status=1
fi
if ! up 1883; then mosquitto -d -c /etc/mosquitto/mosquitto.conf; wait_up 1883 || status=1; fi
exit $status
