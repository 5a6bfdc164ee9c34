"""File modes: nothing routerwatch writes is readable by other users of the machine.

Three rules, one place (docs/security.md "File modes" has the reasoning):
- Every routerwatch process runs with a umask of at least 0o027 (`restrict_umask`, called when the
  CLI starts; services, the dashboard's Streamlit and every helper are started through it and inherit
  it): whatever DuckDB, SQLite, pyarrow, dumpcap or our own code creates (catalog, WAL/-shm files,
  Parquet files and folders, locks, spool, capture ring, EVE files) is never world-accessible and never
  group-writable. Group read stays possible on purpose: the installed store is 2750 root:routerwatch so
  the dashboard's user reads what the collector writes. Opening a store does not touch the umask: a
  library must not change its host process's global state (a program embedding `Store` keeps its
  own umask; the store's 0700 directory still keeps others out).
- A local store's directory is 0700 when routerwatch creates it (2750 when deploy/install.sh does).
  An existing store that others can reach is tightened when this user may chmod it (with a notice),
  and refused otherwise (`secure_store`).
- Files a person asks for (exports, reports) are private: 0600 files in 0700 folders (`private_umask`,
  `write_private_text`), whatever the umask of the shell.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from collector.store.errors import StoreError

BASE_UMASK = 0o027  # no world access, no group write
PRIVATE_UMASK = 0o077
WORLD = 0o007
# the entries at a store's top level whose modes say whether an older routerwatch left it open
_TOP = ("catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm", "secret.key", "data", ".write.lock",
        ".write.queue")


def restrict_umask(mask: int = BASE_UMASK) -> int:
    """Add `mask` to the process umask (never loosens it); returns the umask now in force."""
    old = os.umask(0o077)
    new = old | mask
    os.umask(new)
    return new


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files and folders created inside come out 0600/0700 (DuckDB's COPY and ATTACH included).

    The umask is process-wide: this only ever makes it stricter for a moment, and restores it."""
    old = os.umask(PRIVATE_UMASK)
    os.umask(old | PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(old)


def write_private_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` as a 0600 file (a new inode, renamed into place, so an existing 0644 file
    does not keep its mode); a path that is not a regular file (/dev/stdout, a FIFO) is written as is."""
    path = Path(path)
    if path.exists() and not path.is_file():
        with path.open("w") as fh:
            fh.write(text)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def private_dir(path: str | Path) -> Path:
    """Create `path` (and missing parents) as 0700 folders; an existing folder is left as it is."""
    path = Path(path)
    with private_umask():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def open_mode(path: Path) -> int | None:
    """The mode bits of `path` (None when it does not exist)."""
    try:
        return stat.S_IMODE(os.lstat(path).st_mode)
    except FileNotFoundError:
        return None


def store_dir_mode(existing: int) -> int:
    """The mode a world-accessible store directory is tightened to: 2750 when it is a setgid group
    directory (the layout deploy/install.sh makes for the dashboard's group), else 0700."""
    return 0o2750 if existing & stat.S_ISGID else 0o700


def secure_store(root: Path, *, notice: Callable[[str], None] | None = None) -> None:
    """Make sure other users cannot reach the store at `root` (an existing local store directory).

    A directory others can reach (any of o+rwx): tightened in place when this user owns it (or is
    root), with one line on stderr; refused with the chmod command to run when it cannot be. Entries
    with o+rwx at its top level behind a closed directory (an older routerwatch's 0644 catalog):
    tightened by the owner without a word, left alone by anyone else. A private store costs a few
    stat calls."""
    try:
        root_mode = stat.S_IMODE(os.stat(root).st_mode)  # a store named through a symlink: its directory
    except FileNotFoundError:
        return
    top_open = [n for n in _TOP if (m := open_mode(root / n)) is not None and m & WORLD]
    if not root_mode & WORLD and not top_open:
        return
    st = os.stat(root)
    mine = os.geteuid() in (0, st.st_uid)
    if not mine:
        if not root_mode & WORLD:
            return  # only files inside are open, behind a directory others cannot enter: nothing leaks
        raise StoreError(_refusal(root, root_mode, "this user does not own it"))
    try:
        changed = _tighten(root, root_mode)
    except OSError as exc:
        if not root_mode & WORLD:
            return  # housekeeping only (see below): a store others cannot enter is not refused for it
        raise StoreError(_refusal(root, root_mode, exc.strerror or type(exc).__name__)) from None
    if not root_mode & WORLD:
        # files an older version (or a program embedding Store under umask 022) left 0644 behind a
        # directory others cannot enter: nothing was exposed, so nothing to say; tightened all the same,
        # so a copy of the store, or of its data/, is as private as the store
        return
    say = notice or (lambda m: print(m, file=sys.stderr, flush=True))
    what = f"mode {root_mode:04o} -> {store_dir_mode(root_mode):04o}"
    if changed:
        what += f", {changed} entries inside lost o+rwx"
    say(f"routerwatch: store {root} was readable by other users: tightened ({what})")


def _tighten(root: Path, root_mode: int) -> int:
    """chmod o-rwx everything under `root` (symlinks untouched), then the directory itself; returns
    how many entries inside changed."""
    changed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode) or not st.st_mode & WORLD:
                continue
            os.chmod(p, stat.S_IMODE(st.st_mode) & ~WORLD)
            changed += 1
    if root_mode & WORLD:
        os.chmod(root, store_dir_mode(root_mode))
    return changed


def _refusal(root: Path, mode: int, why: str) -> str:
    target = store_dir_mode(mode)
    q = shlex.quote(str(root))
    return (f"store {root} is readable by other users (mode {mode:04o}) and cannot be tightened ({why}): "
            f"run `chmod -R o-rwx {q} && chmod {target:o} {q}` as its owner")
