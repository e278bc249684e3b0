"""The audit trail: append-only, hash-chained, with signed checkpoints kept apart from it.

Every record is one JSON line ``{"seq", "prev", "time", "principal", "action", …, "hash"}`` where
``hash = SHA-256(prev ‖ the line's canonical JSON without "hash")`` — "hash" is written last, so
the hashed bytes are the line without that suffix and verifying is a hash per line, no parse:
editing, deleting or reordering a record breaks the chain at that line. A chain alone cannot show truncation (drop the
last k lines and what is left still verifies), so every second — or 1,000 records — the writer
appends a **checkpoint** ``{size, hash, time}`` signed with Ed25519 to a separate file
(``PARITY_AUDIT_CHECKPOINTS``; keep it on other storage, or ship it to a witness): a log shorter
than a checkpoint, or whose record at a checkpoint's size has another hash, is caught, and a
checkpoint cannot be forged without the private key. ``parity audit verify`` checks both with the
public key alone.

Group commit: records are buffered and written, fsynced, every ``flush_interval`` (100 ms) by the
server's flusher (token changes and policy changes flush at once). A crash loses at most the
records of the last ``flush_interval`` — never a committed one, and a torn last line (a crash in a
write) is cut off when the log is next opened, never accepted. Several workers append to one chain:
each flush takes an exclusive ``flock`` and continues from the file's last record.

Entity keys are stored as a keyed hash (keyed BLAKE2b, a MAC, with a secret derived from the signing key)
unless ``entity_keys="raw"``: the trail can say that two requests asked for the same customer
without holding who the customer is.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import itertools
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from parity.errors import ConfigError, MissingExtraError, StoreError

if TYPE_CHECKING:
    from parity.runtime.project import Project


_CHAINED = frozenset({"prev", "seq", "hash", "time"})


class AuditUnavailable(StoreError):
    """The trail cannot be written and its buffer is full."""

GENESIS = "0" * 64
MAX_BUFFERED = 200_000  # records held while the trail cannot be written; past it, requests are refused
_TAIL_READ = 1 << 16
_HASH_KEY = b',"hash":"'
_SUFFIX = len(_HASH_KEY) + 64 + len(b'"}\n')  # what follows a record's hashed body on its line


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise MissingExtraError("cryptography", "server") from None
    return ed25519


def _canonical(record: dict[str, object]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def record_hash(prev: str, body: bytes) -> str:
    return hashlib.sha256(prev.encode() + body).hexdigest()


def checkpoint_message(size: int, last_hash: str, at: str) -> bytes:
    return f"parity-audit-checkpoint\n{size}\n{last_hash}\n{at}\n".encode()


@dataclass
class AuditPaths:
    log: str
    checkpoints: str
    key: str  # the Ed25519 private key (PEM, 0600); the public key sits beside it as .pub

    @classmethod
    def for_root(cls, state_dir: str) -> AuditPaths:
        return cls(os.path.join(state_dir, "audit", "log.jsonl"),
                   os.environ.get("PARITY_AUDIT_CHECKPOINTS", os.path.join(state_dir, "audit", "checkpoints.jsonl")),
                   os.environ.get("PARITY_AUDIT_KEY_PATH", os.path.join(state_dir, "audit", "signing.key")))


def load_or_create_key(path: str) -> Any:
    ed25519 = _ed25519()
    from cryptography.hazmat.primitives import serialization

    if os.path.exists(path):
        with open(path, "rb") as fh:
            key = serialization.load_pem_private_key(fh.read(), password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ConfigError(f"{path}: not an Ed25519 private key")
        return key
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    with open(path + ".pub", "wb") as fh:
        fh.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo))
    return key


def _last_newline(fh: Any, before: int) -> int:
    """The offset of the last newline before offset ``before`` (-1: none), read backwards."""
    start = max(0, before - _TAIL_READ)
    while True:
        fh.seek(start)
        cut = fh.read(before - start).rfind(b"\n")
        if cut >= 0 or start == 0:
            return start + cut if cut >= 0 else -1
        start = max(0, start - _TAIL_READ)


def _settle_tail(fh: Any) -> bytes | None:
    """Cut a torn last line (a crash in a write leaves one without its newline: never accepted)
    and return the last complete line, or None for an empty log. The file is locked."""
    end = fh.seek(0, os.SEEK_END)
    if end == 0:
        return None
    fh.seek(end - 1)
    if fh.read(1) != b"\n":
        end = _last_newline(fh, end) + 1
        fh.truncate(end)
        if end == 0:
            return None
    begin = _last_newline(fh, end - 1) + 1  # just after the newline that ends the line before the last
    fh.seek(begin)
    return bytes(fh.read(end - 1 - begin))


@dataclass
class AuditLog:
    """The writer. ``append`` is a list append (the hot path); ``flush`` writes and fsyncs."""

    paths: AuditPaths
    entity_keys: str = "hash"  # or "raw"
    checkpoint_every_records: int = 1_000
    checkpoint_every_seconds: float = 1.0
    _buffer: list[bytes] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, project: Project) -> AuditLog:
        """The project's trail (``AuditPaths.for_root``), entity keys as ``PARITY_AUDIT_ENTITY_KEYS`` says."""
        return cls(AuditPaths.for_root(project.settings.resolve(".parity")),
                   entity_keys=os.environ.get("PARITY_AUDIT_ENTITY_KEYS", "hash"))

    def __post_init__(self) -> None:
        if self.entity_keys not in ("hash", "raw"):
            raise ConfigError(f"audit entity_keys {self.entity_keys!r}: expected 'hash' or 'raw'")
        self._key = load_or_create_key(self.paths.key)
        from cryptography.hazmat.primitives import serialization

        raw = self._key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                      serialization.NoEncryption())
        self._pepper = hashlib.sha256(b"parity-audit-entity-keys\n" + raw).digest()[:32]
        os.makedirs(os.path.dirname(os.path.abspath(self.paths.log)), exist_ok=True)
        os.makedirs(os.path.dirname(os.path.abspath(self.paths.checkpoints)), exist_ok=True)
        for path in (self.paths.log, self.paths.checkpoints):  # who was asked what is nobody else's business
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        with open(self.paths.log, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            _settle_tail(fh)
        self._since_checkpoint = 0
        self._checkpointed_at = time.monotonic()

    def entity_key(self, key: object) -> object:
        if self.entity_keys == "raw":
            return key
        try:
            text = orjson.dumps(key, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # nested past orjson's limit (a bad request, refused later): hashed all the same
            text = repr(key).encode()
        return hashlib.blake2b(text, key=self._pepper, digest_size=16).hexdigest()

    def append(self, principal: str, action: str, outcome: str, **details: object) -> None:
        """Buffer one record (serialized now: a detail that cannot be written as JSON is said so,
        and never poisons the group). AuditUnavailable once ``MAX_BUFFERED`` records wait for a
        trail that cannot be written: a request that cannot be audited is not answered."""
        clash = _CHAINED.intersection(details)
        if clash:  # the chain's own fields are written by flush; a detail of that name would forge one
            raise ValueError(f"audit detail {min(clash)!r} is a field of the chain itself; name it otherwise")
        if len(self._buffer) >= MAX_BUFFERED:
            raise AuditUnavailable(f"the audit trail cannot be written ({len(self._buffer):,} records waiting)")
        record: dict[str, object] = {"time": time.time_ns() // 1000, "principal": principal, "action": action,
                                     "outcome": outcome}
        try:
            body = _canonical({**record, **details})
        except TypeError:  # orjson's JSONEncodeError: a type it cannot write, or nesting past its limit
            body = _canonical({**record, "details_error": "the request's details could not be written as JSON"})
        self._buffer.append(body)

    def flush(self, *, sign: bool = False) -> int:
        """Write what is buffered as one group (fsynced), and a checkpoint when one is due (or
        ``sign``: now, over what this writer wrote since its last one)."""
        with self._lock:
            batch, self._buffer = self._buffer, []
            if not batch and self._since_checkpoint == 0:
                return 0
            durable = False
            try:
                with open(self.paths.log, "a+b") as fh:
                    fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes
                    last = _settle_tail(fh)  # a writer (this one, or another worker) may have died in a write
                    seq, prev = 0, GENESIS
                    if last is not None:
                        tail = orjson.loads(last)
                        seq, prev = int(tail["seq"]) + 1, str(tail["hash"])
                    lines = []
                    for record in batch:
                        body = b'{"prev":"' + prev.encode() + b'","seq":' + str(seq).encode() + b"," + record[1:]
                        prev = record_hash(prev, body)
                        lines.append(body[:-1] + _HASH_KEY + prev.encode() + b'"}')
                        seq += 1
                    if lines:
                        start = fh.seek(0, os.SEEK_END)
                        try:
                            fh.write(b"\n".join(lines) + b"\n")
                            fh.flush()
                            os.fsync(fh.fileno())
                        except BaseException:
                            with contextlib.suppress(OSError):  # not durable: taken back, written again later
                                fh.truncate(start)
                            raise
                    durable = True
                    self._since_checkpoint += len(lines)
                    due = (sign or self._since_checkpoint >= self.checkpoint_every_records
                           or time.monotonic() - self._checkpointed_at >= self.checkpoint_every_seconds)
                    if due and seq > 0:
                        self._checkpoint(seq, prev)
            except BaseException:
                if not durable:  # written again by the next flush; once durable, only the checkpoint failed
                    self._buffer = batch + self._buffer
                raise
            return len(lines)

    def _checkpoint(self, size: int, last_hash: str) -> None:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        signature = self._key.sign(checkpoint_message(size, last_hash, at))
        line = _canonical({"size": size, "hash": last_hash, "time": at,
                           "sig": base64.b64encode(signature).decode()})
        with open(self.paths.checkpoints, "ab") as fh:
            fh.write(line + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._since_checkpoint = 0
        self._checkpointed_at = time.monotonic()

    def close(self) -> None:
        self.flush(sign=True)  # a closing writer leaves its tail signed


# -- reading ------------------------------------------------------------------------------


@dataclass
class Verdict:
    records: int
    checkpoints: int
    signed_through: int  # records covered by the last valid checkpoint
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def read_records(path: str) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as fh:
        yield from enumerate(fh, 1)


def _why_broken(where: str, line: bytes, expected_seq: int) -> str:
    try:
        record = orjson.loads(line)
        seq = record.get("seq")
    except (orjson.JSONDecodeError, AttributeError):
        return f"{where}: not a record"
    if seq != expected_seq:
        return f"{where}: seq {seq!r} where {expected_seq} was next (a record deleted, inserted or moved)"
    return f"{where}: the record's hash does not match its content and chain (edited)"


def verify(paths: AuditPaths, public_key_pem: bytes | None = None) -> Verdict:
    """Check the chain line by line, then every checkpoint's signature against the chain."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    problems: list[str] = []
    hashes: list[str] = []
    prev = GENESIS
    if os.path.exists(paths.log):
        for number, line in read_records(paths.log):
            if not line.endswith(b"\n"):
                problems.append(f"{paths.log}:{number}: torn last line (a crash in a write, or a cut): not a record")
                break
            claimed = line[-_SUFFIX + len(_HASH_KEY):-3]
            if (len(line) > _SUFFIX and line[-_SUFFIX:-_SUFFIX + len(_HASH_KEY)] == _HASH_KEY
                    and line.endswith(b'"}\n') and record_hash(prev, line[:-_SUFFIX] + b"}").encode() == claimed):
                hashes.append(prev := claimed.decode())  # the line's own "prev" and "seq" are in what is hashed
                continue
            problems.append(_why_broken(f"{paths.log}:{number}", line, len(hashes)))
            break
    pem = public_key_pem
    if pem is None:
        with open(paths.key + ".pub", "rb") as fh:
            pem = fh.read()
    public = serialization.load_pem_public_key(pem)
    if not isinstance(public, _ed25519().Ed25519PublicKey):
        raise ConfigError("the audit public key is not an Ed25519 key")
    checkpoints, signed_through, last_size = 0, 0, 0
    if os.path.exists(paths.checkpoints):
        with open(paths.checkpoints, "rb") as fh:
            for number, line in enumerate(fh, 1):
                where = f"{paths.checkpoints}:{number}"
                try:
                    cp = orjson.loads(line)
                    size, last_hash, at = int(cp["size"]), str(cp["hash"]), str(cp["time"])
                    public.verify(base64.b64decode(cp["sig"]), checkpoint_message(size, last_hash, at))
                except InvalidSignature:
                    problems.append(f"{where}: checkpoint signature is not valid (forged or altered)")
                    continue
                except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
                    problems.append(f"{where}: not a checkpoint")
                    continue
                checkpoints += 1
                if size < last_size:
                    problems.append(f"{where}: checkpoint size {size} after {last_size} (checkpoints reordered)")
                last_size = max(last_size, size)
                if size > len(hashes):
                    problems.append(f"{where}: signed at {size} records but the log verifies {len(hashes)} "
                                    f"(truncated, or broken before)")
                elif hashes[size - 1] != last_hash:
                    problems.append(f"{where}: the log's record {size - 1} is not the one signed (rewritten)")
                else:
                    signed_through = max(signed_through, size)
    if hashes and checkpoints == 0:
        problems.append(f"{paths.checkpoints}: no valid checkpoint covers the log's {len(hashes):,} records (the "
                        f"checkpoints were removed, emptied or are kept elsewhere): truncation cannot be ruled out")
    return Verdict(len(hashes), checkpoints, signed_through, problems)


def search(paths: AuditPaths, *, principal: str | None = None, action: str | None = None,
           feature: str | None = None, outcome: str | None = None, since_us: int | None = None,
           until_us: int | None = None) -> Iterator[dict[str, Any]]:
    if not os.path.exists(paths.log):
        return
    for _, line in read_records(paths.log):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue  # not a record (verify says so); search shows records
        if principal is not None and record.get("principal") != principal:
            continue
        if action is not None and record.get("action") != action:
            continue
        if outcome is not None and record.get("outcome") != outcome:
            continue
        features = record.get("features")
        if feature is not None and not (isinstance(features, list) and feature in features):
            continue
        stamp = record.get("time", 0)
        if not isinstance(stamp, int):
            stamp = 0
        if (since_us is not None and stamp < since_us) or (until_us is not None and stamp > until_us):
            continue
        yield record


def hashed_keys(log: AuditLog, entities: object, names: Sequence[str], limit: int = 1_000) -> list[object]:
    """The request's entity keys as the trail keeps them (hashed by default), one per entity: the
    plan's key ``names`` with their values — whatever form the request took (columns, one entity,
    rows) and whatever else it sent, so the same customer always has the same hash, and user 7
    differs from card 7."""
    keys = list(names)
    if isinstance(entities, dict):
        columns = [entities.get(k) for k in keys]
        if any(isinstance(c, list) for c in columns):
            lists = [c if isinstance(c, list) else [c] for c in columns]
            return [log.entity_key([keys, list(v)]) for v in itertools.islice(zip(*lists), limit)]
        return [log.entity_key([keys, columns])]
    if isinstance(entities, list):
        return [log.entity_key([keys, [row.get(k) for k in keys] if isinstance(row, dict) else row])
                for row in entities[:limit]]
    return []
