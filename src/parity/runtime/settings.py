"""One typed settings object, from ``parity.toml`` and ``PARITY_*`` environment variables.

Environment wins over the file: ``PARITY_DEFINITIONS``, ``PARITY_ONLINE_STORE_TYPE``,
``PARITY_ONLINE_STORE_PATH``, ``PARITY_ONLINE_STORE_URL``, ``PARITY_REGISTRY_PATH``, ``PARITY_NATS_URL``,
``PARITY_MQTT_URL`` (the stream brokers, ``[streams] nats_url`` / ``mqtt_url``; a URL may be a
reference such as ``env:NAME`` when it carries credentials), ``PARITY_FEATURE_LOG_SAMPLE_RATE``
(``[feature_log] sample_rate``, 0 to 1; ``max_rows`` bounds its buffer; ``part_seconds`` is how
long a log file stays open).
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass
from typing import Any

from parity.errors import ConfigError

FILENAME = "parity.toml"


@dataclass(frozen=True)
class Settings:
    root: str
    name: str
    definitions: str
    online_store_type: str
    online_store_path: str
    registry_path: str
    online_store_url: str | None = None
    online_store_namespace: str = "parity"
    nats_url: str = "nats://127.0.0.1:4222"
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    feature_log_sample_rate: float = 0.01  # share of online queries whose served values are logged
    feature_log_max_rows: int = 200_000  # rows buffered before a query's rows are dropped (and counted)
    feature_log_part_seconds: float = 60.0  # a log part is closed (readable) this long after it opened
    monitor_path: str = ".parity/monitor.db"  # baselines and monitor results
    record_baselines: bool = True  # every training set profiles its features as a baseline
    monitor_interval_seconds: float | None = None  # parity serve runs the monitors this often (None: never)
    monitor_bucket: str = "1h"
    monitor_webhook: str | None = None  # a reference (env:/file:) to the URL breaches are POSTed to
    offline_memory_budget: int | None = None  # bytes a training set's source rows may take (None: from the machine)
    offline_partitions: int | None = None  # key partitions of a training set (None: from the budget)
    spark_master: str | None = None  # engine="spark": the cluster (None: an active session, else local[*])
    spark_conf: tuple[tuple[str, str], ...] = ()  # engine="spark": settings given to the Spark session

    def resolve(self, path: str) -> str:
        return path if os.path.isabs(path) else os.path.join(self.root, path)


def load_settings(root: str, env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    root = os.path.abspath(root)
    path = os.path.join(root, FILENAME)
    data: dict[str, Any] = {}
    if os.path.exists(path):
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    elif "PARITY_DEFINITIONS" not in env:
        raise ConfigError(
            f"no {FILENAME} in {root}; run 'parity init' to create a project, or change to a project folder"
        )
    project = _table(data, "project", path)
    online = _table(data, "online_store", path)
    registry = _table(data, "registry", path)
    streams = _table(data, "streams", path)
    feature_log = _table(data, "feature_log", path)
    unknown = sorted(set(feature_log) - {"sample_rate", "max_rows", "part_seconds"})
    if unknown:
        raise ConfigError(f"{path}: [feature_log] has no setting {unknown[0]!r}; known: max_rows, part_seconds, "
                          "sample_rate")
    from_env = "PARITY_FEATURE_LOG_SAMPLE_RATE" in env
    rate = env["PARITY_FEATURE_LOG_SAMPLE_RATE"] if from_env else feature_log.get("sample_rate", 0.01)
    try:
        sample_rate = -1.0 if isinstance(rate, bool) else float(rate)
    except (TypeError, ValueError):
        sample_rate = -1.0
    if not 0 <= sample_rate <= 1:
        where = "PARITY_FEATURE_LOG_SAMPLE_RATE" if from_env else f"{path}: feature_log.sample_rate"
        raise ConfigError(f"{where} {rate!r} must be a number from 0 (off) to 1 (every query)")
    part_seconds = feature_log.get("part_seconds", 60.0)
    if not isinstance(part_seconds, int | float) or isinstance(part_seconds, bool) or not 0 < part_seconds <= 86_400:
        raise ConfigError(f"{path}: feature_log.part_seconds {part_seconds!r} must be seconds, from above 0 to a day")
    max_rows = feature_log.get("max_rows", 200_000)
    if not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 1:
        raise ConfigError(f"{path}: feature_log.max_rows {max_rows!r} must be a positive whole number")
    monitor = _table(data, "monitor", path)
    unknown = sorted(set(monitor) - {"path", "baselines", "interval", "bucket", "webhook"})
    if unknown:
        raise ConfigError(f"{path}: [monitor] has no setting {unknown[0]!r}; known: baselines, bucket, interval, "
                          "path, webhook")
    interval = _seconds(monitor.get("interval"), f"{path}: monitor.interval")
    bucket = monitor.get("bucket", "1h")
    if _seconds(bucket, f"{path}: monitor.bucket") is None:
        raise ConfigError(f"{path}: monitor.bucket must be a length of time such as \"1h\"")
    webhook = monitor.get("webhook")
    if webhook is not None and (not isinstance(webhook, str) or not webhook.startswith(("env:", "file:"))):
        raise ConfigError(f"{path}: monitor.webhook must be a reference such as \"env:PARITY_MONITOR_WEBHOOK\" (a "
                          "webhook URL often carries a token: never in the file)")
    baselines = monitor.get("baselines", True)
    if not isinstance(baselines, bool):
        raise ConfigError(f"{path}: monitor.baselines {baselines!r} must be true or false")
    offline = _table(data, "offline", path)
    unknown = sorted(set(offline) - {"memory_budget", "partitions"})
    if unknown:
        raise ConfigError(f"{path}: [offline] has no setting {unknown[0]!r}; known: memory_budget, partitions")
    budget = offline.get("memory_budget")
    budget_bytes = None if budget is None else _bytes(budget, f"{path}: offline.memory_budget")
    partitions = offline.get("partitions")
    if partitions is not None and (not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1):
        raise ConfigError(f"{path}: offline.partitions {partitions!r} must be a whole number of 1 or more (or unset: "
                          "derived from the memory budget)")
    spark = _table(data, "spark", path)
    unknown = sorted(set(spark) - {"master", "conf"})
    if unknown:
        raise ConfigError(f"{path}: [spark] has no setting {unknown[0]!r}; known: conf, master")
    spark_master = env.get("PARITY_SPARK_MASTER", _text(spark, "spark", "master", path, "") or None)
    spark_conf = spark.get("conf", {})
    if not isinstance(spark_conf, dict) or not all(isinstance(v, str | int | float | bool) for v in spark_conf.values()):
        raise ConfigError(f"{path}: [spark] conf must be a table of Spark settings, e.g. "
                          "conf = { \"spark.driver.memory\" = \"4g\" }")
    store_type = env.get("PARITY_ONLINE_STORE_TYPE", _text(online, "online_store", "type", path, "sqlite"))
    if store_type not in ("sqlite", "redis"):
        raise ConfigError(f"{path}: online_store.type {store_type!r} is not known; use 'sqlite' or 'redis'")
    definitions = env.get("PARITY_DEFINITIONS", _text(project, "project", "definitions", path, ""))
    if not definitions:
        raise ConfigError(f"{path}: set [project] definitions = \"<module or file.py>\"")
    name = _text(project, "project", "name", path, os.path.basename(root))
    return Settings(
        root=root,
        name=name,
        definitions=definitions,
        online_store_type=store_type,
        online_store_path=env.get("PARITY_ONLINE_STORE_PATH", _text(online, "online_store", "path", path,
                                                                    ".parity/online.db")),
        registry_path=env.get("PARITY_REGISTRY_PATH", _text(registry, "registry", "path", path, ".parity/registry.db")),
        online_store_url=env.get("PARITY_ONLINE_STORE_URL", _text(online, "online_store", "url", path, "") or None),
        online_store_namespace=_text(online, "online_store", "namespace", path, name),
        nats_url=env.get("PARITY_NATS_URL", _text(streams, "streams", "nats_url", path, "nats://127.0.0.1:4222")),
        mqtt_url=env.get("PARITY_MQTT_URL", _text(streams, "streams", "mqtt_url", path, "mqtt://127.0.0.1:1883")),
        feature_log_sample_rate=sample_rate,
        feature_log_max_rows=max_rows,
        feature_log_part_seconds=float(part_seconds),
        monitor_path=env.get("PARITY_MONITOR_PATH", _text(monitor, "monitor", "path", path, ".parity/monitor.db")),
        record_baselines=baselines,
        monitor_interval_seconds=interval,
        monitor_bucket=str(bucket),
        monitor_webhook=webhook,
        offline_memory_budget=budget_bytes,
        offline_partitions=partitions,
        spark_master=spark_master,
        spark_conf=tuple((str(k), str(v).lower() if isinstance(v, bool) else str(v)) for k, v in spark_conf.items()),
    )


_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "K": 10**3, "M": 10**6, "G": 10**9,
          "T": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def _bytes(value: object, what: str) -> int:
    """A size written as "512MB", "4GiB" or a whole number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        text = value.strip().upper().replace(" ", "")
        number = text.rstrip("KMGTIB")
        unit = text[len(number):] or "B"
        try:
            size = float(number) * _UNITS[unit]
        except (KeyError, ValueError):
            size = 0.0
        if math.isfinite(size) and size >= 1:
            return int(size)
    raise ConfigError(f"{what} {value!r} must be a size such as \"4GB\" or \"512MiB\"")


def _seconds(value: object, what: str) -> float | None:
    """A length of time written as the windows write widths ("30s", "10m", "1h"); None when unset."""
    if value is None:
        return None
    from parity.define.windows import parse_width
    from parity.errors import DefinitionError

    try:
        width = parse_width(value, what)
    except DefinitionError:
        width = None
    if width is None or width <= 0:
        raise ConfigError(f"{what} {value!r} must be a length of time such as \"10m\" or \"1h\"")
    return width / 1e6


def _table(data: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {name!r} must be a table ([{name}] with keys under it), not {type(value).__name__} "
                          f"{value!r}")
    return value


def _text(table: dict[str, Any], section: str, key: str, path: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{path}: [{section}] {key} must be a string in quotes, not {type(value).__name__} {value!r}")
    return value
