"""Making and removing folders inside a run folder without ever following a link out of it.

A run folder may hold symbolic links (its ``.scratch`` or a stage folder on a bigger disk, a file linked to outside
data). Removing a link removes the link, never what it points at; a folder darkhalo would write into, or remove
something from, that resolves outside the run folder is refused. So nothing outside the run folder is ever written
or deleted, whatever links it holds.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class OutsideRunFolder(ValueError):
    """A path darkhalo would write into or remove from that lies, or leads through a link, outside the run folder."""


def within(path: Path, root: Path) -> bool:
    """``path`` is ``root`` or lies under it, as the two are given (resolve them first to follow links)."""
    return path == root or root in path.parents


def _check_inside(path: Path, root: Path) -> None:
    """Refuse ``path`` unless it is ``root`` or under it, both as written and with its links resolved."""
    if not within(Path(os.path.abspath(path)), Path(os.path.abspath(root))):
        raise OutsideRunFolder(f"{path}: not inside the run folder {root}")
    real = path.resolve()
    if not within(real, root.resolve()):
        raise OutsideRunFolder(
            f"{path} leads through a symbolic link to {real}, outside the run folder {root}: darkhalo writes and "
            "deletes only inside the run folder; remove the link, or put the whole runs folder on that disk"
        )


def make_folder(path: Path, root: Path) -> Path:
    """``path`` made, with its parents, as a folder inside ``root`` (it may exist); refused when the deepest part of
    it that exists already (the folder itself, or a link there) leads outside ``root``."""
    existing = path
    while not os.path.lexists(existing):
        existing = existing.parent
    _check_inside(existing, root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def remove_tree(path: Path, root: Path) -> None:
    """Remove ``path`` (a folder and its contents, a file or a link) from inside ``root``, if it is there.

    A link is unlinked, never followed, at ``path`` itself and anywhere inside it (shutil.rmtree walks by file
    descriptor and unlinks the links it meets); a ``path`` whose folder leads outside ``root`` is refused.
    """
    if not os.path.lexists(path):
        return
    if Path(os.path.abspath(path)) == Path(os.path.abspath(root)):
        raise OutsideRunFolder(f"{path}: refusing to remove the run folder itself")
    _check_inside(path.parent, root)
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)
