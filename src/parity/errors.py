"""Every error parity raises that a user may catch.

::

    ParityError
    ├── DefinitionError            a definition is wrong (carries file:line of the definition)
    │   ├── DuplicateNameError     two definitions claim one name
    │   ├── UnknownFeatureError    a reference names no feature ("did you mean ...?")
    │   ├── CycleError             resolvers depend on each other in a loop
    │   ├── UnresolvableInputError a resolver input cannot be reached
    │   └── SignatureError         a resolver's signature disagrees with its features' dtypes
    ├── DataError                  data handed to parity is wrong (carries row / column / file)
    │   ├── NaiveTimestampError    a timestamp without a zone where none was declared
    │   ├── MissingColumnError     a spine or source lacks a column it must have
    │   └── EntityKeyError         an entity key is missing or has the wrong type
    ├── ConfigError                parity.toml / environment is wrong
    │   └── MissingExtraError      an optional dependency is not installed (gives the pip line)
    ├── StoreError                 an online store, registry or source system cannot be read or written
    ├── AccessError                who asks may not do this
    │   ├── AuthenticationError    no identity, or one that is unknown, malformed or revoked
    │   └── AccessDenied           a principal asks for features no grant of its roles gives it
    └── RequestError               the server refused a client's request (status, code, field)

Only the standard library is used here so that ``import parity`` stays instant.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ParityError(Exception):
    """Base of every parity error."""


class DefinitionError(ParityError):
    """A feature definition is invalid; ``location`` is the file:line where it was written."""

    def __init__(self, message: str, *, location: str | None = None) -> None:
        self.location = location
        super().__init__(f"{message} (defined at {location})" if location else message)


class DuplicateNameError(DefinitionError):
    pass


class UnknownFeatureError(DefinitionError):
    """A reference that names no feature. ``suggestions`` holds the closest known names."""

    def __init__(
        self, reference: str, known: Iterable[str], *, where: str = "", location: str | None = None
    ) -> None:
        self.reference = reference
        self.suggestions = difflib.get_close_matches(reference, sorted(set(known)), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}unknown feature {reference!r}{hint}", location=location)


class CycleError(DefinitionError):
    def __init__(self, chain: list[str], *, location: str | None = None) -> None:
        self.chain = chain
        super().__init__("resolvers form a cycle: " + " -> ".join(chain), location=location)


class UnresolvableInputError(DefinitionError):
    pass


class SignatureError(DefinitionError):
    pass


class DataError(ParityError):
    """Input data is wrong; the message names the column, row or file."""


class NaiveTimestampError(DataError):
    pass


class MissingColumnError(DataError):
    pass


class EntityKeyError(DataError):
    pass


class ConfigError(ParityError):
    pass


class MissingExtraError(ConfigError):
    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"this needs the optional dependency {module!r}; install it with: pip install \"parity[{extra}]\""
        )


class StoreError(ParityError):
    pass


class WriterBusy(StoreError):
    """Another process holds the single writer of a stream source's event log."""


class AccessError(ParityError):
    pass


class AuthenticationError(AccessError):
    pass


class RequestError(ParityError):
    """What ``parity.Client`` raises for a refusal other than 401/403: the server's HTTP status
    (0 when it could not be reached), its machine-readable ``code`` and the ``field`` at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        self.status, self.code, self.field = status, code, field
        super().__init__(f"{code} ({status}): {message}" if status else message)


class AccessDenied(AccessError):
    """``denied`` lists the references refused, each with why."""

    def __init__(self, principal: str, denied: dict[str, str], *, verb: str = "read",
                 field: str | None = "features") -> None:
        self.principal = principal
        self.denied = denied
        self.field = field  # the request field refused (HTTP error bodies)
        shown = "; ".join(f"{ref} ({why})" for ref, why in list(denied.items())[:5])
        more = f"; and {len(denied) - 5} more" if len(denied) > 5 else ""
        super().__init__(f"{principal!r} may not {verb} {shown}{more}: grant it to one of its roles")


_NOISE = ("LINE ", "This error occurred", "Resolved plan", "Error originated", "CONTEXT:", "QUERY:")


def one_line(text: str) -> str:
    """A driver's or library's multi-line message as one line that keeps the cause.

    PostgreSQL's ``LINE n:`` / caret blocks, Polars' "This error occurred in the following
    expression" and the like are dropped; a HINT or DETAIL is kept after a semicolon.
    """
    kept: list[str] = []
    skip_rest = False
    for raw in str(text).splitlines():
        line = raw.strip()
        if not line or line.startswith("^") or set(line) <= {" ", "^"}:
            continue
        if line.startswith(_NOISE):
            skip_rest = line.startswith(("This error occurred", "Resolved plan"))
            continue
        if skip_rest:
            continue
        kept.append(line)
    return "; ".join(kept) or str(text).strip()
