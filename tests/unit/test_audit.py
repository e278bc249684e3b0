"""The audit trail: every edit, deletion, reordering, truncation and forged checkpoint is caught;
a torn last line is cut, never accepted; several writers keep one chain."""

from __future__ import annotations

import base64
import shutil

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity.server.audit import AuditLog, AuditPaths, load_or_create_key, verify


def _paths(tmp_path) -> AuditPaths:  # type: ignore[no-untyped-def]
    return AuditPaths(str(tmp_path / "a" / "log.jsonl"), str(tmp_path / "elsewhere" / "checkpoints.jsonl"),
                      str(tmp_path / "keys" / "signing.key"))


def _written(tmp_path, n: int = 30, per_flush: int = 7) -> AuditPaths:  # type: ignore[no-untyped-def]
    paths = _paths(tmp_path)
    log = AuditLog(paths, checkpoint_every_records=10, checkpoint_every_seconds=3600)
    for i in range(n):
        log.append(f"svc{i % 3}", "query", "ok", features=[f"user.f{i}"], entities=[log.entity_key({"user_id": i})])
        if i % per_flush == per_flush - 1:
            log.flush()
    log.close()
    return paths


def _lines(paths: AuditPaths) -> list[bytes]:
    with open(paths.log, "rb") as fh:
        return fh.readlines()


def _write(paths: AuditPaths, lines: list[bytes]) -> None:
    with open(paths.log, "wb") as fh:
        fh.writelines(lines)


def test_a_written_trail_verifies_and_is_signed_through_its_end(tmp_path):
    paths = _written(tmp_path)
    verdict = verify(paths)
    assert verdict.ok, verdict.problems
    assert verdict.records == 30 and verdict.signed_through == 30 and verdict.checkpoints >= 3
    first = orjson.loads(_lines(paths)[0])
    assert first["seq"] == 0 and first["principal"] == "svc0" and first["features"] == ["user.f0"]
    assert first["entities"] != [{"user_id": 0}] and len(first["entities"][0]) == 32  # a keyed hash, not the key


@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder", "insert", "truncate", "truncate_all",
                                    "rewrite_chain", "forge_checkpoint", "move_checkpoint", "drop_newline"])
def test_every_kind_of_tampering_is_detected(tmp_path, tamper):
    paths = _written(tmp_path)
    lines = _lines(paths)
    if tamper == "edit":
        lines[12] = lines[12].replace(b'"svc0"', b'"svc9"')
    elif tamper == "delete":
        del lines[12]
    elif tamper == "reorder":
        lines[12], lines[13] = lines[13], lines[12]
    elif tamper == "insert":
        lines.insert(5, lines[5])
    elif tamper == "truncate":
        lines = lines[:25]  # the chain that is left is valid on its own: only the checkpoint shows it
    elif tamper == "truncate_all":
        lines = []
    elif tamper == "rewrite_chain":  # an attacker without the key rebuilds a consistent chain of edited records
        other = _paths(tmp_path / "forger")
        forged = AuditLog(other, checkpoint_every_records=10**9, checkpoint_every_seconds=10**9)
        for line in lines:
            record = orjson.loads(line)
            forged.append("nobody" if record["seq"] == 3 else record["principal"], record["action"], record["outcome"],
                          features=record["features"], entities=record["entities"])
        forged.flush()
        lines = _lines(other)
    if tamper in ("forge_checkpoint", "move_checkpoint"):
        with open(paths.checkpoints, "rb") as fh:
            checkpoints = [orjson.loads(c) for c in fh]
        if tamper == "forge_checkpoint":
            checkpoints[-1]["size"] = 20  # claims the log ends earlier (to hide a truncation)
        else:
            checkpoints[-1]["sig"] = checkpoints[0]["sig"]
        with open(paths.checkpoints, "wb") as fh:
            fh.writelines(orjson.dumps(c) + b"\n" for c in checkpoints)
    elif tamper == "drop_newline":
        lines[-1] = lines[-1].rstrip(b"\n")
    else:
        _write(paths, lines)
    if tamper == "drop_newline":
        _write(paths, lines)
    verdict = verify(paths)
    assert not verdict.ok, tamper
    said = {"edit": "edited", "delete": "deleted", "reorder": "moved", "insert": "inserted", "truncate": "truncated",
            "truncate_all": "truncated", "rewrite_chain": "rewritten", "forge_checkpoint": "signature",
            "move_checkpoint": "signature", "drop_newline": "torn"}[tamper]
    assert said in verdict.problems[0], verdict.problems


def test_verifying_with_an_outside_public_key_refuses_a_swapped_key(tmp_path):
    paths = _written(tmp_path)
    trusted = open(paths.key + ".pub", "rb").read()
    shutil.rmtree(tmp_path / "keys")
    load_or_create_key(paths.key)  # an attacker's new key beside the log, checkpoints re-signed with it
    assert verify(paths, trusted).ok is True  # the log itself is intact; only the key file changed
    from cryptography.hazmat.primitives.asymmetric import ed25519

    impostor = ed25519.Ed25519PrivateKey.generate()
    with open(paths.checkpoints, "rb") as fh:
        checkpoints = [orjson.loads(c) for c in fh]
    from parity.server.audit import checkpoint_message

    for c in checkpoints:
        c["sig"] = base64.b64encode(impostor.sign(checkpoint_message(c["size"], c["hash"], c["time"]))).decode()
    with open(paths.checkpoints, "wb") as fh:
        fh.writelines(orjson.dumps(c) + b"\n" for c in checkpoints)
    assert not verify(paths, trusted).ok


def test_a_torn_last_line_is_cut_when_the_log_is_opened_and_the_chain_goes_on(tmp_path):
    paths = _written(tmp_path, n=10)
    with open(paths.log, "ab") as fh:
        fh.write(b'{"seq":10,"prev":"ab')  # a crash in the middle of a write
    assert not verify(paths).ok
    log = AuditLog(paths)
    log.append("svc", "query", "ok")
    log.close()
    verdict = verify(paths)
    assert verdict.ok and verdict.records == 11


def test_two_writers_keep_one_chain(tmp_path):
    paths = _paths(tmp_path)
    a, b = AuditLog(paths, checkpoint_every_records=5), AuditLog(paths, checkpoint_every_records=5)
    for i in range(40):
        (a if i % 3 else b).append("w", "query", "ok", n=i)
        if i % 4 == 0:
            (a if i % 8 else b).flush()
    a.close()
    b.close()
    verdict = verify(paths)
    assert verdict.ok and verdict.records == 40 and verdict.signed_through == 40


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_single_byte_change_of_the_log_fails_verification(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("mut")
    paths = _written(root, n=12, per_flush=5)
    raw = bytearray(open(paths.log, "rb").read())
    at = data.draw(st.integers(0, len(raw) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[at]))
    raw[at] = new
    with open(paths.log, "wb") as fh:
        fh.write(bytes(raw))
    assert not verify(paths).ok


def test_a_failed_write_keeps_its_batch_and_a_torn_tail_left_by_another_writer_is_cut(tmp_path, monkeypatch):
    import os as _os

    paths = _paths(tmp_path)
    log = AuditLog(paths)
    log.append("svc", "query", "ok", n=1)
    log.flush()
    with open(paths.log, "ab") as fh:
        fh.write(b'{"prev":"00","seq":1,"ti')  # another worker died in the middle of a write
    real, calls = _os.fsync, []

    def failing(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        real(fd)

    monkeypatch.setattr("parity.server.audit.os.fsync", failing)
    log.append("svc", "query", "ok", n=2)
    with pytest.raises(OSError):
        log.flush()
    log.append("svc", "query", "ok", n=3)
    assert log.flush() == 2  # the failed batch, then the new record
    log.close()
    verdict = verify(paths)
    assert verdict.ok, verdict.problems
    assert [orjson.loads(line)["n"] for line in _lines(paths)] == [1, 2, 3]


def test_details_that_cannot_be_json_are_said_so_and_a_full_buffer_refuses(tmp_path, monkeypatch):
    from parity.server import audit as audit_module
    from parity.server.audit import AuditUnavailable

    log = AuditLog(_paths(tmp_path), entity_keys="raw")
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    log.append("svc", "query", "ok", entities=[deep])
    log.flush()
    assert orjson.loads(_lines(log.paths)[0])["details_error"].startswith("the request's details")
    monkeypatch.setattr(audit_module, "MAX_BUFFERED", 3)
    for i in range(3):
        log.append("svc", "query", "ok", n=i)
    with pytest.raises(AuditUnavailable):
        log.append("svc", "query", "ok", n=4)
    log.close()
    assert verify(log.paths).ok


def test_a_log_without_any_checkpoint_does_not_verify(tmp_path):
    paths = _written(tmp_path)
    with open(paths.log, "rb") as fh:
        kept = fh.readlines()[:10]
    _write(paths, kept)
    with open(paths.checkpoints, "wb"):
        pass  # the checkpoints emptied, to hide the truncation
    verdict = verify(paths)
    assert not verdict.ok and "no valid checkpoint" in verdict.problems[0]


def test_search_skips_lines_that_are_not_records(tmp_path):
    from parity.server.audit import search

    paths = _written(tmp_path, n=3)
    with open(paths.log, "ab") as fh:
        fh.write(b'[1]\n5\n{"time":"soon"}\n{"features":5}\n')
    assert len(list(search(paths, since_us=1))) == 3  # objects without a time are at time 0; no crash either way
    assert len(list(search(paths))) == 5
    assert len(list(search(paths, feature="user.f1"))) == 1


def test_an_entity_has_one_hash_whatever_form_the_request_took(tmp_path):
    from parity.server.audit import hashed_keys

    log = AuditLog(_paths(tmp_path))
    forms = [{"user_id": [7]}, {"user_id": 7}, [{"user_id": 7}], [{"user_id": 7, "junk": 1}],
             {"user_id": [7], "junk": ["x"]}]
    assert len({tuple(hashed_keys(log, form, ["user_id"])) for form in forms}) == 1
    assert hashed_keys(log, {"user_id": [7]}, ["user_id"]) != hashed_keys(log, {"card_id": [7]}, ["card_id"])


def test_a_failed_checkpoint_after_a_durable_write_writes_no_record_twice(tmp_path, monkeypatch):
    paths = _paths(tmp_path)
    log = AuditLog(paths, checkpoint_every_records=1)
    real, calls = AuditLog._checkpoint, []

    def failing(self: AuditLog, size: int, last_hash: str) -> None:
        calls.append(size)
        if len(calls) == 1:
            raise OSError(5, "I/O error")
        real(self, size, last_hash)

    monkeypatch.setattr(AuditLog, "_checkpoint", failing)
    log.append("svc", "query", "ok", n=1)
    with pytest.raises(OSError):
        log.flush()  # the record is durable; only its checkpoint failed
    log.append("svc", "query", "ok", n=2)
    log.flush()
    log.close()
    assert [orjson.loads(line)["n"] for line in _lines(paths)] == [1, 2]
    assert verify(paths).ok


def test_a_detail_cannot_take_the_name_of_a_chain_field(tmp_path):
    log = AuditLog(_paths(tmp_path))
    for name in ("seq", "prev", "hash", "time"):  # principal, action, outcome are parameters already
        with pytest.raises(ValueError, match=name):
            log.append("p", "query", "ok", **{name: 1})
    log.close()
