"""A file in robomimic's documented layout trains in apprentice, through the command line."""

import json
from pathlib import Path

import pytest

from apprentice.cli.main import main
from apprentice.policies import load_policy


@pytest.mark.parametrize("policy", ["mlp", "rnn"])
def test_robomimic_file_trains_unchanged(
    robomimic_file: Path, tmp_path: Path, policy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--dataset", str(robomimic_file), "--out", str(out), "--policy", policy]
    argv += ["--policy-args", "hidden_dim=16" if policy == "rnn" else "hidden_dims=[16]"]
    argv += ["--epochs", "2", "--steps-per-epoch", "3", "--no-progress", "--threads", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["valid_loss"] is not None for r in records)  # mask/valid of the file is used
    policy_ = load_policy(out / "final.pt")
    assert policy_.env_args["env_name"] == "Lift"
    # The image key is kept out of a low-dim policy; robomimic's low-dim keys are used.
    assert sorted(policy_.obs_keys) == ["object", "robot0_eef_pos"]
