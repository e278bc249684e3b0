"""The registry: a SQLite file holding every feature's current definition, version and history."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from dataclasses import dataclass, field

from parity.errors import StoreError
from parity.plan.catalog import Catalog
from parity.registry.versions import Versions, metadata

_SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    ref TEXT PRIMARY KEY, version TEXT NOT NULL, kind TEXT NOT NULL, dtype TEXT NOT NULL,
    definition TEXT NOT NULL, metadata TEXT NOT NULL, location TEXT NOT NULL, applied_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feature_versions (
    ref TEXT NOT NULL, version TEXT NOT NULL, definition TEXT NOT NULL, first_applied_at TEXT NOT NULL,
    PRIMARY KEY (ref, version)
);
CREATE TABLE IF NOT EXISTS applies (
    id INTEGER PRIMARY KEY AUTOINCREMENT, applied_at TEXT NOT NULL, summary TEXT NOT NULL
);
"""


@dataclass
class Diff:
    added: list[tuple[str, str]] = field(default_factory=list)  # (ref, version)
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # (ref, old, new)
    metadata_changed: list[str] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    unchanged: int = 0
    warnings: list[str] = field(default_factory=list)  # e.g. sources that could not be checked

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.metadata_changed or self.removed)

    def render(self) -> str:
        lines = [f"  + {ref}  (version {v})" for ref, v in self.added]
        lines += [f"  ~ {ref}  (version {old} -> {new})" for ref, old, new in self.changed]
        lines += [f"  ~ {ref}  (description/owner/tags only; version kept)" for ref in self.metadata_changed]
        lines += [f"  - {ref}  (was version {v})" for ref, v in self.removed]
        head = (
            f"{len(self.added)} added, {len(self.changed)} changed, {len(self.metadata_changed)} metadata only, "
            f"{len(self.removed)} removed, {self.unchanged} unchanged"
        )
        return "\n".join([head, *lines, *(f"  ! {w}" for w in self.warnings)])


@dataclass(frozen=True)
class RegisteredFeature:
    ref: str
    version: str
    kind: str
    dtype: str
    definition: dict[str, object]
    metadata: dict[str, object]
    location: str


class Registry:
    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        try:
            self.con = sqlite3.connect(path)
            self.con.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the registry at {path}: {exc}") from None

    def features(self) -> dict[str, RegisteredFeature]:
        rows = self.con.execute(
            "SELECT ref, version, kind, dtype, definition, metadata, location FROM features ORDER BY ref"
        ).fetchall()
        return {r[0]: RegisteredFeature(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5]), r[6]) for r in rows}

    def diff(self, catalog: Catalog) -> tuple[Diff, list[tuple[str, str, str, str, str, str, str]]]:
        versions = Versions(catalog)
        held = self.features()
        diff = Diff()
        rows = []
        for (entity, name), fd in sorted(catalog.features.items()):
            ref = fd.ref
            version = versions.version(fd)
            meta = metadata(fd)
            definition = json.dumps(versions.definition(fd), sort_keys=True, default=str)
            kind = "source" if fd.view else "resolver"
            rows.append((ref, version, kind, repr(fd.dtype), definition, json.dumps(meta, sort_keys=True), fd.location))
            old = held.pop(ref, None)
            if old is None:
                diff.added.append((ref, version))
            elif old.version != version:
                diff.changed.append((ref, old.version, version))
            elif old.metadata != meta:
                diff.metadata_changed.append(ref)
            else:
                diff.unchanged += 1
        diff.removed = [(ref, f.version) for ref, f in held.items()]
        return diff, rows

    def apply(self, catalog: Catalog) -> Diff:
        diff, rows = self.diff(catalog)
        now = dt.datetime.now(dt.UTC).isoformat()
        with self.con:  # one transaction: all or nothing
            self.con.execute("DELETE FROM features")
            self.con.executemany(
                "INSERT INTO features (ref, version, kind, dtype, definition, metadata, location, applied_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(*r, now) for r in rows],
            )
            self.con.executemany(
                "INSERT OR IGNORE INTO feature_versions (ref, version, definition, first_applied_at) VALUES (?, ?, ?, ?)",
                [(r[0], r[1], r[4], now) for r in rows],
            )
            summary = json.dumps({"added": len(diff.added), "changed": len(diff.changed), "removed": len(diff.removed)})
            self.con.execute("INSERT INTO applies (applied_at, summary) VALUES (?, ?)", (now, summary))
        return diff

    def history(self, ref: str) -> list[tuple[str, str]]:
        return self.con.execute(
            "SELECT version, first_applied_at FROM feature_versions WHERE ref=? ORDER BY first_applied_at", (ref,)
        ).fetchall()

    def close(self) -> None:
        self.con.close()
