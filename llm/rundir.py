"""The run directory of ``llm.train``: atomic files, the run lock and the metrics log.

* :func:`atomic_write`: a file is written to a temporary name in the same directory, flushed,
  fsync'ed and renamed over the target (``os.replace``, atomic on POSIX), then the directory is
  fsync'ed; a crash leaves the old file or the new one, never a mix. A failed write removes its
  temporary file and re-raises the ``OSError`` (``ENOSPC``: "no space left on device").
* :class:`RunLock`: ``fcntl.flock`` on ``out_dir/run.lock``, held for the run's lifetime and released by
  the kernel when the process exits or dies; the holder writes its pid, host and start time into the
  file, so a second run on the same directory is refused with a message naming the holder.
* :class:`JsonlLog` / :func:`read_jsonl`: every record is one line written with one ``write`` of the
  whole line, then flushed and fsync'ed, so the file can only end torn if the process died inside that
  write. :func:`read_jsonl` drops such a torn last line (and says so); a bad line elsewhere is an error
  naming the file and line.
* :func:`move_aside`: a file the run will not continue (old metrics with no checkpoint to restart from)
  is renamed ``<stem>.aside-<n><suffix>``, never deleted.

``docs/llm.md`` ("Reliability") describes how the trainer uses them.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, IO


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make renames inside ``directory`` durable (best effort: some filesystems refuse a directory fsync)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def no_space(e: BaseException) -> bool:
    """True when ``e`` (or an exception it was raised from) is "no space left on device" / over quota."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        e = e.__cause__ or e.__context__
    return False


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` atomically: ``write(f)`` fills a temporary file ``.tmp-<name>-<pid>`` beside it, which
    is flushed, fsync'ed and renamed over ``path``. On any error the temporary file is removed and the
    error re-raised; ``path`` keeps its old content (or stays absent)."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    data = text.encode()
    return atomic_write(path, lambda f: f.write(data))


def atomic_dir(path: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Replace directory ``path`` as a whole: ``fill(tmp)`` writes a temporary directory beside it, whose files
    are fsync'ed before it is renamed into place (the old directory, if any, is renamed away first and
    removed after). A crash leaves the old directory, the new one, or the new one plus a leftover
    ``.old-*`` / ``.tmp-*`` directory, never a half-written ``path``."""
    import shutil

    path = Path(path)
    tmp, old = path.with_name(f".tmp-{path.name}-{os.getpid()}"), path.with_name(f".old-{path.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fill(tmp)
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)
        raise
    fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)
    return path


def move_aside(path: str | os.PathLike) -> Path:
    """Rename ``path`` to the first free ``<stem>.aside-<n><suffix>`` beside it (n = 1, 2, ...); returns it."""
    path = Path(path)
    n = 1
    while True:
        dest = path.with_name(f"{path.stem}.aside-{n}{path.suffix}")
        if not dest.exists():
            os.replace(path, dest)
            fsync_dir(path.parent)
            return dest
        n += 1


# ----------------------------------------------------------------------------- the run lock
class RunDirBusy(RuntimeError):
    """Another process holds the run directory's lock."""


class RunLock:
    """An exclusive ``flock`` on ``<directory>/run.lock`` for the lifetime of a run.

    ``acquire()`` raises :class:`RunDirBusy` naming the holder (pid, host, start time, as it wrote them)
    when another process holds it. The lock belongs to the open file: it is released by :meth:`release`,
    by closing, and by the kernel when the process exits or is killed, so a crashed run never leaves a
    stale lock behind. Locks on network filesystems are only as good as the filesystem's ``flock``."""

    NAME = "run.lock"

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / self.NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = self.holder()
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            who = (f"pid {holder['pid']} on {holder.get('host', '?')}, since {holder.get('since', '?')}"
                   if holder.get("pid") else "pid unknown")
            raise RunDirBusy(f"out_dir {str(self.path.parent)!r} is in use by another llm.train run ({who}); "
                             f"wait for it to finish or choose another --out_dir") from None
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "since": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, info, 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def holder(self) -> dict:
        """What the current (or last) holder wrote into the lock file ({} when unreadable)."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # noqa: BLE001  (interpreter shutdown)
            pass


# ----------------------------------------------------------------------------- the metrics log
class JsonlLog:
    """Append-only JSON-lines file: one ``os.write`` of the whole line per record, then fsync."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def append(self, rec: dict) -> None:
        data = (json.dumps(rec) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:  # a regular file takes the whole line at once; the loop covers a short write
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)


def read_jsonl(path: str | os.PathLike) -> tuple[list[dict], str | None]:
    """Records of a JSON-lines file and the torn last line dropped (None if the file ends whole).

    A last line that does not parse is what a process killed while writing it leaves behind: it is
    returned apart, not raised. A line that does not parse anywhere else raises ValueError naming the
    file and the line number. An absent file gives ``([], None)``."""
    p = Path(path)
    if not p.is_file():
        return [], None
    lines = p.read_bytes().decode(errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    recs: list[dict] = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if i == len(lines):
                return recs, line
            raise ValueError(f"{p}: line {i} is not a JSON record ({e}); the file is corrupt beyond a torn last "
                             f"line: fix or remove that line") from None
        recs.append(rec)
    return recs, None


def write_jsonl(path: str | os.PathLike, records: list[dict]) -> Path:
    """Replace ``path`` atomically with ``records``, one JSON line each."""
    return atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
