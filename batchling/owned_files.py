"""batchling writes only the files it owns.

- Every file it writes for an experiment (processed chunks, results, exports) is claimed in the
  store for that experiment (table `owned_files`, one owner a path, claimed in the same
  transaction that records the experiment or its batches), so no two experiments share a file.
- A path that exists and this experiment does not own is refused with one line, unless the
  caller passes `overwrite` (and no other experiment owns it); so are paths that are not
  regular files (directories, devices, FIFOs, sockets).
- Writes go to a temporary file (mode 0600) in the same directory, renamed into place; a path
  that may not be replaced is placed with a hard link, which fails rather than replace a file
  that appeared meanwhile.
- Only files batchling created are ever removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from batchling.errors import InputError

FILE_MODE = 0o600


@dataclass(frozen=True)
class Claim:
    """Who owns a path: an experiment, and what the file is to it."""

    experiment: str
    role: str


@dataclass
class OutputPolicy:
    """What `experiment` may write: files it owns; files no experiment owns only with
    `overwrite`, or in `own_dir` (batchling's directory for experiments of this name, where
    only it writes). `claims` are those the store holds for the directories involved."""

    experiment: str
    claims: Mapping[str, Claim] = field(default_factory=dict)
    overwrite: bool = False
    own_dir: Path | None = None

    def check(self, path: Path, what: str) -> None:
        """Refuse, with one line, a path this experiment may not write."""
        claim = self.claims.get(str(path))
        if claim is not None and claim.experiment != self.experiment:
            raise owned_elsewhere(path, what, claim)
        kind = _kind_of(path)
        if kind is None:
            return
        if kind != "file":
            raise InputError(f"The {what} {path} is {kind}, not a regular file: give a file path.")
        if not self.may_replace(path):
            raise InputError(
                f"The {what} {path} already exists and batchling did not write it for "
                f"'{self.experiment}': give another path, or --overwrite (overwrite=True) to "
                "replace it."
            )
        if not os.access(path, os.W_OK):
            raise InputError(
                f"The {what} {path} is not writable: choose another path or fix permissions."
            )

    def may_replace(self, path: Path) -> bool:
        claim = self.claims.get(str(path))
        if claim is not None:
            return claim.experiment == self.experiment
        return self.overwrite or path.parent == self.own_dir


def owned_elsewhere(path: Path, what: str, claim: Claim) -> InputError:
    return InputError(
        f"The {what} {path} is the {claim.role} of experiment '{claim.experiment}': "
        "give another path."
    )


def output_path(path: str | Path, what: str) -> Path:
    """The absolute path (symbolic links resolved) of an output file, its directory created."""
    path = Path(path).expanduser().resolve()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(
            f"Cannot create the directory for the {what} {path}: {error.strerror}."
        ) from None
    if not os.access(path.parent, os.W_OK):
        raise InputError(
            f"The {what} {path} is not writable: choose another path or fix permissions."
        )
    return path


def temp_beside(path: Path) -> Path:
    """A new empty file (mode 0600) in `path`'s directory, named after it, for this process only."""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    return Path(name)


def place(temp: Path, path: Path, what: str, *, replace: bool) -> bool:
    """Move the finished `temp` to `path`; True if `path` is a file batchling created (did not
    exist before). With `replace` False, an existing file is never replaced, even one that
    appeared since the path was checked."""
    kind = _kind_of(path)
    if kind not in (None, "file"):
        raise InputError(f"The {what} {path} is {kind}, not a regular file: give a file path.")
    if replace:
        os.replace(temp, path)
        return kind is None
    try:
        os.link(temp, path)
    except FileExistsError:
        raise InputError(
            f"The {what} {path} already exists and batchling did not write it: give another "
            "path, or --overwrite (overwrite=True) to replace it."
        ) from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # No hard links here (some network and FAT file systems): check, then rename.
        if path.exists():
            raise InputError(
                f"The {what} {path} already exists and batchling did not write it: give "
                "another path, or --overwrite (overwrite=True) to replace it."
            ) from None
        os.replace(temp, path)
        return True
    temp.unlink()
    return True


@contextlib.contextmanager
def writing(path: Path, what: str, *, replace: bool, mode: str = "wb") -> Iterator[IO[bytes]]:
    """Write `path` whole: into a temporary file beside it, placed once the block ends well;
    on any error the temporary file goes and `path` is as it was."""
    temp = temp_beside(path)
    try:
        with temp.open(mode) as handle:
            yield handle
        place(temp, path, what, replace=replace)
    finally:
        temp.unlink(missing_ok=True)


def write_with(path: Path, what: str, *, replace: bool, write: Callable[[Path], None]) -> None:
    """`writing` for writers that take a path (parquet): `write` fills the temporary file."""
    temp = temp_beside(path)
    try:
        write(temp)
        os.chmod(temp, FILE_MODE)
        place(temp, path, what, replace=replace)
    finally:
        temp.unlink(missing_ok=True)


def _kind_of(path: Path) -> str | None:
    """None if nothing is at `path`, 'file' for a regular file, else what it is."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return "unreadable"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"
