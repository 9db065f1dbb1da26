"""`latchkey devices mint | show | revoke`."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from cli.errors import CliError, fail
from lambdas import constants as c

MAX_COUNT = 10_000
MANIFEST_FIELDS = ("deviceId", "board", "owner", "createdAt")
DEFAULT_PRODUCT = "Latchkey"
LABEL_FORMATS = ("png", "pdf", "none")


@click.group()
def devices() -> None:
    """Mint device identities, inspect and revoke devices."""


def _ensure_env(ctx: click.Context) -> str:
    from cli.main import ensure_environment

    return ensure_environment(ctx)


# --- mint --------------------------------------------------------------------------------------------


@dataclass
class MintOptions:
    out: Path
    board: str | None
    api_url: str
    claim_url: str | None
    labels: str
    product: str


def _check_url(value: str, option: str) -> str:
    if not value.startswith(("http://", "https://")) or any(ch.isspace() for ch in value):
        fail(f"{option} must be an http:// or https:// URL, not {value!r}")
    return value.rstrip("/")


def _prepare_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        fail(f"--out {out} exists and is not a directory")
    except OSError as exc:
        fail(f"cannot create --out directory {out}: {exc.strerror}")
    if not out.is_dir():
        fail(f"--out {out} is not a directory")
    probe = out / f".latchkey-write-test-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        fail(f"cannot write into --out directory {out}: {exc.strerror}")


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


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def agent_toml(
    device_id: str, api_url: str, board: str | None, identity_file: str, extra: dict[str, Any] | None = None
) -> str:
    lines = [
        f"# Latchkey agent configuration for {device_id}, written by `latchkey devices mint`.",
        "# Run: python -m firmware --config agent.toml   (relative paths are relative to this file)",
        f"api_url = {_toml_string(api_url)}",
        f"identity_file = {_toml_string(identity_file)}",
        f"state_dir = {_toml_string('state')}",
        f"board = {_toml_string(board or '')}",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in (extra or {}).items()]
    return "\n".join(lines) + "\n"


def _write_device_files(device_dir: Path, minted: Any, options: MintOptions) -> list[Path]:
    """identity.json (0600, the only place the private key is written) and agent.toml; the paths made."""
    try:
        device_dir.mkdir(mode=0o700)
    except FileExistsError:
        fail(f"refusing to overwrite existing {device_dir}")
    made = [device_dir]
    identity: dict[str, Any] = {"deviceId": minted.device_id, "apiUrl": options.api_url}
    if minted.private_key_pem is not None:
        identity["privateKeyPem"] = minted.private_key_pem
        name = "identity.json"
    else:
        # The key stays on the device: it joins this id with its own key into identity.json.
        identity["publicKeyPem"] = minted.public_key_pem
        name = "device.json"
    try:
        write_exclusive(device_dir / name, json.dumps(identity, indent=2) + "\n", 0o600, sync=True)
        made.append(device_dir / name)
        write_exclusive(
            device_dir / "agent.toml",
            agent_toml(minted.device_id, options.api_url, options.board, "identity.json"),
            0o644,
        )
        made.append(device_dir / "agent.toml")
    except BaseException:
        _remove(made)
        raise
    return made


def _remove(paths: list[Path]) -> None:
    for path in reversed(paths):
        with contextlib.suppress(OSError):
            path.rmdir() if path.is_dir() else path.unlink()


class Manifest:
    """manifest.csv: one row per minted device, appended and flushed as each device is stored."""

    def __init__(self, path: Path) -> None:
        new = not path.exists() or path.stat().st_size == 0
        self._handle = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._handle, fieldnames=MANIFEST_FIELDS)
        if new:
            self._writer.writeheader()

    def add(self, record: dict[str, Any]) -> None:
        self._writer.writerow(
            {
                "deviceId": record[c.DEVICE_PK],
                "board": record.get("board", ""),
                "owner": record.get("ownerEmail", ""),
                "createdAt": record["createdAt"],
            }
        )
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _read_public_key(path: Path) -> str:
    try:
        data = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read --public-key {path}: {getattr(exc, 'strerror', None) or exc.__class__.__name__}")
    from lambdas.logic.manufacturing import public_key_from_pem

    return public_key_from_pem(data)  # BadRequest -> one-line error


def _progress(total: int) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn("Minting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal or total < 2,
    )


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

    if public_key is not None and count != 1:
        fail("--public-key mints exactly one device: use it with --count 1")
    if board is not None and (not board.strip() or len(board) > 64):
        fail("--board must be 1 to 64 characters")
    public_pem = _read_public_key(public_key) if public_key is not None else None
    _prepare_out(out)
    if labels == "pdf" and (out / "labels.pdf").exists():
        fail(f"refusing to overwrite {out / 'labels.pdf'}")
    _ensure_env(ctx)
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

    minted_ids = _mint_all(count, resolved_owner, public_pem, options)
    click.echo("\n".join(minted_ids))


def _mint_all(count: int, owner: Any, public_pem: str | None, options: MintOptions) -> list[str]:
    from cli import labels as lab
    from lambdas.logic import manufacturing

    out = options.out
    label_dir = out / "labels"
    if options.labels == "png":
        label_dir.mkdir(exist_ok=True)
    sheet = lab.LabelSheet(out / "labels.pdf") if options.labels == "pdf" else None
    manifest = Manifest(out / "manifest.csv")
    minted_ids: list[str] = []
    started = time.monotonic()
    try:
        with _progress(count) as progress:
            task = progress.add_task("mint", total=count)
            for _ in range(count):
                minted = manufacturing.prepare_device(owner, options.board, public_key_pem=public_pem)
                made = _write_device_files(out / minted.device_id, minted, options)
                label = None
                try:
                    if options.labels != "none":
                        qr = lab.claim_url(minted.claim_code, options.claim_url)
                        label = lab.render_label(options.product, minted.device_id, minted.display_code, qr)
                    if label is not None and options.labels == "png":
                        png = label_dir / f"{minted.device_id}.png"
                        if png.exists():
                            fail(f"refusing to overwrite {png}")
                        lab.save_png(label, png)
                        made.append(png)
                    manufacturing.store_device(minted, manufacturing.ACTOR_MANUFACTURER)
                except BaseException:
                    _remove(made)  # nothing on disk for a device the service does not know
                    raise
                manifest.add(minted.record)
                if sheet is not None and label is not None:
                    sheet.add(label)
                minted_ids.append(minted.device_id)
                progress.advance(task)
    except CliError as exc:
        raise CliError(_partial(exc.message, minted_ids, out)) from exc
    except Exception as exc:
        from cli.errors import describe

        raise CliError(_partial(describe(exc), minted_ids, out)) from exc
    finally:
        manifest.close()
        if sheet is not None:
            sheet.close()
    elapsed = max(time.monotonic() - started, 1e-9)
    where = {"png": f", labels in {label_dir}", "pdf": f", labels in {out / 'labels.pdf'}"}.get(
        options.labels, ""
    )
    click.echo(
        f"Minted {count} device{'s' if count != 1 else ''} in {elapsed:.1f} s ({count / elapsed:.1f}/s) "
        f"into {out} (manifest {out / 'manifest.csv'}{where})",
        err=True,
    )
    return minted_ids


def _partial(message: str, minted: list[str], out: Path) -> str:
    if not minted:
        return message
    return f"{message} (after minting {len(minted)} device(s), listed in {out / 'manifest.csv'})"


# --- show / revoke -----------------------------------------------------------------------------------


def _get(device_id: str) -> dict[str, Any]:
    from lambdas.dal import devices as repo

    record = repo.get(device_id.strip(), consistent=True) if device_id.strip() else None
    if record is None:
        fail(f"no device {device_id}")
    return record


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2, sort_keys=True, default=str)
    return str(value)


@devices.command()
@click.argument("device_id")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@click.option("--events", is_flag=True, help="Also list the device's audit trail, newest first.")
@click.pass_context
def show(ctx: click.Context, device_id: str, as_json: bool, events: bool) -> None:
    """Show a device's record (never its claim-code hash)."""
    from lambdas.logic.manufacturing import public_record

    _ensure_env(ctx)
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
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=False)
    table = Table(title=f"Device {record[c.DEVICE_PK]}", show_header=False, title_justify="left")
    table.add_column("attribute", style="bold")
    table.add_column("value", overflow="fold")
    first = [
        c.DEVICE_PK,
        "name",
        "state",
        "board",
        c.DEVICE_OWNER_KEY,
        "ownerEmail",
        "createdAt",
        "claimedAt",
    ]
    for key in [*(k for k in first if k in record), *sorted(k for k in record if k not in first)]:
        table.add_row(key, _cell(record[key]))
    console.print(table)
    if events:
        log = Table(title="Audit trail", title_justify="left")
        for column in ("at", "action", "actor", "detail"):
            log.add_column(column, overflow="fold")
        for event in trail:
            log.add_row(
                str(event.get("at", "")),
                str(event.get("action", "")),
                str(event.get("actor", "")),
                json.dumps(event.get("detail") or {}, sort_keys=True),
            )
        console.print(log)


@devices.command()
@click.argument("device_id")
@click.pass_context
def revoke(ctx: click.Context, device_id: str) -> None:
    """Revoke a device: its certificate is REVOKED in IoT (it cannot connect), its state `revoked`."""
    from lambdas.errors import NotFound
    from lambdas.logic.manufacturing import ACTOR_OPERATOR, revoke_device

    _ensure_env(ctx)
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
