"""parity: define a feature once; train and serve the same value.

>>> import parity as pt
>>> user = pt.Entity("user", keys={"user_id": pt.Int64})

Importing parity loads only the definition API (standard library only); engines load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from parity.define.access import Grant, Principal, Role
from parity.define.dtypes import Bool, Date, Float64, Int64, List, String, Timestamp
from parity.define.entities import Entity, HasOne
from parity.define.expectations import expect
from parity.define.expressions import col
from parity.define.features import Feature, FeatureView
from parity.define.resolvers import CircuitBreaker, resolver
from parity.define.sources import (
    DeltaSource,
    DuckDBSource,
    MqttTopic,
    MySQLSource,
    NatsSubject,
    ParquetSource,
    PostgresSource,
    SQLiteSource,
    StreamSource,
)
from parity.define.windows import Aggregate, WindowView, agg
from parity.errors import ParityError

if TYPE_CHECKING:
    from parity.client import AsyncClient, Client
    from parity.runtime.project import Project

__all__ = [
    "Aggregate",
    "AsyncClient",
    "Bool",
    "CircuitBreaker",
    "Client",
    "Date",
    "DeltaSource",
    "DuckDBSource",
    "Entity",
    "Feature",
    "FeatureView",
    "Float64",
    "Grant",
    "HasOne",
    "Int64",
    "List",
    "MqttTopic",
    "MySQLSource",
    "NatsSubject",
    "ParityError",
    "ParquetSource",
    "PostgresSource",
    "Principal",
    "Project",
    "Role",
    "SQLiteSource",
    "StreamSource",
    "String",
    "Timestamp",
    "WindowView",
    "agg",
    "col",
    "expect",
    "resolver",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Project":
        from parity.runtime.project import Project

        return Project
    if name in ("Client", "AsyncClient"):
        from parity import client

        return getattr(client, name)
    raise AttributeError(f"module 'parity' has no attribute {name!r}")
