"""`latchkey devices mint`: files, labels, manifest, stored records, pre-claim, device-made keys."""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cli import labels
from cli.main import cli
from lambdas import constants as c
from lambdas.dal import audit
from lambdas.logic import claim_code, manufacturing
from tests.unit.cli.conftest import API_URL
from tests.unit.lambdas.conftest import make_csr, private_pem, public_pem


@pytest.fixture
def label_texts(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """What went onto each label: the text the printer gets, captured from `render_label`."""
    seen: list[dict[str, str]] = []
    real = labels.render_label

    def spy(product: str, device_id: str, display_code: str, qr_data: str) -> Any:
        seen.append({"product": product, "deviceId": device_id, "code": display_code, "qr": qr_data})
        return real(product, device_id, display_code, qr_data)

    monkeypatch.setattr(labels, "render_label", spy)
    return seen


def mint(runner, out: Path, *args: str):
    return runner.invoke(cli, ["devices", "mint", "--out", str(out), *args])


def all_items(aws) -> list[dict[str, Any]]:
    items = []
    for name in aws.tables.values():
        items += aws.ddb.scan(TableName=name)["Items"]
    return items


def test_mint_three_devices(cli_cloud, runner, tmp_path, label_texts):
    out = tmp_path / "batch"
    result = mint(runner, out, "--count", "3", "--board", "esp32-s3", "--product", "Acme Lock")
    assert result.exit_code == 0, result.output
    ids = result.stdout.split()
    assert len(ids) == 3 and len(set(ids)) == 3
    assert all(manufacturing.is_device_id(i) for i in ids)

    for device_id in ids:
        identity_path = out / device_id / "identity.json"
        assert stat.S_IMODE(identity_path.stat().st_mode) == 0o600
        identity = json.loads(identity_path.read_text())
        assert set(identity) == {"deviceId", "privateKeyPem", "apiUrl"}
        assert identity["deviceId"] == device_id and identity["apiUrl"] == API_URL
        key = serialization.load_pem_private_key(identity["privateKeyPem"].encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)

        record = cli_cloud.aws.device(device_id)
        assert record["publicKeyPem"] == public_pem(key)
        assert record["state"] == c.STATE_UNCLAIMED
        assert record["board"] == "esp32-s3"
        assert record["name"] == f"esp32-s3 {device_id[-4:]}"
        assert "ownerId" not in record
        assert record["createdAt"].endswith("Z")
        assert cli_cloud.aws.audit_actions(device_id) == ["device.minted"]
        assert (out / "labels" / f"{device_id}.png").stat().st_size > 1000

    # The label carries the code; its keyed hash is what the service stored.
    assert [t["deviceId"] for t in label_texts] == ids
    codes = []
    for text in label_texts:
        code = claim_code.normalize(text["code"])
        assert code is not None and text["code"] == claim_code.display(code)
        assert text["qr"] == f"{API_URL}/#claim={code}"
        assert text["product"] == "Acme Lock"
        record = cli_cloud.aws.device(text["deviceId"])
        assert record["claimCodeHash"] == claim_code.keyed_hash(code, cli_cloud.claim_code_key)
        codes.append(code)

    # No plaintext code anywhere but the label: not in the manifest, the tables or the device files.
    manifest = (out / "manifest.csv").read_text()
    rows = list(csv.DictReader(manifest.splitlines()))
    assert [r["deviceId"] for r in rows] == ids
    assert set(rows[0]) == {"deviceId", "board", "owner", "createdAt"}
    stored = json.dumps(all_items(cli_cloud.aws))
    device_files = "".join(p.read_text() for p in out.glob("lk-*/*"))
    for code in codes:
        for text in (code, claim_code.display(code)):
            assert text not in manifest and text not in stored and text not in device_files
            assert text not in result.output
    assert "PRIVATE KEY" not in manifest + stored


@pytest.mark.parametrize("board", ["rpi4", 'Küche 😀 "x" \\ 客厅'])
def test_agent_config_points_at_the_identity(cli_cloud, runner, tmp_path, board):
    from firmware import config as firmware_config
    from firmware import identity as firmware_identity

    out = tmp_path / "out"
    result = mint(runner, out, "--board", board, "--labels", "none")
    assert result.exit_code == 0, result.output
    device_id = result.stdout.strip()
    config = firmware_config.load_config(out / device_id / "agent.toml")
    assert config.api_url == API_URL and config.board == board
    assert config.identity_file == out / device_id / "identity.json"
    assert config.state_dir == out / device_id / "state"
    identity = firmware_identity.load_identity_file(config.identity_file)
    assert identity.device_id == device_id
    assert identity.key.public_pem().decode() == cli_cloud.aws.device(device_id)["publicKeyPem"]


def test_owner_pre_claims(cli_cloud, runner, tmp_path):
    sub = cli_cloud.create_owner("alice@example.com")
    out = tmp_path / "out"
    result = mint(runner, out, "--count", "2", "--owner", "alice@example.com", "--labels", "none")
    assert result.exit_code == 0, result.output
    ids = result.stdout.split()
    for device_id in ids:
        record = cli_cloud.aws.device(device_id)
        assert record["state"] == c.STATE_CLAIMED
        assert record["ownerId"] == sub
        assert record["ownerEmail"] == "alice@example.com"
        assert record["claimedAt"] == record["createdAt"]
        events = {e["action"]: e for e in audit.list_events(device_id)}
        assert set(events) == {"device.minted", "device.claimed"}
        assert events["device.claimed"]["actor"] == "manufacturer"
        assert events["device.claimed"]["detail"]["ownerId"] == sub
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert {r["owner"] for r in rows} == {"alice@example.com"}
    assert not (out / "labels").exists()


def test_unknown_owner_writes_nothing(cli_cloud, runner, tmp_path):
    out = tmp_path / "out"
    result = mint(runner, out, "--owner", "nobody@example.com")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: no owner account with email nobody@example.com"
    assert not list(out.glob("lk-*"))
    assert cli_cloud.aws.ddb.scan(TableName=cli_cloud.aws.tables["Devices"])["Count"] == 0


def test_pdf_label_sheet(cli_cloud, runner, tmp_path, label_texts):
    from PIL.PdfParser import PdfParser

    out = tmp_path / "out"
    result = mint(runner, out, "--count", "3", "--labels", "pdf")
    assert result.exit_code == 0, result.output
    assert len(PdfParser(str(out / "labels.pdf")).pages) == 1
    assert not (out / "labels").exists()
    assert len(label_texts) == 3
    # A second batch into the same directory must not replace the first sheet.
    again = mint(runner, out, "--labels", "pdf")
    assert again.exit_code == 1 and "refusing to overwrite" in again.stderr


def test_label_sheet_pages(tmp_path):
    from PIL.PdfParser import PdfParser

    image = labels.render_label("P", "lk-0000000000000000", "ABCDE-12345", "ABCDE12345")
    sheet = labels.LabelSheet(tmp_path / "labels.pdf")
    for _ in range(labels.SHEET_COLUMNS * labels.SHEET_ROWS + 1):
        sheet.add(image)
    sheet.close()
    assert sheet.pages == 2
    assert len(PdfParser(str(tmp_path / "labels.pdf")).pages) == 2


def test_claim_url_default_and_override(cli_cloud, runner, tmp_path, label_texts, monkeypatch):
    monkeypatch.setenv("LATCHKEY_WEB_URL", "https://claim.example.com/")
    assert mint(runner, tmp_path / "a", "--labels", "none").exit_code == 0
    assert mint(runner, tmp_path / "b").exit_code == 0
    assert label_texts[-1]["qr"].startswith("https://claim.example.com/#claim=")
    assert mint(runner, tmp_path / "c", "--claim-url", "https://x.example").exit_code == 0
    assert label_texts[-1]["qr"].startswith("https://x.example/#claim=")


def test_device_generated_key(cli_cloud, runner, tmp_path):
    for kind in ("public", "csr"):
        key = ec.generate_private_key(ec.SECP256R1())
        pem_file = tmp_path / f"{kind}.pem"
        pem_file.write_text(public_pem(key) if kind == "public" else make_csr(key))
        out = tmp_path / kind
        result = mint(runner, out, "--public-key", str(pem_file))
        assert result.exit_code == 0, result.output
        device_id = result.stdout.strip()
        assert cli_cloud.aws.device(device_id)["publicKeyPem"] == public_pem(key)
        assert not (out / device_id / "identity.json").exists()
        document = json.loads((out / device_id / "device.json").read_text())
        assert document == {"deviceId": device_id, "apiUrl": API_URL, "publicKeyPem": public_pem(key)}


def test_public_key_refusals(runner, tmp_path):
    """Checked before anything touches AWS or the output directory."""
    key = ec.generate_private_key(ec.SECP256R1())
    secret = tmp_path / "key.pem"
    secret.write_text(private_pem(key))
    weak = tmp_path / "p384.pem"
    weak.write_text(public_pem(ec.generate_private_key(ec.SECP384R1())))
    public = tmp_path / "pub.pem"
    public.write_text(public_pem(key))
    for args, message in [
        (["--public-key", str(secret)], "that is a private key"),
        (["--public-key", str(weak)], "EC keys must use P-256"),
        (["--public-key", str(public), "--count", "2"], "--public-key mints exactly one device"),
    ]:
        result = mint(runner, tmp_path / "out", *args)
        assert result.exit_code == 1, args
        assert message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_mint_device_function(cli_cloud):
    owner = manufacturing.Owner("sub-1", "bob@example.com")
    minted = manufacturing.mint_device(owner, "esp32", "test")
    record = cli_cloud.aws.device(minted.device_id)
    assert record == minted.record
    assert record["claimCodeHash"] == claim_code.keyed_hash(minted.claim_code, cli_cloud.claim_code_key)
    assert record["state"] == "claimed" and record["ownerId"] == "sub-1"
    assert "claim_code" not in repr(minted) and "PRIVATE" not in repr(minted)
    assert claim_code.normalize(minted.display_code) == minted.claim_code
    assert [e["actor"] for e in reversed(audit.list_events(minted.device_id))] == ["test", "manufacturer"]
    sub = cli_cloud.create_owner("carol@example.com")
    assert manufacturing.find_owner(" Carol@Example.com ") == manufacturing.Owner(sub, "carol@example.com")
