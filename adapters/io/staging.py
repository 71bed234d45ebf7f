"""Atomic outputs: stage beside the destination, lock it, move into place only when complete.

Contract: a :class:`Stage` for an output path ``out`` (a file or a directory)

* refuses an existing ``out`` unless ``overwrite=True``, a missing or unwritable
  parent folder, and too little free space for ``need_bytes``, before any work
  (:class:`~botcore.errors.OutputExistsError`, :class:`~botcore.errors.OutputError`);
* holds an exclusive lock on ``out`` for its whole life, so a second process
  writing the same output at the same time is refused with a clear error and
  the output is never a mix of two runs;
* stages into a hidden folder ``.<name>.botcore-<pid>-<random>`` beside
  ``out``; staging folders whose process is gone (a run that was killed) are
  removed when the next run for the same ``out`` starts, and listed in
  :attr:`Stage.cleaned` and :data:`botcore._files.JOURNAL` (the command line says so); folders
  of live processes are never touched (a live process with a recycled pid that
  started after the folder was made is not its owner);
* checks again, once it holds the lock and just before the move, that ``out``
  did not appear meanwhile (unless ``overwrite=True``);
* :meth:`Stage.commit` moves everything written into the staging folder into
  place (an ``.onnx`` file and its external data travel together), replacing an
  old output only once the new one is complete; :meth:`Stage.abort` (also on
  any exception inside ``with``) removes the staging folder and leaves ``out``
  as it was. Nothing is left behind either way. The moves into place run with
  SIGINT/SIGTERM held back, so an interrupt cannot strand an old output in the
  staging folder; an interrupt that arrives meanwhile is raised right after, and
  :data:`botcore._files.JOURNAL` records that the output was committed.

File-system failures while writing (no space or inodes, a file-size limit,
permission, read-only file system) become one :class:`~botcore.errors.OutputError` that names the user's
path and the fix (:func:`output_error`).

Examples
--------
>>> import os, tempfile
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> with Stage(d / "out") as stage:
...     (stage.target).mkdir()
...     _ = (stage.target / "config.json").write_text("{}")
...     stage.commit().name
'out'
>>> sorted(os.listdir(d))
['out']
>>> with Stage(d / "out") as stage:  # doctest: +ELLIPSIS
...     pass
Traceback (most recent call last):
...
botcore.errors.OutputExistsError: output '...out' already exists; ...
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

from botcore._files import JOURNAL, OS_FIXES, Journal, check_parent, default_permissions
from botcore.errors import OutputError, OutputExistsError

__all__ = ["JOURNAL", "STAGE_TAG", "Journal", "Stage", "check_parent", "output_error", "stage_prefix"]

#: What every staging folder's name carries after ``.<output name>``.
STAGE_TAG = ".botcore-"
_MARGIN = 64 * 2**20  # free space kept beyond the planned bytes (metadata, tokenizer, card)


def stage_prefix(out) -> str:
    """The name prefix of ``out``'s staging folders: ``.<name>.botcore-``.

    >>> stage_prefix("/tmp/model-small")
    '.model-small.botcore-'
    """
    return f".{Path(os.path.abspath(out)).name}{STAGE_TAG}"


def _start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), where ``/proc`` tells."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _alive(pid: int, made: float | None = None) -> bool:
    """Whether process ``pid`` is running and may own a folder last changed at ``made``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = _start_time(pid) if made is not None else None
    return started is None or started <= made + 2.0  # a recycled pid started after the folder


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def output_error(exc: OSError, out) -> OutputError:
    """One clear :class:`OutputError` for a file-system failure while writing ``out``.

    >>> import errno
    >>> str(output_error(OSError(errno.ENOSPC, "No space left on device", "/x/.y.botcore-1-a/y"),
    ...                  "/data/small"))  # doctest: +ELLIPSIS
    "cannot write the output '/data/small': no space ...; nothing was written there"
    """
    out = os.path.abspath(out)
    why = OS_FIXES.get(exc.errno) or (f"{exc.strerror or exc.__class__.__name__}; check the disk "
                                    "or choose another output path")
    err = OutputError(f"cannot write the output {out!r}: {why}; nothing was written there")
    err.errno = exc.errno
    return err


@contextmanager
def _signals_held():
    """Hold SIGINT/SIGTERM back for the block; deliver them (once each) when it ends.

    Python-level handlers, not a signal mask: a process-directed signal may reach any
    thread (BLAS pools, Dask), but Python handlers always run in the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list = []
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not None:  # None: a handler set outside Python, left alone
            old[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)


class Stage:
    """A locked, private staging folder for one output (see the module docstring).

    Parameters
    ----------
    out : path
        The destination file or directory.
    overwrite : bool, keyword-only
        Replace an existing ``out`` (only once the new output is complete).
    need_bytes : int, keyword-only
        Bytes the output will take: refused up front when the disk has less free.
    """

    def __init__(self, out, *, overwrite: bool = False, need_bytes: int = 0):
        self.out = Path(os.path.abspath(out))
        self.parent = self.out.parent
        self.overwrite = overwrite
        self.cleaned: list[str] = []
        self.path: Path | None = None
        self._lock_fd: int | None = None
        self._check(need_bytes)
        self._lock()
        try:
            self._check_absent()  # another run may have finished it while we waited
            self._clean_stale()
            self.path = self._make()
        except BaseException:
            self._unlock()
            raise

    # -- checks --------------------------------------------------------------------
    def _check(self, need_bytes: int) -> None:
        check_parent(self.out)
        self._check_absent()
        free = shutil.disk_usage(self.parent).free
        if need_bytes and need_bytes + _MARGIN > free:
            raise OutputError(
                f"the output {str(self.out)!r} needs about {_human(need_bytes)} but only "
                f"{_human(free)} are free there; free space, choose a smaller target or "
                "another disk")

    def _check_absent(self) -> None:
        if os.path.lexists(self.out) and not self.overwrite:
            raise OutputExistsError(
                f"output {str(self.out)!r} already exists; expected a new path (pass "
                "overwrite=True / --overwrite to replace it, or choose another path)")

    # -- lock ----------------------------------------------------------------------
    def _lock_path(self) -> Path:
        return self.parent / f"{stage_prefix(self.out)}lock"

    def _lock(self) -> None:
        path = self._lock_path()
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise output_error(exc, self.out) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise OutputError(
                    f"another botcore process (pid {holder}) is writing {str(self.out)!r} right "
                    "now; wait for it to finish or choose another output path") from None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file between our open and flock: retry
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
                self._lock_fd = fd
                return
            os.close(fd)

    def _unlock(self) -> None:
        if self._lock_fd is None:
            return
        try:
            os.unlink(self._lock_path())
        except FileNotFoundError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None

    # -- staging -------------------------------------------------------------------
    def _clean_stale(self) -> None:
        pattern = re.compile(re.escape(stage_prefix(self.out)) + r"(\d+)-[0-9a-f]+")
        for entry in sorted(os.listdir(self.parent)):
            m = pattern.fullmatch(entry)
            if m is None:
                continue
            try:
                made = os.lstat(self.parent / entry).st_mtime
            except FileNotFoundError:
                continue
            if not _alive(int(m.group(1)), made):
                shutil.rmtree(self.parent / entry, ignore_errors=True)
                if not os.path.lexists(self.parent / entry):
                    self.cleaned.append(entry)
                    JOURNAL.cleaned.append(str(self.parent / entry))

    def _make(self) -> Path:
        path = self.parent / f"{stage_prefix(self.out)}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.mkdir(path, 0o700)
        except OSError as exc:
            raise output_error(exc, self.out) from None
        return path

    @property
    def target(self) -> Path:
        """Where the writer puts the output (inside the staging folder, under ``out``'s name)."""
        return self.path / self.out.name

    def commit(self) -> Path:
        """Move the staged output (and its siblings) into place; returns ``out``."""
        produced = sorted(p for p in os.listdir(self.path) if p != ".replaced")
        if self.out.name not in produced:
            raise OutputError(f"internal: nothing was staged for {str(self.out)!r}")
        try:
            for name in produced:
                default_permissions(self.path / name)
        except OSError as exc:
            raise output_error(exc, self.out) from None
        with _signals_held():
            self._check_absent()  # something else created it while we worked
            self._move(produced)
            JOURNAL.committed.append(str(self.out))
            self._finish()
        return self.out

    def _move(self, produced: list) -> None:
        old = self.path / ".replaced"
        moved: list[str] = []
        try:
            old.mkdir(exist_ok=True)
            for name in produced:  # the output's name last: siblings (data files) first
                final = self.parent / name
                if os.path.lexists(final):
                    os.rename(final, old / name)
                    moved.append(name)
            for name in sorted(produced, key=lambda n: n == self.out.name):
                os.replace(self.path / name, self.parent / name)
        except OSError as exc:
            for name in moved:
                if not os.path.lexists(self.parent / name):
                    os.rename(old / name, self.parent / name)
            raise output_error(exc, self.out) from None

    def abort(self) -> None:
        """Remove the staging folder; ``out`` stays as it was."""
        self._finish()

    def _finish(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None
        self._unlock()

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        self.abort()  # after commit this only releases what is left (nothing)
