"""Redaction of known secrets, and the gateway's size-rotated output log."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.logs import REDACTED, OutputLog, Redactor

TOKEN = "tok-0123456789abcdef"
PASSWORD = "hunter2-but-longer"


@pytest.fixture
def redactor() -> Redactor:
    r = Redactor()
    r.add([TOKEN, PASSWORD])
    return r


def test_redactor_text(redactor: Redactor) -> None:
    assert redactor.text(f"Authorization: Bearer {TOKEN}") == f"Authorization: Bearer {REDACTED}"
    assert redactor.text(f"{TOKEN}{TOKEN} and {PASSWORD}") == f"{REDACTED}{REDACTED} and {REDACTED}"
    assert redactor.text("nothing secret here") == "nothing secret here"


def test_redactor_nested_values(redactor: Redactor) -> None:
    event = {
        "event": f"connecting with {TOKEN}",
        "auth": {"token": TOKEN, "nested": [PASSWORD, {"deep": f"x{PASSWORD}y"}], "n": 3},
        "argv": ("--token", TOKEN),
        "ok": True,
        "none": None,
    }
    out = redactor.value(event)
    assert out == {
        "event": f"connecting with {REDACTED}",
        "auth": {"token": REDACTED, "nested": [REDACTED, {"deep": f"x{REDACTED}y"}], "n": 3},
        "argv": ("--token", REDACTED),
        "ok": True,
        "none": None,
    }
    assert isinstance(out["argv"], tuple)
    assert TOKEN not in repr(out) and PASSWORD not in repr(out)
    # the input is not changed in place
    assert event["auth"]["token"] == TOKEN  # type: ignore[index]


def test_redactor_as_structlog_processor(redactor: Redactor) -> None:
    out = redactor(None, "info", {"event": "x", "secret": TOKEN, "list": [TOKEN]})
    assert out == {"event": "x", "secret": REDACTED, "list": [REDACTED]}


def test_redactor_ignores_only_the_empty_string() -> None:
    r = Redactor()
    r.add([""])
    text = "a b abc 1234567 12345678"
    assert r.text(text) == text


@pytest.mark.parametrize("short", ["hunter2", "abc", "a"])
def test_redactor_redacts_short_secrets_too(short: str) -> None:
    # Issue 17: a configured secret shorter than 8 characters passed (`pw=hunter2`). Every one is
    # redacted now, even at the cost of a garbled log for a one-letter secret.
    r = Redactor()
    r.add([short])
    assert r.text(f"pw={short} done") == f"pw={REDACTED} done"
    assert r.value({"pw": short, "argv": [short]}) == {"pw": REDACTED, "argv": [REDACTED]}


def test_redactor_eight_chars_is_long_enough() -> None:
    r = Redactor()
    r.add(["12345678"])
    assert r.text("x 12345678 y") == f"x {REDACTED} y"


def test_redactor_longest_secret_first() -> None:
    r = Redactor()
    r.add(["abcdefgh"])
    r.add(["abcdefgh-and-more"])
    assert r.text("abcdefgh-and-more") == REDACTED


def test_redactor_add_accumulates() -> None:
    r = Redactor()
    r.add(["first-secret-1"])
    r.add(["second-secret-2"])
    assert r.text("first-secret-1 second-secret-2") == f"{REDACTED} {REDACTED}"


# -- OutputLog --------------------------------------------------------------------------------

def test_output_log_writes_redacted_lines_and_keeps_the_tail(tmp_path: Path, redactor: Redactor) -> None:
    log = OutputLog(tmp_path / "logs" / "gateway.log", max_bytes=1 << 20, backups=2, redactor=redactor,
                    keep_lines=3)
    try:
        log.write_line(f"listening with token {TOKEN}\n".encode())
        log.write_line(b"line two\r\n")
        log.write_line(b"invalid utf8 \xff\n")
        log.write_line(b"four")
    finally:
        log.close()
    text = (tmp_path / "logs" / "gateway.log").read_text(encoding="utf-8")
    assert TOKEN not in text
    assert text.splitlines() == [f"listening with token {REDACTED}", "line two", "invalid utf8 \ufffd", "four"]
    assert log.last_lines(10) == ["line two", "invalid utf8 \ufffd", "four"]
    assert log.last_lines(2) == ["invalid utf8 \ufffd", "four"]


def _files(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_output_log_rotates_at_max_bytes_keeping_backups(tmp_path: Path) -> None:
    path = tmp_path / "gateway.log"
    line = b"x" * 9  # 10 bytes with the newline
    log = OutputLog(path, max_bytes=100, backups=2, redactor=Redactor())
    try:
        for i in range(10):
            log.write_line(line)
            assert path.stat().st_size == (i + 1) * 10
        assert _files(path) == ["gateway.log"]
        log.write_line(b"y" * 9)  # would exceed 100: rotate first
        assert _files(path) == ["gateway.log", "gateway.log.1"]
        assert path.read_bytes() == b"y" * 9 + b"\n"
        assert (tmp_path / "gateway.log.1").read_bytes() == (line + b"\n") * 10
        for _ in range(10 * 5):
            log.write_line(b"z" * 9)
    finally:
        log.close()
    assert _files(path) == ["gateway.log", "gateway.log.1", "gateway.log.2"]
    for p in path.parent.iterdir():
        assert p.stat().st_size <= 100


def test_output_log_rotation_shifts_backups_in_order(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    log = OutputLog(path, max_bytes=10, backups=3, redactor=Redactor())
    try:
        for i in range(6):
            log.write_line(f"line-{i}".encode())  # 7 bytes: one line per file
    finally:
        log.close()
    assert path.read_text() == "line-5\n"
    assert [(tmp_path / f"out.log.{n}").read_text() for n in (1, 2, 3)] == ["line-4\n", "line-3\n", "line-2\n"]
    assert not (tmp_path / "out.log.4").exists()


def test_output_log_without_backups_truncates(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    log = OutputLog(path, max_bytes=10, backups=0, redactor=Redactor())
    try:
        for i in range(3):
            log.write_line(f"line-{i}".encode())
    finally:
        log.close()
    assert _files(path) == ["out.log"] and path.read_text() == "line-2\n"


def test_output_log_line_longer_than_max_is_still_written(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    log = OutputLog(path, max_bytes=10, backups=1, redactor=Redactor())
    try:
        log.write_line(b"a" * 50)
        log.write_line(b"b")
    finally:
        log.close()
    assert (tmp_path / "out.log.1").read_text() == "a" * 50 + "\n"
    assert path.read_text() == "b\n"


def test_output_log_reopen_counts_existing_size(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    path.write_bytes(b"o" * 95)
    log = OutputLog(path, max_bytes=100, backups=1, redactor=Redactor())
    try:
        log.write_line(b"new line")
    finally:
        log.close()
    assert (tmp_path / "out.log.1").read_bytes() == b"o" * 95
    assert path.read_text() == "new line\n"


def test_output_log_redacts_secrets_added_later(tmp_path: Path) -> None:
    r = Redactor()
    log = OutputLog(tmp_path / "out.log", max_bytes=1000, backups=1, redactor=r)
    try:
        r.add([TOKEN])
        log.write_line(TOKEN.encode())
    finally:
        log.close()
    assert TOKEN not in (tmp_path / "out.log").read_text()
    assert log.last_lines() == [REDACTED]
