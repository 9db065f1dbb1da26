import os
import stat

import pytest

from firmware.credentials import Credentials, CredentialsError, CredentialStore, atomic_write
from tests.unit.firmware.firmware_fakes import provisioned


def test_credentials_are_saved_0600_and_read_back(tmp_path):
    store = CredentialStore(tmp_path / "state")
    credentials = Credentials.from_poll(provisioned())

    store.save(credentials)

    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.load() == credentials


def test_a_crash_before_the_rename_keeps_the_previous_file_and_leaves_no_partial_file(tmp_path, monkeypatch):
    # Given saved credentials
    store = CredentialStore(tmp_path)
    old = Credentials.from_poll(provisioned(certificate_id="old"))
    store.save(old)

    # When the power fails between writing the new file and renaming it
    def crash(*_args):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        store.save(Credentials.from_poll(provisioned(certificate_id="new")))

    # Then the old credentials are intact and no temp file is left behind
    assert store.load() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials.json"]


def test_a_crash_while_writing_leaves_no_file_at_all_when_there_was_none(tmp_path, monkeypatch):
    def crash(_fd):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write(tmp_path / "credentials.json", b"{}")

    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_an_existing_world_readable_file_with_a_private_one(tmp_path):
    path = tmp_path / "f"
    path.write_text("old")
    path.chmod(0o644)

    atomic_write(path, b"new")

    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_wipe_removes_the_credentials_and_is_idempotent(tmp_path):
    store = CredentialStore(tmp_path)
    store.save(Credentials.from_poll(provisioned()))

    store.wipe()
    store.wipe()

    assert store.load() is None


def test_an_unreadable_file_counts_as_no_credentials(tmp_path):
    store = CredentialStore(tmp_path)
    store.path.write_text("{broken")
    assert store.load() is None


@pytest.mark.parametrize("missing", ["certificatePem", "endpoint", "topics", "thingName"])
def test_incomplete_provisioned_answers_are_rejected(missing):
    body = provisioned()
    del body[missing]
    with pytest.raises(CredentialsError):
        Credentials.from_poll(body)


def test_certificates_do_not_show_in_repr():
    assert "BEGIN" not in repr(Credentials.from_poll(provisioned()))
