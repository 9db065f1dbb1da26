"""The credentials the service hands over (certificate, CA, endpoint, topics), saved atomically 0600."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "credentials.json"


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` so that a crash at any point leaves either the old or the new file.

    Temp file in the same directory (so os.replace is a rename on one file system), fsync, chmod,
    rename, then fsync the directory so the rename itself survives a power cut.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename is still atomic there
    finally:
        os.close(fd)


class CredentialsError(ValueError):
    pass


@dataclass(frozen=True)
class Credentials:
    thing_name: str
    certificate_id: str
    certificate_pem: str = field(repr=False)
    ca_pem: str = field(repr=False)
    host: str
    port: int
    topics: dict[str, str]
    acked: bool = False  # the certificate stays INACTIVE until the service has our ack

    @classmethod
    def from_poll(cls, body: dict[str, Any]) -> Credentials:
        """Build from a `provisioned` poll answer; raises CredentialsError if anything is missing."""
        try:
            endpoint = body["endpoint"]
            topics = body["topics"]
            creds = cls(
                thing_name=str(body["thingName"]),
                certificate_id=str(body["certificateId"]),
                certificate_pem=str(body["certificatePem"]),
                ca_pem=str(body["caPem"]),
                host=str(endpoint["host"]),
                port=int(endpoint.get("port", 8883)),
                topics={str(k): str(v) for k, v in dict(topics).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CredentialsError(f"provisioned answer is incomplete: {exc!r}") from exc
        for name in ("status", "commands"):
            if not creds.topics.get(name):
                raise CredentialsError(f"provisioned answer has no {name} topic")
        if not creds.thing_name or not creds.certificate_id or not creds.host:
            raise CredentialsError("provisioned answer has an empty thingName, certificateId or host")
        return creds

    def with_ack(self) -> Credentials:
        return replace(self, acked=True)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Credentials:
        try:
            raw = json.loads(data)
            return cls(
                thing_name=raw["thing_name"],
                certificate_id=raw["certificate_id"],
                certificate_pem=raw["certificate_pem"],
                ca_pem=raw["ca_pem"],
                host=raw["host"],
                port=int(raw["port"]),
                topics=dict(raw["topics"]),
                acked=bool(raw.get("acked", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CredentialsError(f"credentials file is unreadable: {exc!r}") from exc


class CredentialStore:
    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / CREDENTIALS_FILE

    def load(self) -> Credentials | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return Credentials.from_json(data)
        except CredentialsError:
            # Atomic writes make this unlikely; if it happens, the service re-sends on the next poll.
            log.warning("ignoring unreadable %s; will ask the service again", self.path)
            return None

    def save(self, credentials: Credentials) -> None:
        atomic_write(self.path, credentials.to_json())

    def wipe(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        _fsync_dir(self.path.parent)
