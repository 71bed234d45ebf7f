"""File-system helpers shared by the adapters and the CLI (standard library only).

Contract: :func:`default_permissions` gives a tree produced in a private
temporary folder (``tempfile.mkdtemp`` makes it 0700) the permissions a plain
new file or folder would get under the process umask, before it is renamed into
the user's place. :data:`JOURNAL` records what the output stages of this
process did (outputs committed, stale staging folders removed), so the command
line can say so without importing the adapters. :func:`check_parent` refuses an
output whose folder is missing or not writable, naming the user's path and the fix.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from .errors import OutputError

__all__ = ["JOURNAL", "OS_FIXES", "Journal", "check_parent", "default_permissions"]

#: What a failed write means and what to do, by ``errno`` (for one-line errors).
OS_FIXES = {
    errno.ENOSPC: "no space (or no free inodes) left on the device; free space there or choose an "
                  "output on another disk",
    errno.EDQUOT: "the disk quota is exceeded; free space or choose another location",
    errno.EFBIG: "a file would exceed the largest file allowed (the shell's 'ulimit -f' or the file "
                 "system's limit); raise the limit or choose an output on another disk",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "operation not permitted; choose a folder you can write to",
    errno.EROFS: "the file system is read-only; choose an output on a writable disk",
    errno.ENAMETOOLONG: "the file name is too long; choose a shorter output path",
    errno.EMFILE: "too many files are open; raise 'ulimit -n' or close other programs",
}


@dataclass
class Journal:
    """What the output stages of this process did.

    ``committed``: outputs moved into place (absolute paths); ``cleaned``: stale
    staging folders removed (absolute paths). Append-only.

    >>> j = Journal()
    >>> j.committed.append("/data/small"); j.committed
    ['/data/small']
    """

    committed: list = field(default_factory=list)
    cleaned: list = field(default_factory=list)


#: The journal of this process (:class:`botcore.adapters.io.staging.Stage` writes it).
JOURNAL = Journal()


def default_permissions(path) -> None:
    """Reset ``path`` (a file, or a folder and everything below it) to umask defaults.

    Examples
    --------
    >>> import os, stat, tempfile
    >>> d = tempfile.mkdtemp()
    >>> default_permissions(d)
    >>> mask = os.umask(0); _ = os.umask(mask)
    >>> stat.S_IMODE(os.stat(d).st_mode) == 0o777 & ~mask
    True
    """
    umask = os.umask(0)
    os.umask(umask)
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o777 & ~umask)
        for root, dirs, files in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o777 & ~umask)
            for f in files:
                os.chmod(os.path.join(root, f), 0o666 & ~umask)
    elif os.path.isfile(path):
        os.chmod(path, 0o666 & ~umask)


def check_parent(out) -> None:
    """Raise :class:`~botcore.errors.OutputError` unless ``out``'s folder exists and is writable.

    Names the user's path and the fix; a read-only file system is told apart from
    missing permission.

    >>> check_parent("/no/such/folder/out")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    botcore.errors.OutputError: the folder '/no/such/folder' that should hold the output ...
    """
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise OutputError(
            f"the folder {parent!r} that should hold the output does not exist; "
            "create it first or choose another output path")
    if os.access(parent, os.W_OK | os.X_OK):
        return
    try:
        readonly = bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
    except OSError:
        readonly = False
    why = "is on a read-only file system" if readonly else "is not writable (permission denied)"
    fix = "choose an output on a writable disk" if readonly else \
        "choose an output folder you can write to, or change its permissions"
    raise OutputError(f"cannot write the output {out!r}: the folder {parent!r} {why}; {fix}")
