"""File-system helpers shared by the adapters and the CLI (standard library only).

Contract: :func:`default_permissions` gives a tree produced in a private
temporary folder (``tempfile.mkdtemp`` makes it 0700) the permissions a plain
new file or folder would get under the process umask, before it is renamed into
the user's place.
"""

from __future__ import annotations

import os

__all__ = ["default_permissions"]


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
