"""The small interfaces engines call. Connectors implement them; the runtime wires them."""
