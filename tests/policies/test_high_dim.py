"""Every policy kind on a 26-D task: trained two steps on a tiny hand_grasp file, then exported
in each format `apprentice export` has (or refused by name), and one evaluated in the task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from apprentice.algos.config import TrainConfig
from apprentice.algos.trainer import train
from apprentice.cli.main import main
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.deploy.export import exportable_kinds
from apprentice.deploy.runtime import load_exported
from apprentice.evaluate.run import EvalConfig, evaluate
from apprentice.policies import load_policy, policy_config_class, policy_names

SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}


@pytest.fixture(scope="module")
def hand_demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hand") / "hand.hdf5"
    result = collect_demos(CollectConfig(task="hand_grasp", n=2, out=str(path), workers=1))
    assert result.successes == 2
    return path


@pytest.mark.parametrize("kind", policy_names())
def test_every_policy_trains_and_exports_on_26d_actions(
    kind: str, hand_demos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / kind
    config = TrainConfig(
        dataset=str(hand_demos),
        out=str(run),
        policy=policy_config_class(kind).tiny(),
        epochs=1,
        steps_per_epoch=2,
        batch_size=8,
        eval_every=0,
        threads=1,
        progress=False,
    )
    result = train(config)
    policy = load_policy(result.final_checkpoint)
    assert policy.action_dim == 26 and policy.env_args["env_name"] == "hand_grasp"
    policy.reset()
    obs = {
        k: np.zeros(d, np.float32) for k, d in zip(policy.obs_keys, policy.obs_dims, strict=True)
    }
    assert policy.act(obs).shape == (26,)
    for fmt, suffix in SUFFIX.items():
        out = tmp_path / f"{kind}{suffix}"
        argv = ["export", str(run), "--format", fmt, "--out", str(out), "--check-samples", "8"]
        rc = main(argv)
        if kind in exportable_kinds():
            assert rc == 0, capsys.readouterr().err
            assert load_exported(out).meta.action_dim == 26
        else:
            assert rc == 2 and not out.exists()
            assert f"policy kind {kind!r}" in capsys.readouterr().err


def test_a_26d_policy_is_evaluated_in_its_task(hand_demos: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        dataset=str(hand_demos),
        out=str(tmp_path / "mlp"),
        policy=policy_config_class("mlp").tiny(),
        epochs=1,
        steps_per_epoch=2,
        batch_size=8,
        eval_every=0,
        threads=1,
        progress=False,
    )
    checkpoint = train(config).final_checkpoint
    report = evaluate(EvalConfig(checkpoint=str(checkpoint), episodes=1, workers=1))
    assert report["task"] == "hand_grasp" and report["episodes"] == 1
