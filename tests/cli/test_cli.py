"""The command line: one clear line and a non-zero exit for user errors."""

import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from apprentice.cli.main import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "apprentice.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help_lists_commands_and_flag_docs() -> None:
    r = run_cli("collect", "--help")
    assert r.returncode == 0
    assert "Number of successful demos wanted in the file." in r.stdout


def test_unknown_task_is_one_clear_error() -> None:
    r = run_cli("collect", "--task", "lfit", "--n", "1", "--out", "/tmp/never.hdf5")
    assert r.returncode == 2
    assert "invalid choice: 'lfit'" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_dataset_is_one_clear_error(tmp_path: Path) -> None:
    r = run_cli("inspect", str(tmp_path / "nope.hdf5"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "nope.hdf5" in r.stderr
    assert "Traceback" not in r.stderr


def test_corrupt_or_malformed_dataset_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"not an hdf5 file at all")
    assert main(["inspect", str(bad)]) == 2
    assert "bad.hdf5" in capsys.readouterr().err
    wrong = tmp_path / "wrong.hdf5"
    with h5py.File(wrong, "w") as f:
        f.create_group("data/demo_0/obs")
    assert main(["inspect", str(wrong)]) == 2
    err = capsys.readouterr().err
    assert "demo_0" in err and "actions" in err
