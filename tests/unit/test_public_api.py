import subprocess
import sys

import parity


def test_public_names_are_a_decision():
    assert parity.__all__ == [
        "Aggregate", "AsyncClient", "Bool", "CircuitBreaker", "Client", "Date", "DeltaSource", "DuckDBSource", "Entity", "Feature", "FeatureView", "Float64",
        "Grant", "HasOne", "Int64", "List", "MqttTopic", "MySQLSource", "NatsSubject", "ParityError", "ParquetSource",
        "PostgresSource", "Principal", "Project", "Role", "SQLiteSource", "StreamSource", "String", "Timestamp", "WindowView", "agg", "col", "expect",
        "resolver",
    ]
    assert parity.__all__ == sorted(parity.__all__)
    for name in parity.__all__:
        value = getattr(parity, name)  # every public name is parity's own object, not a re-bound stand-in
        origin = getattr(value, "__module__", None) or type(value).__module__
        assert origin.startswith("parity."), (name, origin)


def test_import_parity_loads_no_heavy_library():
    code = (
        "import sys, parity\n"
        "heavy = [m for m in ('polars', 'pyarrow', 'duckdb', 'pandas', 'msgpack', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
