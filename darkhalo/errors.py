"""The command line's exit codes, and the words for a failure: one place, so every command means the same by each.

A failure that the user can cause (a bad input, a full or read-only disk, no Java) is told in a line or two naming the
cause and what to do; an unexpected exception is a bug, told in one line with EXIT_BUG (darkhalo.cli's boundary).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Success.
EXIT_OK = 0
#: A contract or audit failure: an artifact or a spec failed a lesson.
EXIT_FAILED = 1
#: Unusable input or environment: a bad spec, a missing file, no Java, an unreachable Spark master, a full disk.
EXIT_UNUSABLE = 2
#: A run folder that is incomplete or inconsistent: a missing or failed stage, digests that disagree.
EXIT_INCOMPLETE = 3
#: An unexpected exception: a bug in darkhalo, not in its input (sysexits.h's EX_SOFTWARE).
EXIT_BUG = 70

#: Set to 1 (like ``darkhalo --debug``) to see the traceback of any failure.
DEBUG_ENV = "DARKHALO_DEBUG"


class UserError(Exception):
    """A failure of the input or the environment that the user can fix; the message names the cause and the fix."""

    exit_code = EXIT_UNUSABLE


#: What to do about the OSErrors that a user's files, folders and disks cause, by errno.
OS_ADVICE = {
    errno.ENOSPC: "free space on that disk or write elsewhere",
    errno.EDQUOT: "free space within the quota or write elsewhere",
    errno.EFBIG: "the file outgrew the file-size limit (ulimit -f); raise it or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EACCES: "check the permissions, or write elsewhere",
    errno.EPERM: "check the permissions, or write elsewhere",
    errno.ENOTDIR: "a part of that path is a file, not a folder: choose another path",
    errno.EISDIR: "that is a folder; give a file",
    errno.ENOENT: "check the path",
}


def describe_os_error(exc: OSError) -> str:
    """``exc`` as one line: the file(s) it names (or that none was named), the system's reason, what to do; an
    OSError raised with a message of its own (no errno) is that message."""
    if exc.errno is None:
        return str(exc)
    names = " -> ".join(str(name) for name in (exc.filename, exc.filename2) if name is not None)
    reason = exc.strerror or str(exc) or type(exc).__name__
    advice = OS_ADVICE.get(exc.errno or 0)
    return f"{names or '(no file named)'}: {reason}" + (f"; {advice}" if advice else "")


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Give an OSError raised inside the block ``path`` as its file when it names none (a failed write, flush or
    fsync names no file), so that the message says which file a full disk stopped."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


def reported_os_error(text: str) -> OSError | None:
    """The last OSError of a kind in OS_ADVICE that another process (a Spark task, the JVM) reported in ``text``, with
    its file where the report names one (Python's ``reason: 'file'`` or Java's ``file (reason)``), else None."""
    found = None
    for line in text.splitlines():
        for code in OS_ADVICE:
            reason = os.strerror(code)
            if reason not in line:
                continue
            quoted = re.escape(reason)
            named = re.search(rf"{quoted}: '([^']+)'", line) or re.search(rf"(\S+) \({quoted}\)", line)
            found = OSError(code, reason, named.group(1) if named else None)
    return found
