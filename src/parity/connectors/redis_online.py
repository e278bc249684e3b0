"""The Redis online store: compact values, pipelined multi-key reads, monotonic writes done
atomically inside Redis by a Lua script. Needs ``pip install "parity[redis]"``.

Layout (``ns`` is the namespace, ``table`` the feature-view version):

- ``ns:table:<msgpack key>`` → 16-byte header (event µs, created µs as big-endian doubles) + msgpack
  of the values. Doubles are exact for |µs| < 2^53 (the year 2255); larger times are refused.
- ``ns:__wm`` hash: table → watermark µs; ``ns:__sync:table`` hash: key → last request-time sync.
- ``ns:__tables`` set: the tables that exist.
- window indexes: ``ns:w:table:<key>`` sorted sets of events, ``ns:wk:table`` visibility per key,
  ``ns:ws:table:<slot>:<key>`` window sets, ``ns:w:table`` the names of all of them (see below).

Each key's write is atomic and monotonic (the script compares (event, created) with the held value
and keeps the newer; a full tie lets the later write win). A write of many keys runs as several
script calls in one pipeline: a failure part-way leaves every key either old or new, never torn,
and re-running is safe because writes are monotonic.
"""

from __future__ import annotations

import struct
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import msgpack

from parity.errors import MissingExtraError, StoreError
from parity.ports.online_store import NO_CREATED, SetAsk, SetMember, StoredRow, WindowEvent, empty_set_answer
from parity.ports.secret import Secret
from parity.semantics.keys import encode as encode_key

_HEADER = struct.Struct(">dd")
_ORDER = struct.Struct(">QQ")  # (created, sequence) + 2^63: unsigned, so byte order is numeric order
_FLIP = 1 << 63
_LIMIT = 2**53
_BATCH = 1000
_packb = msgpack.Packer(use_bin_type=True).pack

# KEYS: value keys; ARGV: new values (header + payload). Returns how many were written.
_WRITE = """
local written = 0
for i = 1, #KEYS do
  local new = ARGV[i]
  local held = redis.call('GET', KEYS[i])
  local take = true
  if held then
    local hev, hcr = struct.unpack('>d>d', string.sub(held, 1, 16))
    local nev, ncr = struct.unpack('>d>d', string.sub(new, 1, 16))
    if nev < hev or (nev == hev and ncr < hcr) then take = false end
  end
  if take then
    redis.call('SET', KEYS[i], new)
    written = written + 1
  end
end
return written
"""
# KEYS[1]: a hash; ARGV: field, value, field, value... — keeps the larger number per field.
_MAX_HASH = """
for i = 1, #ARGV, 2 do
  local held = redis.call('HGET', KEYS[1], ARGV[i])
  if not held or tonumber(ARGV[i + 1]) > tonumber(held) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
"""


class RedisOnlineStore:
    reads_may_block = True  # a network round trip, up to the socket timeout when Redis is slow
    # Window scores are doubles: exact within ±2^53 µs. Stream events outside it are refused at
    # ingest (``ingest.events``), never logged to fail every apply after them.
    time_range_us = (-_LIMIT + 1, _LIMIT - 1,
                     "the Redis online store holds exactly (±2^53 µs around 1970: years 1685 to 2255)")

    def __init__(self, url: Secret, *, namespace: str = "parity", timeout: float = 0.5) -> None:
        try:
            import redis
        except ImportError:
            raise MissingExtraError("redis", "redis") from None
        self._redis_errors = (redis.RedisError, OSError)
        self.secret = url
        self.ns = namespace
        try:
            self.client = redis.Redis.from_url(url.reveal(), socket_timeout=timeout, socket_connect_timeout=timeout,
                                               health_check_interval=10)
        except ValueError as exc:
            raise StoreError(url.redact(f"invalid Redis URL {url.reference}: {exc}")) from None
        # A rebuild is one MULTI/EXEC that can hold millions of members: it gets its own connection
        # with a timeout long enough for Redis to apply it (reads keep the short one).
        self._bulk = redis.Redis.from_url(url.reveal(), socket_timeout=max(timeout, 300.0),
                                          socket_connect_timeout=timeout, health_check_interval=10)
        self._write = self.client.register_script(_WRITE)
        self._max_hash = self.client.register_script(_MAX_HASH)
        self._tables: set[str] = set()
        self._timeout = timeout
        # by event loop (``aread``), weakly: a loop that is gone (asyncio.run after asyncio.run) takes its client
        self._async_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    def _fail(self, exc: Exception) -> StoreError:
        return StoreError(self.secret.redact(f"Redis online store ({self.secret.reference}): {type(exc).__name__}: {exc}"))

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._redis_errors as exc:
            raise self._fail(exc) from None

    def _key(self, table: str, key: tuple[object, ...]) -> bytes:
        return f"{self.ns}:{table}:".encode() + encode_key(key)

    def ensure_table(self, table: str) -> None:
        if table not in self._tables:
            self._call(self.client.sadd, f"{self.ns}:__tables", table)
            self._tables.add(table)

    def has_table(self, table: str) -> bool:
        return table in self._tables or bool(self._call(self.client.sismember, f"{self.ns}:__tables", table))

    def write(self, table: str, rows: Iterable[tuple[tuple[object, ...], StoredRow]]) -> int:
        self.ensure_table(table)
        prefix = f"{self.ns}:{table}:".encode()
        keys: list[bytes] = []
        values: list[bytes] = []
        pipe = self.client.pipeline(transaction=False)
        calls = 0
        for key, (ev, cr, payload) in rows:
            if not (-_LIMIT < ev < _LIMIT and -_LIMIT < cr < _LIMIT):
                raise StoreError(f"Redis online store: time {ev}/{cr} µs is beyond what it stores exactly (2^53 µs)")
            keys.append(prefix + encode_key(key))
            values.append(_HEADER.pack(ev, cr) + _packb(payload))
            if len(keys) == _BATCH:
                self._write(keys=keys, args=values, client=pipe)
                keys, values, calls = [], [], calls + 1
        if keys:
            self._write(keys=keys, args=values, client=pipe)
            calls += 1
        if not calls:
            return 0
        return sum(self._call(pipe.execute))

    def read(self, table: str, keys: Sequence[tuple[object, ...]]) -> list[StoredRow | None]:
        if not keys:
            return []
        return self._rows(self._call(self.client.mget, [self._key(table, k) for k in keys]))

    async def aread(self, table: str, keys: Sequence[tuple[object, ...]]) -> list[StoredRow | None]:
        """``read`` without blocking the event loop: the same MGET on an asyncio connection of the
        running loop, so a worker answers other requests during the round trip."""
        if not keys:
            return []
        try:
            raw = await self._async_client().mget([self._key(table, k) for k in keys])
        except self._redis_errors as exc:
            raise self._fail(exc) from None
        return self._rows(raw)

    def _async_client(self) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:  # an asyncio connection belongs to the loop that made it
            import redis.asyncio

            for gone in [other for other in self._async_clients if other.is_closed()]:
                del self._async_clients[gone]
            client = self._async_clients[loop] = redis.asyncio.Redis.from_url(
                self.secret.reveal(), socket_timeout=self._timeout, socket_connect_timeout=self._timeout,
                health_check_interval=10)
        return client

    def _rows(self, raw: Sequence[bytes | None]) -> list[StoredRow | None]:
        out: list[StoredRow | None] = []
        for value in raw:
            if value is None:
                out.append(None)
                continue
            ev, cr = _HEADER.unpack_from(value)
            out.append((int(ev), int(cr), tuple(msgpack.unpackb(value[16:]))))
        return out

    def get_watermark(self, table: str) -> int | None:
        value = self._call(self.client.hget, f"{self.ns}:__wm", table)
        return None if value is None else int(value)

    def set_watermark(self, table: str, micros: int) -> None:
        self._call(self._max_hash, keys=[f"{self.ns}:__wm"], args=[table, micros])

    def read_synced(self, table: str, keys: Sequence[tuple[object, ...]]) -> list[int | None]:
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(f"{self.ns}:__wm", table)
        pipe.hmget(f"{self.ns}:__sync:{table}", [encode_key(k) for k in keys]) if keys else None
        answers = self._call(pipe.execute)
        watermark = None if answers[0] is None else int(answers[0])
        marks = answers[1] if keys else []
        out = []
        for mark in marks:
            candidates = [m for m in (watermark, None if mark is None else int(mark)) if m is not None]
            out.append(max(candidates) if candidates else None)
        return out

    def mark_synced(self, table: str, keys: Sequence[tuple[object, ...]], micros: int) -> None:
        args: list[object] = []
        for key in keys:
            args.extend((encode_key(key), micros))
        if args:
            self._call(self._max_hash, keys=[f"{self.ns}:__sync:{table}"], args=args)

    # -- window indexes: a sorted set per key, scored by event time -------------------------------
    # ``ns:w:table:<key>`` members: 16 bytes of (created, sequence) ordered as bytes (so members of
    # one event time sort in row order), then msgpack [cr, vis, lanes, values, prefix];
    # ``ns:wk:table`` hash: key -> latest visibility instant; ``ns:w:table`` set: the keys.

    def _wkey(self, table: str, key: tuple[object, ...]) -> bytes:
        return f"{self.ns}:w:{table}:".encode() + encode_key(key)

    @staticmethod
    def _member(e: WindowEvent) -> bytes:
        crk = NO_CREATED if e[2] is None else e[2]
        return _ORDER.pack(crk + _FLIP, e[3] + _FLIP) + _packb([e[2], e[4], e[5], e[6], e[7]])

    @staticmethod
    def _unmember(key: tuple[object, ...], ev: float, member: bytes) -> WindowEvent:
        cr, vis, lanes, payload, prefix = msgpack.unpackb(member[16:])
        _, seq = _ORDER.unpack_from(member)
        return (key, int(ev), cr, seq - _FLIP, vis, lanes, tuple(payload), prefix, member)

    def _check_time(self, ev: int) -> None:
        if not -_LIMIT < ev < _LIMIT:
            raise StoreError(f"Redis online store: time {ev} µs is beyond what it stores exactly (2^53 µs)")

    # Window sets (``semantics.window_sets``): ``ns:ws:table:<slot>:<key>`` sorted sets scored by
    # event time, members 16 bytes of (created, sequence) then msgpack of the value; their names are
    # in the ``ns:w:table`` set too, so a replace drops them with the index.

    def _skey(self, table: str, slot: int, key: tuple[object, ...]) -> bytes:
        return f"{self.ns}:ws:{table}:{slot}:".encode() + encode_key(key)

    @staticmethod
    def _set_member(pos: tuple[int, int, int], value: object) -> bytes:
        return _ORDER.pack(pos[1] + _FLIP, pos[2] + _FLIP) + _packb(value)

    def _add_members(self, pipe: Any, table: str, members: Iterable[SetMember]) -> None:
        names: dict[bytes, dict[bytes, int]] = {}
        for key, slot, pos, value in members:
            self._check_time(pos[0])
            names.setdefault(self._skey(table, slot, key), {})[self._set_member(pos, value)] = pos[0]
        for name, scored in names.items():
            pipe.zadd(name, scored)
        if names:
            pipe.sadd(f"{self.ns}:w:{table}", *names)

    def window_sets(self, table: str, keys: Sequence[tuple[object, ...]], slots: Sequence[int],
                    after_us: int | None = None) -> list[dict[int, list[tuple[tuple[int, int, int], object]]]]:
        pipe = self.client.pipeline(transaction=False)
        low = "-inf" if after_us is None else f"({after_us}"
        for key in keys:
            for slot in slots:
                pipe.zrangebyscore(self._skey(table, slot, key), low, "+inf", withscores=True)
        answers = iter(self._call(pipe.execute) if keys and slots else [])
        out = []
        for _ in keys:
            held: dict[int, list[tuple[tuple[int, int, int], object]]] = {}
            for slot in slots:
                members = []
                for member, ev in next(answers):
                    crk, seq = _ORDER.unpack_from(member)
                    members.append(((int(ev), crk - _FLIP, seq - _FLIP), msgpack.unpackb(member[16:])))
                held[slot] = members
            out.append(held)
        return out

    def _queue_set_reads(self, pipe: Any, table: str, key: tuple[object, ...], asks: Sequence[SetAsk]) -> None:
        for slot, mode, bound, n in asks:
            name = self._skey(table, slot, key)
            low = "-inf" if bound is None else f"({bound}"
            if mode == "at":  # the last member at or before the bound
                pipe.zrevrangebyscore(name, "+inf" if bound is None else bound, "-inf", start=0, num=1)
            elif mode == "count":
                pipe.zcount(name, low, "+inf")  # O(log n): a rank difference
            elif mode == "first":
                pipe.zrangebyscore(name, low, "+inf", start=0, num=1)
            elif mode == "last":
                pipe.zrevrangebyscore(name, "+inf", low, start=0, num=1)
            elif mode == "last_n":
                pipe.zrevrangebyscore(name, "+inf", low, start=0, num=n)
            else:
                pipe.zrangebyscore(name, low, "+inf")

    @staticmethod
    def _set_answer(mode: str, found: Any) -> object:
        if mode == "count":
            return int(found)
        if mode in ("first", "last", "at"):
            return msgpack.unpackb(found[0][16:]) if found else empty_set_answer(mode)
        return [msgpack.unpackb(m[16:]) for m in found]

    def window_replace(self, table: str, parts: Iterable[tuple[Iterable[WindowEvent], Iterable[SetMember]]]) -> int:
        registry = f"{self.ns}:w:{table}"
        old = list(self._call(self.client.smembers, registry))
        pipe = self._bulk.pipeline(transaction=True)  # MULTI/EXEC: readers see the old index or the new
        for start in range(0, len(old), 10_000):
            pipe.delete(*old[start:start + 10_000])
        pipe.delete(registry, f"{self.ns}:wk:{table}")
        count = 0
        # One transaction for every part: the client holds the encoded commands until it commits
        # (a part's Python rows are let go as soon as they are encoded).
        for events, members in parts:
            zsets: dict[bytes, dict[bytes, int]] = {}
            latest: dict[bytes, int] = {}
            for e in events:
                self._check_time(e[1])
                name = self._wkey(table, e[0])
                zsets.setdefault(name, {})[self._member(e)] = e[1]
                latest[encode_key(e[0])] = max(latest.get(encode_key(e[0]), e[4]), e[4])
                count += 1
            for name, scored in zsets.items():
                pipe.zadd(name, scored)
            if zsets:
                pipe.sadd(registry, *zsets)
                pipe.hset(f"{self.ns}:wk:{table}", mapping=latest)  # type: ignore[arg-type]
            self._add_members(pipe, table, members)
        self._call(pipe.execute)
        return count

    def window_write(self, table: str, events: Sequence[WindowEvent], replaced: Sequence[WindowEvent],
                     max_visible: dict[tuple[object, ...], int], added: Sequence[SetMember] = (),
                     removed: Sequence[SetMember] = ()) -> None:
        pipe = self.client.pipeline(transaction=True)
        for e in replaced:
            if isinstance(e[8], bytes):
                pipe.zrem(self._wkey(table, e[0]), e[8])
        for key, slot, pos, value in removed:
            pipe.zrem(self._skey(table, slot, key), self._set_member(pos, value))
        self._add_members(pipe, table, added)
        names: dict[bytes, dict[bytes, int]] = {}
        for e in events:
            self._check_time(e[1])
            names.setdefault(self._wkey(table, e[0]), {})[self._member(e)] = e[1]
        for name, scored in names.items():
            pipe.zadd(name, scored)
        if names:
            pipe.sadd(f"{self.ns}:w:{table}", *names)
        args: list[bytes | int] = []
        for key, vis in max_visible.items():
            args.extend((encode_key(key), vis))
        if args:
            self._max_hash(keys=[f"{self.ns}:wk:{table}"], args=args, client=pipe)
        self._call(pipe.execute)

    def window_read(self, table: str, keys: Sequence[tuple[object, ...]], after_us: int | None,
                    until_us: int | None) -> list[list[WindowEvent]]:
        pipe = self.client.pipeline(transaction=False)
        low = "-inf" if after_us is None else f"({after_us}"
        high = "+inf" if until_us is None else until_us
        for key in keys:
            pipe.zrangebyscore(self._wkey(table, key), low, high, withscores=True)
        answers = self._call(pipe.execute)
        return [[self._unmember(key, ev, member) for member, ev in members] for key, members in zip(keys, answers)]

    def window_last(self, table: str, keys: Sequence[tuple[object, ...]]) -> list[WindowEvent | None]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.zrevrange(self._wkey(table, key), 0, 0, withscores=True)
        answers = self._call(pipe.execute)
        return [self._unmember(key, found[0][1], found[0][0]) if found else None for key, found in zip(keys, answers)]

    def window_seek(self, table: str, keys: Sequence[tuple[object, ...]], times: Sequence[int | None],
                    asks: Sequence[SetAsk] = ()) -> list[tuple[int | None, list[bytes | None], list[object]]]:
        # One MULTI/EXEC: the seeks and sets are read in the same instant as the visibility (a
        # write between them could hold events that visibility did not cover).
        pipe = self.client.pipeline(transaction=True)
        if keys:
            pipe.hmget(f"{self.ns}:wk:{table}", [encode_key(k) for k in keys])
        for key in keys:
            for t in times:
                if t is not None:  # the last member at or before t: one skip-list descent
                    pipe.zrevrangebyscore(self._wkey(table, key), t, "-inf", start=0, num=1)
            self._queue_set_reads(pipe, table, key, asks)
        answers = self._call(pipe.execute) if keys else []
        out: list[tuple[int | None, list[bytes | None], list[object]]] = []
        position = 1
        for i, _ in enumerate(keys):
            vis = answers[0][i]
            blobs: list[bytes | None] = []
            for t in times:
                if t is None:
                    blobs.append(None)
                    continue
                found = answers[position]
                position += 1
                blobs.append(msgpack.unpackb(found[0][16:])[4] if found else None)
            held = [self._set_answer(mode, answers[position + j]) for j, (_, mode, _, _) in enumerate(asks)]
            position += len(asks)
            out.append((None if vis is None else int(vis), blobs, held))
        return out

    def drop(self) -> int:
        """Delete every key of this namespace (values, watermarks, sync marks); returns how many."""
        found = list(self._call(self.client.scan_iter, match=f"{self.ns}:*", count=10_000))
        for start in range(0, len(found), 10_000):
            self._call(self.client.delete, *found[start:start + 10_000])
        self._tables.clear()
        return len(found)

    def close(self) -> None:
        self.client.close()
        self._bulk.close()
        import asyncio

        for loop, client in list(self._async_clients.items()):  # closed on their own loop, when it still runs
            if not loop.is_closed():
                try:
                    running = asyncio.get_running_loop()
                except RuntimeError:
                    running = None
                if running is not None and running is loop:
                    running.create_task(client.aclose())
                elif loop.is_running():
                    asyncio.run_coroutine_threadsafe(client.aclose(), loop)
        self._async_clients.clear()
