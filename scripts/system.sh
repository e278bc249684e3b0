#!/usr/bin/env bash
# System packages the Spark engine needs beside pip's: Java 17+ and the JDBC drivers of PostgreSQL
# and MariaDB/MySQL (Debian's packages; their jars are added to every Spark session parity starts).
# Installs what is missing when it can (root with apt-get); otherwise says what to install.
set -uo pipefail
missing=()
command -v java > /dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
[ -f /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
[ -f /usr/share/java/mariadb-java-client.jar ] || missing+=(libmariadb-java)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" > /tmp/parity-apt.log 2>&1 \
    || { apt-get update -q > /dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" > /tmp/parity-apt.log 2>&1; } \
    || { echo "could not install ${missing[*]} (see /tmp/parity-apt.log)" >&2; exit 1; }
else
  echo "the Spark engine's tests need: ${missing[*]} (apt-get install ${missing[*]})" >&2
  exit 1
fi
