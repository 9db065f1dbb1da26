"""The wheel works where users have it: built from the sources, installed into a fresh virtual
environment outside the checkout, run from an unrelated directory.

Offline on purpose: the wheel is built with the development environment's setuptools (no build
isolation, no index), and the new environment borrows the development environment's third-party
packages through a .pth file, which adds that directory to sys.path without activating the editable
install of the checkout that lives there. What runs is the installed wheel: the test proves it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DATA = ("fleetsim/prices.toml",)


def shipped_packages() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted(p.rstrip("*") for p in patterns)


def run(args: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 240) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_installed_wheel_runs_latchkey_away_from_the_checkout(tmp_path: Path) -> None:
    # Given the sources copied out of the checkout (a build writes build/ and *.egg-info next to them)
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", source / "pyproject.toml")
    for package in shipped_packages():
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}

    # When a wheel is built from them
    dist = tmp_path / "dist"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            dist,
            source,
        ],
        tmp_path,
        clean,
    )
    (wheel,) = dist.glob("latchkey-*.whl")
    names = zipfile.ZipFile(wheel).namelist()

    # Then it ships the simulator with its prices, and neither the bench nor the tests
    assert all(name in names for name in SHIPPED_DATA), SHIPPED_DATA
    assert any(name.startswith("fleetsim/") and name.endswith(".py") for name in names)
    assert not [n for n in names if n.startswith(("bench/", "tests/", "config/"))]

    # When it is installed into a fresh virtual environment outside the checkout
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, clean)
    python = venv / "bin" / "python"
    run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
        tmp_path,
        clean,
    )
    site = Path(
        run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, clean
        ).strip()
    )
    borrowed = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz-development-dependencies.pth").write_text("\n".join(sorted(borrowed)) + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**clean, "PATH": f"{venv / 'bin'}{os.pathsep}{clean.get('PATH', '')}", "COLUMNS": "200"}

    # Then what runs is the installed package, the checkout is not on the path, and bench is not there
    where = run(
        [
            python,
            "-c",
            "import sys, importlib.util, cli, fleetsim, firmware, lambdas\n"
            "print('\\n'.join(m.__file__ for m in (cli, fleetsim, firmware, lambdas)))\n"
            "print('bench' if importlib.util.find_spec('bench') else 'no bench')\n"
            f"print(any(p.rstrip('/') in ({str(ROOT)!r}, '') for p in sys.path[1:]))",
        ],
        work,
        env,
    ).split("\n")
    assert all(Path(f).is_relative_to(site) for f in where[:4]), where
    assert where[4:6] == ["no bench", "False"], where

    # And `latchkey --help` and the simulation of the issue run from an unrelated directory
    assert "simulate" in run([venv / "bin" / "latchkey", "--help"], work, env)
    assert "--config" in run([venv / "bin" / "latchkey-agent", "--help"], work, env)
    report = run([venv / "bin" / "latchkey", "simulate", "--devices", "1000", "--days", "1"], work, env)
    assert "Fleet simulation: 1,000 devices over 1 days" in report
    assert "prices: AWS public pricing pages" in report  # prices.toml read as package data
    assert "Monthly bill of the device API" in report and "Growth sweep" in report
    assert "The whole monthly bill" in report and "Reconnect storm" in report
