"""`--wandb`: a run's config and per-epoch scalars mirrored to W&B, here offline (no network)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from apprentice.cli.main import main
from apprentice.tracking import RUN_ID_FILE, STEP, _online_asked, start_tracker


def _train_argv(demo_file: Path, out: Path, epochs: int) -> list[str]:
    return [
        "train", "--dataset", str(demo_file), "--out", str(out), "--policy", "mlp",
        "--policy-args", "hidden_dims=16", "--epochs", str(epochs), "--steps-per-epoch", "3",
        "--batch-size", "16", "--eval-every", "0", "--threads", "1", "--no-progress",
    ]  # fmt: skip


def _as_logged(record: dict[str, Any], step: int) -> dict[str, Any]:
    """What a run logs of one metrics.jsonl record: its numbers as epoch/<key>, at `step`."""
    numbers = {
        f"epoch/{k}": v for k, v in record.items() if isinstance(v, int | float) and k != "epoch"
    }
    return {STEP: step, **numbers}


def test_train_logs_each_epoch_offline_and_a_resume_continues_the_run(
    demo_file: Path, tmp_path: Path, wandb_offline: Any
) -> None:
    out = tmp_path / "run"
    assert main([*_train_argv(demo_file, out, epochs=1), "--wandb", "proj"]) == 0
    assert main([*_train_argv(demo_file, out, epochs=2), "--wandb", "proj"]) == 0  # resumes
    first, resumed = wandb_offline.read_offline_runs(out)
    run_id = (out / RUN_ID_FILE).read_text().strip()
    assert first.run_id == resumed.run_id == run_id
    assert first.project == "proj" and first.job_type == "train"
    config = json.loads((out / "config.json").read_text())
    assert first.config["lr"] == config["lr"] and first.config["policy"] == config["policy"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert first.history + resumed.history == [_as_logged(r, step=3 * r["epoch"]) for r in records]
    assert first.history[0]["epoch/train_loss"] == records[0]["train_loss"]
    assert list((out / "tb").glob("events.out.tfevents.*"))  # TensorBoard as without --wandb


def test_a_fresh_run_in_an_overwritten_folder_gets_a_new_wandb_run(
    demo_file: Path, tmp_path: Path, wandb_offline: Any
) -> None:
    out = tmp_path / "run"
    assert main([*_train_argv(demo_file, out, epochs=1), "--wandb", "proj"]) == 0
    (first,) = wandb_offline.read_offline_runs(out)
    again = [*_train_argv(demo_file, out, epochs=1), "--wandb", "proj", "--overwrite"]
    assert main(again) == 0
    (second,) = wandb_offline.read_offline_runs(out)  # the old run's W&B files went with it
    assert first.run_id != second.run_id
    assert (out / RUN_ID_FILE).read_text().strip() == second.run_id


def test_without_credentials_wandb_runs_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wandb_offline: Any
) -> None:
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    tracker = start_tracker("proj", tmp_path, {"lr": 0.1}, resume=False, job_type="test")
    tracker.log({"epoch/loss": 0.5}, 7)
    tracker.finish()
    (run,) = wandb_offline.read_offline_runs(tmp_path)
    assert run.config == {"lr": 0.1}
    assert run.history == [{STEP: 7, "epoch/loss": 0.5}]


def test_credentials_or_wandb_mode_leave_the_mode_to_wandb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wandb = pytest.importorskip("wandb")
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.test")
    assert not _online_asked(wandb)
    netrc.write_text("machine wandb.example.test login user password secret\n")
    netrc.chmod(0o600)
    assert _online_asked(wandb)
    netrc.unlink()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert _online_asked(wandb)


def test_an_unreachable_wandb_falls_back_to_offline(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    wandb_offline: Any,
) -> None:
    import wandb

    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    real_init = wandb.init

    def no_network(*, mode: Any = None, **kwargs: Any) -> Any:
        if mode != "offline":
            raise wandb.errors.CommError("Timed out while retrying: no such host")
        return real_init(mode=mode, **kwargs)

    monkeypatch.setattr(wandb, "init", no_network)
    with caplog.at_level(logging.WARNING, logger="apprentice.tracking"):
        tracker = start_tracker("proj", tmp_path, {}, resume=False, job_type="test")
    tracker.log({"epoch/loss": 1.5}, 1)
    tracker.finish()
    assert "W&B not reachable (Timed out while retrying: no such host)" in caplog.text
    (run,) = wandb_offline.read_offline_runs(tmp_path)
    assert run.history == [{STEP: 1, "epoch/loss": 1.5}]


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--dataset", "DEMOS", "--eval-every", "0"],
        ["dagger", "--task", "lift"],
        ["irl", "--algo", "maxent", "--task", "gridworld/5x5"],
    ],
    ids=["train", "dagger", "irl"],
)
def test_wandb_without_the_package_is_one_line(
    argv: list[str],
    demo_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    out = tmp_path / "run"
    argv = [str(demo_file) if a == "DEMOS" else a for a in argv]
    assert main([*argv, "--out", str(out), "--wandb", "proj"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--wandb needs the wandb package: pip install" in err
    assert not out.exists()  # refused before any work
