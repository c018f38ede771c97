"""Writing results safely: one lock per suite folder, atomic files, and one-line
errors when the disk is full or read-only. Used by the runner and the reports."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import re
import shutil
import time
from pathlib import Path


class StorageError(RuntimeError):
    """The results folder cannot be written (full or read-only disk, ...)."""


class SuiteBusyError(RuntimeError):
    """Another live optbench process holds the suite folder's lock."""


LOCK = ".lock"
_HELD: set[Path] = set()   # suite folders this process has locked (the lock is reentrant)


@contextlib.contextmanager
def suite_lock(suite_dir: Path):
    """Hold an exclusive lock on a suite folder while running or writing its outputs.

    flock locks die with their process, so a lock left by a killed run is never stale,
    and while we hold it no other run writes here: every temporary folder is then
    provably left over from a dead run. POSIX only (fcntl)."""
    import fcntl
    suite_dir = Path(suite_dir).resolve()
    if suite_dir in _HELD:
        yield
        return
    f = _open_lock(suite_dir / LOCK)
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise SuiteBusyError(f"{suite_dir} is in use by another optbench process ({holder}); "
                                 "wait for it to finish, or give another --out") from None
        # The temporary folders of killed runs go now that no live run can be writing
        # them, and before the lock names its holder: a process that sees the pid knows
        # the cleanup is over (a test made a folder in between and lost it).
        remove_stale_temporaries(suite_dir)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {platform.node()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        _HELD.add(suite_dir)
        try:
            yield
        finally:
            _HELD.discard(suite_dir)
            fcntl.flock(f, fcntl.LOCK_UN)
    finally:
        f.close()


def _open_lock(path: Path):
    """The lock file, opened without following a symbolic link: `open(path, "a+")` would
    follow one and the lock's truncate would empty its target."""
    import stat
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        if e.errno == errno.EISDIR:
            raise ValueError(f"{path} is a folder, so it cannot be optbench's lock file; remove "
                             "it and rerun") from None
        if e.errno == errno.ELOOP or path.is_symlink():
            raise ValueError(f"{path} is a symbolic link, not optbench's lock file; remove it "
                             "(its target is left untouched) and rerun") from None
        raise StorageError(f"cannot write {path}: {e.strerror or e}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ValueError(f"{path} is not a regular file, so it cannot be optbench's lock file; "
                         "remove it and rerun")
    if info.st_nlink > 1:   # a hard link: truncating the lock would empty another name's file
        os.close(fd)
        raise ValueError(f"{path} is a hard link to another file ({info.st_nlink} names), not "
                         "optbench's lock file; remove it (the other names keep the file) and rerun")
    return os.fdopen(fd, "r+")


# The temporary folders optbench makes in a suite folder: a cell being written
# (".<cell id>.<random>") and plots being replaced. Nothing else is ever removed: a
# user's own ".backup.2024/" stays.
PLOTS_NEW, PLOTS_OLD = ".plots-new.", ".plots-old."   # plots/ being replaced (report/__init__.py)
TEMPORARY = re.compile(r"\.[0-9a-f]{16}\.[^/]+|" + "|".join(re.escape(p) + "[^/]+" for p in (PLOTS_NEW, PLOTS_OLD)))


def remove_stale_temporaries(suite_dir: Path) -> list[str]:
    """Temporary cell folders of runs that were killed (kill -9 leaves no chance to clean
    up). Call only while holding the suite lock: then no live run is writing them."""
    removed = []
    for stale in Path(suite_dir).iterdir():
        if TEMPORARY.fullmatch(stale.name) and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale.name)
    return removed


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file whole or not at all (a temporary sibling, then rename); a disk error
    becomes a one-line StorageError and the old file stays as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {e.strerror or e}; the previous "
                           f"{path.name}, if any, is unchanged") from None


def umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc);
    elsewhere by setting and restoring it (a strict one meanwhile)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def shared_mkdtemp(prefix: str, parent: Path) -> Path:
    """A fresh temporary folder with the mode mkdir would give it (0777 less the umask),
    not mkdtemp's 0700: once renamed into place, others may read a shared results folder."""
    import tempfile
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o777 & ~umask())
    return path


def share_files(folder: Path) -> None:
    """Give the files in `folder` the mode open() would (0666 less the umask); some
    writers (safetensors) make 0600."""
    mode = 0o666 & ~umask()
    for f in Path(folder).iterdir():
        if f.is_file():
            f.chmod(mode)


# A cell folder is complete when its DONE file lists the sha256 of every other file.
DONE = "DONE"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cell_is_complete(folder: Path) -> bool:
    """True only if DONE exists and every file it lists has its recorded sha256."""
    marker = folder / DONE
    if not marker.is_file():
        return False
    try:
        hashes = json.loads(marker.read_text())
        return bool(hashes) and all((folder / n).is_file() and _sha(folder / n) == h
                                    for n, h in hashes.items())
    except (OSError, ValueError):
        return False


