"""The mint job: for each device, its files, its label, its record and its manifest row, in that order.

If storing a device fails, that device's files are removed again, so the disk never holds an identity
the service does not know; devices minted before the failure stay minted and are in the manifest.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from cli import labels as lab
from cli import progress
from cli.errors import CliError, describe, fail
from cli.files import Rollback, write_exclusive
from cli.manifest import Manifest
from lambdas.logic import device_config


@dataclass
class MintOptions:
    out: Path
    board: str | None
    api_url: str
    claim_url: str | None
    labels: str  # png | pdf | none
    product: str


def write_device_files(device_dir: Path, minted: Any, options: MintOptions) -> list[Path]:
    """identity.json (0600, the only place the private key is written) and agent.toml; the paths made."""
    try:
        device_dir.mkdir(mode=0o700)
    except FileExistsError:
        fail(f"refusing to overwrite existing {device_dir}")
    identity: dict[str, Any] = {"deviceId": minted.device_id, "apiUrl": options.api_url}
    if minted.private_key_pem is not None:
        identity["privateKeyPem"] = minted.private_key_pem
        name = "identity.json"
    else:
        # The key stays on the device: it joins this id with its own key into identity.json.
        identity["publicKeyPem"] = minted.public_key_pem
        name = "device.json"
    with Rollback([device_dir]) as made:
        write_exclusive(device_dir / name, json.dumps(identity, indent=2) + "\n", 0o600, sync=True)
        made.add(device_dir / name)
        config = device_config.agent_toml(minted.device_id, options.api_url, options.board, "identity.json")
        write_exclusive(device_dir / "agent.toml", config, 0o644)
        made.add(device_dir / "agent.toml")
    return made.made


def mint_all(count: int, owner: Any, public_pem: str | None, options: MintOptions) -> list[str]:
    """Mint `count` devices into options.out; the ids minted. A failure says how many were minted."""
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
        with progress.count_bar("Minting", count) as bar:
            task = bar.add_task("mint", total=count)
            for _ in range(count):
                minted = manufacturing.prepare_device(owner, options.board, public_key_pem=public_pem)
                with Rollback(write_device_files(out / minted.device_id, minted, options)) as made:
                    label = None
                    if options.labels != "none":
                        qr = lab.claim_url(minted.claim_code, options.claim_url)
                        label = lab.render_label(options.product, minted.device_id, minted.display_code, qr)
                    if label is not None and options.labels == "png":
                        png = label_dir / f"{minted.device_id}.png"
                        if png.exists():
                            fail(f"refusing to overwrite {png}")
                        lab.save_png(label, png)
                        made.add(png)
                    manufacturing.store_device(minted, manufacturing.ACTOR_MANUFACTURER)
                manifest.add(minted.record)
                if sheet is not None and label is not None:
                    sheet.add(label)
                minted_ids.append(minted.device_id)
                bar.advance(task)
    except CliError as exc:
        raise CliError(_partial(exc.message, minted_ids, out)) from exc
    except Exception as exc:
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
