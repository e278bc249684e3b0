"""The planner: a validated catalog of definitions and the step DAG both engines execute."""
