"""Output folders and files of the tools: checked before any model loads, so a bad path costs no inference."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .errors import InputError


def writable_folder(path, flag: str) -> Path:
    """Check, before any model is loaded or inference runs, that folder ``path`` is (or can be made) a folder a file
    can be written in: an InputError naming ``flag`` when it cannot (a read-only or full disk, no permission, a file
    in the way), which the tools turn into one line and exit code 2. Nothing is created: the folder, or its nearest
    existing ancestor, gets a temporary file that is removed at once."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{flag} {path}: {existing} is a file, not a folder; give a writable folder")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".depthfm_write_check_"):
            pass
    except OSError as exc:
        where = "" if existing == path else f" (in {existing})"
        raise InputError(f"{flag} {path}: cannot write there{where}: {(exc.strerror or str(exc)).lower()}; "
                         "give a writable folder") from exc
    return path


def writable_file(path, flag: str) -> Path:
    """:func:`writable_folder` for the folder of output file ``path``; a folder in the file's place is refused."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a folder; give a file name")
    writable_folder(path.parent, flag)
    return path
