"""Files that survive a kill at any instruction, and the crash points that test it.

Every write that a run depends on goes through here: a new file is written beside its
destination under a temporary name, flushed and fsynced, renamed into place, and the folder
fsynced, so the destination holds either the old content or the new one.  A group of files
(a training checkpoint, a search's state) becomes durable through one small manifest renamed
last; files the manifest no longer names are removed only after it is durable.

Each file-system operation passes a *crash point* first.  The crash-point harness (ALICE,
Pillai et al. OSDI 2014; SQLite's crash tests) makes the N-th operation fail as a kill would:
``crash_at(n)`` in the same process raises ``SimulatedCrash`` there and lets no later operation
through; ``VERTEBRA_CRASH_AT=n`` in the environment ends the process on the spot
(``os._exit(137)``).  An interrupted append leaves half its line, as a real kill can.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from safetensors import SafetensorError

CRASH_ENV = "VERTEBRA_CRASH_AT"


class SimulatedCrash(BaseException):
    """A kill, simulated in-process; a BaseException, so no ``except Exception`` swallows it."""


class _CrashPoints:
    def __init__(self) -> None:
        self.count, self.at, self.crashed = 0, None, False
        self.log: list[str] = []

    def reset(self, at: int | None) -> None:
        self.count, self.at, self.crashed, self.log = 0, at, False, []

    def before(self, operation: str, path: Path, torn: Callable[[], None] | None = None) -> None:
        at = self.at if self.at is not None else _env_crash_point()
        if self.crashed:
            raise SimulatedCrash("after the crash point, nothing reaches the disk")
        self.count += 1
        self.log.append(f"{operation} {Path(path).name}")
        if at is None or self.count != at:
            return
        if torn is not None:
            torn()
        if self.at is None:  # a crash asked for through the environment: the process ends here
            os._exit(137)
        self.crashed = True
        raise SimulatedCrash(f"crash at operation {at}: {operation} {path}")


def _env_crash_point() -> int | None:
    value = os.environ.get(CRASH_ENV)
    return int(value) if value else None


crash_points = _CrashPoints()


def crash_at(n: int | None) -> None:
    """Make the ``n``-th file-system operation from now a crash (None: no crash, count only)."""
    crash_points.reset(n)


def operations() -> list[str]:
    """The operations counted since the last ``crash_at``, e.g. ``["write last.json", "rename last.json"]``."""
    return list(crash_points.log)


class OutputError(ValueError):
    """A file could not be written: names the path and the cause."""


def _fail(path: Path, error: OSError | Exception) -> OutputError:
    cause = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return OutputError(f"cannot write {path}: {cause}")


def sync_folder(folder: Path) -> None:
    crash_points.before("fsync", folder)
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_file(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write ``path`` atomically through ``write(temporary_path)``; an OSError becomes an OutputError."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        crash_points.before("write", path)
        write(temporary)
        with temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
        crash_points.before("rename", path)
        os.replace(temporary, path)
    except SimulatedCrash:
        raise
    except Exception as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, (OSError, SafetensorError)):
            raise _fail(path, error) from None
        raise
    sync_folder(path.parent)
    return path


def write_json(path: str | Path, data) -> Path:
    text = json.dumps(data, indent=1)
    return write_file(path, lambda temporary: temporary.write_text(text))


def write_tensors(path: str | Path, tensors: dict, metadata: dict | None = None) -> Path:
    from safetensors.torch import save_file

    return write_file(path, lambda temporary: save_file(tensors, temporary, metadata=metadata))


def append_line(path: str | Path, line: str) -> None:
    """Append one line and fsync it; a kill mid-append leaves at most a torn last line."""
    path = Path(path)
    data = (line.rstrip("\n") + "\n").encode()
    try:
        with path.open("ab") as handle:
            def torn() -> None:
                handle.write(data[: len(data) // 2])
                handle.flush()
            crash_points.before("append", path, torn)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise _fail(path, error) from None


def remove(path: Path) -> None:
    crash_points.before("unlink", path)
    path.unlink(missing_ok=True)


def is_scratch(name: str) -> bool:
    """The lock, and temporary files a crash may leave: no one's work."""
    return name == ".lock" or (name.startswith(".") and (name.endswith(".tmp") or ".write-probe." in name))


def holds_work(folder: Path) -> bool:
    """Whether ``folder`` holds anything but scratch files."""
    return folder.is_dir() and any(not is_scratch(p.name) for p in folder.iterdir())


def remove_unreferenced(folder: Path, pattern: str, keep: Iterable[str]) -> None:
    """Delete files in ``folder`` whose names match ``pattern`` (a regex) and are not in ``keep``,
    and temporary files a crash left; called only once the manifest that names ``keep`` is durable."""
    keep, expression = set(keep), re.compile(pattern)
    for path in sorted(folder.iterdir()):
        stale = is_scratch(path.name) and path.name != ".lock"
        if path.name not in keep and (expression.fullmatch(path.name) or stale):
            remove(path)


def read_json(path: str | Path, what: str = "file"):
    """Parse a JSON file; a damaged one is an error that names it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} ({what}) is damaged and cannot be read: {error}; it was not written "
                         f"by vertebra as it is now, so move it away") from None


def as_saved(data):
    """``data`` as a JSON file gives it back (tuples become lists), so a recorded identity and the
    current one compare like with like."""
    return json.loads(json.dumps(data))


def differing(recorded: dict, current: dict) -> list[str]:
    """The keys whose values differ between a recorded identity and the current one, sorted."""
    return sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))


def check_output_folder(folder: str | Path, flag: str = "--out") -> Path:
    """Create ``folder`` if needed and prove it writable, before any work: one clear line otherwise."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{flag} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise _fail(folder, error) from None
    return folder


class FolderLock:
    """One writer per folder: an advisory ``flock`` on ``folder/.lock``, held for the run's life
    and released by the kernel however the process ends.  A second writer is refused with the
    holder's process id and command."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / ".lock"
        self.descriptor: int | None = None

    def __enter__(self) -> "FolderLock":
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise _fail(self.path, error) from None
            holder = self.path.read_text().strip() or "another process"
            raise ValueError(f"{self.path.parent} is in use by {holder}; wait for it to end "
                             f"or choose another --out") from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"process {os.getpid()} ({_command()})".encode())
        self.descriptor = descriptor
        return self

    def __exit__(self, *exc) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)  # closing releases the lock
            self.descriptor = None


def _command() -> str:
    try:
        words = Path("/proc/self/cmdline").read_bytes().split(b"\0")
        return " ".join(w.decode(errors="replace") for w in words if w)[:200]
    except OSError:
        return "vertebra"
