"""The run directory: the lock (refused with the holder's pid, released when its process dies), whole-line
metrics with torn-line repair, atomic files and directories, files moved aside."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from llm import rundir as RD


def test_second_lock_is_refused_naming_the_holder(tmp_path):
    a = RD.RunLock(tmp_path).acquire()
    with pytest.raises(RD.RunDirBusy, match=rf"in use by another llm.train run \(pid {os.getpid()} on "):
        RD.RunLock(tmp_path).acquire()
    a.release()
    b = RD.RunLock(tmp_path).acquire()  # released: free again
    assert b.held and b.holder()["pid"] == os.getpid()
    b.release()


def test_lock_of_a_killed_process_is_released(tmp_path):
    """flock belongs to the open file: kill -9 of the holder frees the directory (no stale lock)."""
    code = ("import sys, time; from llm.rundir import RunLock; lock = RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(120)")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")})
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(RD.RunDirBusy, match=f"pid {p.pid}"):
            RD.RunLock(tmp_path).acquire()
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    with RD.RunLock(tmp_path) as lock:
        assert lock.held


def test_pid_unknown_when_the_lock_file_is_empty(tmp_path):
    import fcntl
    (tmp_path / "run.lock").write_text("")
    fd = os.open(tmp_path / "run.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(RD.RunDirBusy, match="pid unknown"):
            RD.RunLock(tmp_path).acquire()
    finally:
        os.close(fd)


def test_jsonl_whole_lines_and_a_torn_last_line(tmp_path):
    f = tmp_path / "m.jsonl"
    log = RD.JsonlLog(f)
    for s in range(3):
        log.append({"kind": "train", "step": s, "x": [1.5] * 50})
    assert f.read_text().count("\n") == 3
    recs, torn = RD.read_jsonl(f)
    assert [r["step"] for r in recs] == [0, 1, 2] and torn is None
    with open(f, "a") as fh:  # what a kill inside a write leaves behind
        fh.write('{"kind": "train", "step": 3, "x": [1.5, 1.')
    recs, torn = RD.read_jsonl(f)
    assert [r["step"] for r in recs] == [0, 1, 2] and torn.startswith('{"kind": "train", "step": 3')
    assert RD.read_jsonl(tmp_path / "absent.jsonl") == ([], None)


def test_a_bad_line_inside_the_file_is_an_error_naming_file_and_line(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text('{"step": 1}\n{"step": 2\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"m.jsonl: line 2 is not a JSON record"):
        RD.read_jsonl(f)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    f = tmp_path / "a.txt"
    RD.atomic_write_text(f, "old")

    def boom(fh):
        fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as e:
        RD.atomic_write(f, boom)
    assert RD.no_space(e.value) and f.read_text() == "old" and not list(tmp_path.glob(".tmp-*"))


def test_atomic_dir_replaces_a_directory_as_a_whole(tmp_path):
    d = tmp_path / "final"

    def fill(text):
        def f(p):
            p.mkdir()
            (p / "w.txt").write_text(text)
        return f

    RD.atomic_dir(d, fill("one"))
    RD.atomic_dir(d, fill("two"))
    assert (d / "w.txt").read_text() == "two"

    def broken(p):
        p.mkdir()
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        RD.atomic_dir(d, broken)
    assert (d / "w.txt").read_text() == "two" and sorted(x.name for x in tmp_path.iterdir()) == ["final"]


def test_move_aside_never_overwrites(tmp_path):
    for i in range(2):
        (tmp_path / "metrics.jsonl").write_text(json.dumps({"i": i}) + "\n")
        RD.move_aside(tmp_path / "metrics.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.aside-1.jsonl", "metrics.aside-2.jsonl"]
    assert json.loads((tmp_path / "metrics.aside-2.jsonl").read_text()) == {"i": 1}


def test_lock_file_records_start_time(tmp_path):
    with RD.RunLock(tmp_path) as lock:
        since = time.strptime(lock.holder()["since"], "%Y-%m-%dT%H:%M:%S")
        assert since.tm_year >= 2024
