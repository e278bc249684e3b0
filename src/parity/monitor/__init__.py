"""Feature-level observability: the served-value log first (``feature_log``)."""
