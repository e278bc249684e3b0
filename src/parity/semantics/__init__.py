"""The rules that must hold everywhere, one module each. Both engines call these; neither re-implements them.

- ``time``: every timestamp is UTC; naive input is rejected unless a zone is declared.
- ``ordering``: which of two rows of one key is newer (event time, created time, ingestion order).
- ``asof``: which source row is visible and chosen for key k at time t.
- ``max_age``: when a chosen value is too old to serve.
- ``values``: how a stored value becomes the Python value a resolver sees, in both paths.
"""
