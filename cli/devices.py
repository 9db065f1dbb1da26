"""`latchkey devices mint | show | revoke | rotate | shares`: options in, one call to the job, one line out."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lambdas.domain.device import Device

import json
import os
from pathlib import Path
from typing import Any

import click

from cli.context import ensure_environment
from cli.errors import fail
from cli.files import prepare_out_dir
from lambdas import constants as c

MAX_COUNT = 10_000
DEFAULT_PRODUCT = "Latchkey"
LABEL_FORMATS = ("png", "pdf", "none")


@click.group()
def devices() -> None:
    """Mint device identities, inspect, revoke and rotate devices."""


def _check_url(value: str, option: str) -> str:
    if not value.startswith(("http://", "https://")) or any(ch.isspace() for ch in value):
        fail(f"{option} must be an http:// or https:// URL, not {value!r}")
    return value.rstrip("/")


def _read_public_key(path: Path) -> str:
    try:
        data = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read --public-key {path}: {getattr(exc, 'strerror', None) or exc.__class__.__name__}")
    from lambdas.logic.manufacturing import public_key_from_pem

    return public_key_from_pem(data)  # BadRequest -> one-line error


def _get(device_id: str) -> Device:
    from lambdas.dal import devices as repo

    record = repo.get(device_id.strip(), consistent=True) if device_id.strip() else None
    if record is None:
        fail(f"no device {device_id}")
    return record


@devices.command()
@click.option(
    "--count",
    "-n",
    type=click.IntRange(1, MAX_COUNT),
    default=1,
    show_default=True,
    help=f"How many devices to mint (1..{MAX_COUNT}).",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the per-device files, labels and manifest.csv.",
)
@click.option("--owner", metavar="EMAIL", help="Pre-claim the devices for this owner account.")
@click.option("--board", metavar="NAME", help="Board name stored with the device and put into agent.toml.")
@click.option(
    "--api-url",
    metavar="URL",
    help="Device API base URL for identity.json/agent.toml [default: the stack's ApiUrl / LATCHKEY_API_URL].",
)
@click.option(
    "--claim-url",
    metavar="URL",
    help="Claim page URL the QR code points at "
    "[default: the stack's WebUrl / LATCHKEY_WEB_URL, else --api-url].",
)
@click.option(
    "--labels",
    type=click.Choice(LABEL_FORMATS),
    default="png",
    show_default=True,
    help="One PNG per device in DIR/labels/, one A4 sheet DIR/labels.pdf, or none.",
)
@click.option(
    "--public-key",
    "public_key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Public key or CSR (PEM) generated on the device; no private key is made (--count 1).",
)
@click.option("--product", metavar="NAME", help="Product name on the label [default: LATCHKEY_PRODUCT_NAME].")
@click.pass_context
def mint(
    ctx: click.Context,
    count: int,
    out: Path,
    owner: str | None,
    board: str | None,
    api_url: str | None,
    claim_url: str | None,
    labels: str,
    public_key: Path | None,
    product: str | None,
) -> None:
    """Mint COUNT device identities into --out DIR.

    Per device: DIR/<deviceId>/identity.json (0600: deviceId, privateKeyPem, apiUrl), agent.toml, and a
    label with the claim code (text and QR). DIR/manifest.csv lists the devices, never codes or keys.
    """
    from cli.env import ENV_API_URL, ENV_WEB_URL
    from cli.minting import MintOptions, mint_all  # Pillow and qrcode: only when minting

    if public_key is not None and count != 1:
        fail("--public-key mints exactly one device: use it with --count 1")
    if board is not None and (not board.strip() or len(board) > 64):
        fail("--board must be 1 to 64 characters")
    public_pem = _read_public_key(public_key) if public_key is not None else None
    prepare_out_dir(out)
    if labels == "pdf" and (out / "labels.pdf").exists():
        fail(f"refusing to overwrite {out / 'labels.pdf'}")
    ensure_environment(ctx)
    resolved_api = api_url or os.environ.get(ENV_API_URL)
    if not resolved_api:
        fail(f"--api-url is required (no {ENV_API_URL} in the environment or ApiUrl stack output)")
    resolved_api = _check_url(resolved_api, "--api-url")
    resolved_claim = claim_url or os.environ.get(ENV_WEB_URL) or resolved_api
    resolved_claim = _check_url(resolved_claim, "--claim-url")
    options = MintOptions(
        out=out,
        board=board.strip() if board else None,
        api_url=resolved_api,
        claim_url=resolved_claim,
        labels=labels,
        product=product or os.environ.get(c.ENV_PRODUCT_NAME) or DEFAULT_PRODUCT,
    )

    from lambdas.adapters.secrets import claim_code_key
    from lambdas.logic import manufacturing

    claim_code_key()  # fail before writing anything when the secret (or AWS) is unreachable
    resolved_owner = manufacturing.find_owner(owner) if owner else None
    if resolved_owner is not None:
        click.echo(f"Pre-claiming for {resolved_owner.email} ({resolved_owner.owner_id})", err=True)

    minted_ids = mint_all(count, resolved_owner, public_pem, options)
    click.echo("\n".join(minted_ids))


@devices.command()
@click.argument("device_id")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@click.option("--events", is_flag=True, help="Also list the device's audit trail, newest first.")
@click.pass_context
def show(ctx: click.Context, device_id: str, as_json: bool, events: bool) -> None:
    """Show a device's record (never its claim-code hash)."""
    from lambdas.logic.manufacturing import public_record

    ensure_environment(ctx)
    record = public_record(_get(device_id))
    trail: list[dict[str, Any]] = []
    if events:
        from lambdas.dal import audit

        trail = audit.list_events(record[c.DEVICE_PK])
    if as_json:
        document: dict[str, Any] = dict(record)
        if events:
            document = {"device": record, "events": trail}
        click.echo(json.dumps(document, indent=2, sort_keys=True, default=str))
        return
    from cli.tables import print_device

    print_device(record, trail if events else None)


@devices.command()
@click.argument("device_id")
@click.pass_context
def revoke(ctx: click.Context, device_id: str) -> None:
    """Revoke a device: its certificate is REVOKED in IoT (it cannot connect), its state `revoked`."""
    from lambdas.errors import NotFound
    from lambdas.logic.manufacturing import ACTOR_OPERATOR, revoke_device

    ensure_environment(ctx)
    try:
        record, changed = revoke_device(device_id.strip(), ACTOR_OPERATOR)
    except NotFound:
        fail(f"no device {device_id}")
    certificate = record.get("certificateId")
    if not changed:
        click.echo(f"{record[c.DEVICE_PK]} was already revoked")
        return
    detail = f"certificate {certificate} REVOKED" if certificate else "no certificate had been issued"
    click.echo(f"Revoked {record[c.DEVICE_PK]} ({detail})")


@devices.command()
@click.argument("device_id")
@click.pass_context
def rotate(ctx: click.Context, device_id: str) -> None:
    """Ask an active device to renew its certificate (new key, new certificate; the old one is revoked
    only after the device has connected with the new one)."""
    from lambdas.errors import Conflict, NotFound
    from lambdas.logic import rotation
    from lambdas.logic.manufacturing import ACTOR_OPERATOR

    ensure_environment(ctx)
    try:
        answer = rotation.request(device_id.strip(), actor=ACTOR_OPERATOR, source_ip=None)
    except NotFound:
        fail(f"no device {device_id}")
    except Conflict as error:
        fail(error.message)
    progress_ = answer["rotation"] or {}
    click.echo(
        f"Rotation {progress_.get('id')} of {answer['deviceId']} is {progress_.get('step')} "
        f"(until {progress_.get('expiresAt')}); certificate {answer['certificateId']} stays valid until "
        "the device has connected with its new one."
    )


@devices.command()
@click.argument("device_id")
@click.option("--json", "as_json", is_flag=True, help="Print members and offer as JSON.")
@click.pass_context
def shares(ctx: click.Context, device_id: str, as_json: bool) -> None:
    """Who a device is shared with, and its pending transfer offer (read-only: sharing and transfer are
    the owner's to decide, on the page or through the owner API)."""
    from lambdas.dal import grants
    from lambdas.domain import times
    from lambdas.logic import sharing, transfer

    ensure_environment(ctx)
    device = _get(device_id)
    if not device.owner_id:
        fail(f"{device.device_id} has no owner ({device.state}): nothing is shared")
    members = sharing.list_shares(device.owner_id, device.device_id)
    offer = grants.get_offer(device.device_id)
    if not transfer.is_live(offer, device, times.now()):
        offer = None  # an expired offer, or one of an ended ownership, can no longer be answered
    if as_json:
        view = (
            None
            if offer is None
            else {
                "id": offer.get("transferId"),
                "recipient": offer.get("email"),
                "status": offer.get("status") or "pending",
                "expiresAt": times.iso(float(offer["expiresAt"])),
            }
        )
        click.echo(json.dumps({"deviceId": device.device_id, "shares": members, "offer": view}, indent=2))
        return
    click.echo(f"{device.device_id} ({device.state}), owner {device.owner_email or device.owner_id}")
    if not members:
        click.echo("  not shared")
    for member in members:
        click.echo(
            f"  {member['role']:<8} {member['email'] or member['userId']} (since {member['createdAt']})"
        )
    if offer is not None:
        click.echo(
            f"  transfer offered to {offer.get('email')} ({offer.get('status') or 'pending'}, "
            f"expires {times.iso(float(offer['expiresAt']))})"
        )
