"""Long commands show progress on a terminal (stderr), and nothing extra where stderr is a log or a pipe."""

from __future__ import annotations

import pytest

from cli.main import cli

SMALL_SIMULATION = [
    "simulate",
    "--devices",
    "1000",
    "--days",
    "1",
    "--schedule",
    "backoff",
    "--samples",
    "100",
    "--no-sweep",
]


@pytest.fixture
def terminal(monkeypatch):
    """What rich sees on a terminal; CliRunner's streams are not one."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)


def test_simulate_shows_its_steps_on_a_terminal(runner, terminal):
    result = runner.invoke(cli, SMALL_SIMULATION)
    assert result.exit_code == 0, result.output
    assert "Simulating" in result.stderr
    assert "%" in result.stderr  # the share done
    assert "Monthly bill" in result.stdout and "Simulating" not in result.stdout


def test_simulate_prints_only_results_when_stderr_is_no_terminal(runner, monkeypatch):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    result = runner.invoke(cli, SMALL_SIMULATION)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.startswith("Fleet simulation: 1,000 devices over 1 days")


def test_mint_of_many_devices_shows_a_bar(cli_cloud, runner, terminal, tmp_path):
    result = runner.invoke(
        cli, ["devices", "mint", "--count", "3", "--out", str(tmp_path / "out"), "--labels", "none"]
    )
    assert result.exit_code == 0, result.output
    assert "Minting" in result.stderr and "3/3" in result.stderr
    assert len(result.stdout.split()) == 3  # stdout stays the list of ids


def test_doctor_shows_a_spinner_while_it_scans(cli_cloud, runner, terminal):
    result = runner.invoke(cli, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "Reading the tables and IoT" in result.stderr
    assert "No problems found." in result.stdout and "Reading" not in result.stdout
