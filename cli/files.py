"""Writing the operator's files safely: exact modes from creation, never overwriting, undone on failure."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cli.errors import fail


def prepare_out_dir(out: Path, option: str = "--out") -> None:
    """Create `out` if needed and prove it is a writable directory, or fail with one line."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        fail(f"{option} {out} exists and is not a directory")
    except OSError as exc:
        fail(f"cannot create {option} directory {out}: {exc.strerror}")
    if not out.is_dir():
        fail(f"{option} {out} is not a directory")
    probe = out / f".latchkey-write-test-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        fail(f"cannot write into {option} directory {out}: {exc.strerror}")


def write_exclusive(path: Path, data: str, mode: int, sync: bool = False) -> None:
    """Create `path` with `mode` from the start (no window with wider permissions); never overwrite.

    `sync`: on disk before returning (the identity must exist before the service learns the device).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; make it exact
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            fd = -1
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
    finally:
        if fd >= 0:
            os.close(fd)


def remove(paths: list[Path]) -> None:
    """Remove what was made, newest first (files, then their now empty directories); best effort."""
    for path in reversed(paths):
        with contextlib.suppress(OSError):
            path.rmdir() if path.is_dir() else path.unlink()


class Rollback:
    """The paths made for one unit of work; `with` removes them again if the block raises."""

    def __init__(self, made: list[Path] | None = None) -> None:
        self.made: list[Path] = list(made or [])

    def add(self, path: Path) -> Path:
        self.made.append(path)
        return path

    def __enter__(self) -> Rollback:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if exc is not None:
            remove(self.made)
