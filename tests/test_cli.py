"""The `hpstudy` command (hpstudy.cli): one parser, a line per subcommand in --help, and
each subcommand doing what its old `python -m` entry point did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import pytest
import yaml
from conftest import REPO

from hpstudy import cli


def hpstudy(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hpstudy", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )


def test_help_lists_every_subcommand_on_one_line():
    proc = hpstudy("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: hpstudy [-h] [--version] COMMAND ...")
    lines = proc.stdout.splitlines()
    for name, text in cli.COMMANDS.items():
        assert any(line.split() == [name, *text.split()] for line in lines), name
    assert list(cli.COMMANDS) == [
        "check",
        "status",
        "calibrate",
        "analyze",
        "simulate",
        "gpuslots",
    ]


def test_console_script_is_the_cli():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"hpstudy": "hpstudy.cli:main"}


def test_without_a_command_it_says_what_is_missing():
    proc = hpstudy()
    assert proc.returncode == 2
    assert "the following arguments are required: COMMAND" in proc.stderr


def test_spending_choices_are_the_sequential_designs():
    from hpstudy import sequential

    assert cli.SPENDING == sequential.SPENDING


def test_simulate_sequential_levels_and_a_small_simulation(capsys):
    assert cli.main(["simulate", "sequential", "--levels"]) == 0
    assert capsys.readouterr().out.startswith("looks [3, 5, 7, 9, 10]; nominal levels [")
    assert cli.main(["simulate", "sequential", "--studies", "20", "--max", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Plan: seeds {initial: 3, max: 5, step: 2}, looks [3, 5]")
    assert "| scenario | claim rate: sequential |" in out


def test_simulate_analysis_runs_every_scenario_and_writes_its_table(tmp_path, capsys):
    """Two studies per scenario: too few for rates, enough to run each scenario through the
    real analysis and the table; the exit code says whether every rate kept its bound."""
    import json

    from hpstudy.analysis.scenarios import scenarios

    code = cli.main(["simulate", "analysis", "--studies", "2", "--json", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    records = json.loads((tmp_path / "s.json").read_text())
    assert [r["scenario"] for r in records] == [sc.name for _, sc, _ in scenarios()]
    assert code == (0 if all(r["within"] for r in records) else 1)
    assert "2 simulated studies per scenario" in out and out.count("\n| ") == len(records) + 1


def test_calibrate_writes_a_profile_that_check_uses(tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text(
        yaml.safe_dump(
            {
                "name": "s",
                "seeds": 2,
                "dataset": {"name": "microbeads", "image_size": 16, "data_percentage": 5},
                "base": {"epochs": 2, "batch_size": 8},
                "groups": {"g": {"grid": {"lr": [1e-3, 1e-2]}}},
            }
        )
    )
    env = {**os.environ, "HPSTUDY_CACHE_DIR": str(tmp_path / "cache")}
    profile = tmp_path / "here.json"
    proc = hpstudy("calibrate", str(study), "--out", str(profile), env=env)
    assert proc.returncode == 0, proc.stderr
    machines = json.loads(profile.read_text())["machines"]
    (machine,) = machines
    assert proc.stdout.strip() == f"{profile}: {len(machines[machine])} shapes on {machine}"
    proc = hpstudy("check", str(study), "--device-profile", str(profile), env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("s: cost estimate on") == 2  # here, and on the profile's device
    bad = hpstudy("calibrate", str(tmp_path / "nope.yaml"), "--out", str(profile), env=env)
    assert bad.returncode == 2 and "no such study file" in bad.stderr


@pytest.mark.parametrize("command", ["analyze", "estimate"])
def test_unknown_commands_are_refused(command):
    with pytest.raises(SystemExit) as err:
        cli.main([command])
    assert err.value.code == 2
