"""Moving data into the online store: materialization (and, later, stream consumers)."""
