"""The composition root: settings, loading definitions, wiring connectors, the Project façade."""
