"""The command line: one clear line and a non-zero exit for user errors."""

import os
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


def test_a_train_mask_that_is_not_in_the_file_is_one_clear_error(
    demo_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", "--dataset", str(demo_file), "--out", str(tmp_path / "run")]
    assert main([*args, "--train-mask", "curated_train", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "--train-mask 'curated_train'" in err and "demos.hdf5" in err
    assert not (tmp_path / "run").exists()  # nothing started


def test_every_command_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    from apprentice.cli.main import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"train", "teleop", "irl", "filter", "replay", "label-actions"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0, name
        assert "usage: apprentice" in capsys.readouterr().out


def test_quickstart_runs_end_to_end_at_a_tiny_size(tmp_path: Path) -> None:
    """`make demo`'s command: collect, train, evaluate, report (here 2 demos, 2 steps)."""
    out = tmp_path / "qs"
    args = ["quickstart", "--demos", "2", "--train.epochs", "1", "--train.steps-per-epoch", "2"]
    args += ["--train.eval-every", "1", "--train.eval-episodes", "2"]
    args += ["--eval-episodes", "2", "--workers", "1", "--out", str(out)]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    report = out / "report.html"
    assert report.is_file() and "success" in report.read_text().lower()


@pytest.mark.parametrize("algo", ["gail", "airl", "gaifo", "bco", "bc-rl"])
def test_an_algorithm_that_learns_from_demos_asks_for_demos(
    algo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["irl", "--algo", algo, "--task", "gym/InvertedPendulum-v5"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"irl --algo {algo} learns from expert demos: pass --demos" in err
    assert err.count("\n") == 1 and "do not exist" not in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workers", "0"], "--workers must be >= 1, got 0"),
        (["--workers", "-2"], "--workers must be >= 1, got -2"),
        (["--action-noise", "-0.1"], "--action-noise must be >= 0, got -0.1"),
        (["--steps-after-success", "-1"], "--steps-after-success must be >= 0, got -1"),
    ],
)
def test_collect_refuses_bad_numbers_up_front(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "d.hdf5"
    assert main(["collect", "--n", "1", "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_collect_onto_a_file_of_another_task_names_the_real_options(
    demo_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "other.hdf5"
    out.write_bytes(demo_file.read_bytes())
    argv = ["collect", "--n", "1", "--workers", "1", "--no-progress", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "choose another --out, or pass --overwrite" in err and "overwrite=True" not in err
    assert main([*argv, "--overwrite"]) == 0
    with h5py.File(out) as f:
        assert sorted(k for k in f["data"] if k.startswith("demo_")) == ["demo_0"]


def test_dagger_help_lists_every_policy_kind(capsys: pytest.CaptureFixture[str]) -> None:
    from apprentice.policies.base import policy_names

    with pytest.raises(SystemExit):
        main(["dagger", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert f"Learner policy kind: {', '.join(policy_names())}." in out


@pytest.mark.parametrize(
    ("algo", "lines"),
    [
        ("maxent", ["maxent: did not converge after", "learned reward vs the true reward"]),
        ("apprenticeship", ["apprenticeship: did not converge after 3 iterations"]),
    ],
)
def test_tabular_irl_prints_convergence_and_reward_correlation(
    algo: str, lines: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["irl", "--algo", algo, "--task", "gridworld/5x5", "--out", str(tmp_path / "run")]
    assert main([*argv, "--algo-args", "max_iters=3", "num_demos=5"]) == 0
    out = capsys.readouterr().out
    for line in lines:
        assert line in out
    assert ("correlation" in out) == (algo == "maxent")


def test_each_command_is_its_module_and_no_library_package_imports_the_cli() -> None:
    import importlib

    import apprentice
    from apprentice.cli.main import COMMAND_MODULES

    for module in COMMAND_MODULES:
        assert importlib.import_module(f"apprentice.cli.{module}").command().name == (
            module.replace("_", "-")
        )
    src = Path(apprentice.__file__).parent
    for py in src.rglob("*.py"):
        # __main__.py is the command line too: `python -m apprentice` (as torchrun -m runs it).
        if py.relative_to(src).parts[0] not in ("cli", "__main__.py"):
            assert "apprentice.cli" not in py.read_text(), py


def test_ctrl_c_through_code_run_from_a_string_still_exits_130(tmp_path: Path) -> None:
    """A KeyboardInterrupt raised inside `exec(str)` (dataclasses do it while a module imports)
    and handled by `main` still gives exit status 130, not death by SIGINT, under `python -m`
    as under the console script."""
    script = tmp_path / "interrupted.py"
    script.write_text(
        "import sys\n"
        "from types import SimpleNamespace\n"
        "from apprentice.cli import main as cli\n"
        "def interrupted(ns):\n"
        "    exec('raise KeyboardInterrupt')\n"
        "class Parser:\n"
        "    def parse_args(self, argv):\n"
        "        return SimpleNamespace(command='collect', fn=interrupted)\n"
        "cli.build_parser = Parser\n"
        "sys.exit(cli.main([]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "interrupted"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert proc.returncode == 130, proc
    assert proc.stderr == "apprentice collect: interrupted; rerun the same command to resume\n"
