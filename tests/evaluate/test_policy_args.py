"""`eval --policy-args`: a trained policy's run-time settings changed without retraining.

The policy is an untrained tiny ACT on gym/Reacher-v5, whose return is dense (distance to the
goal at every step): any change in the actions shows in every episode's return.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from apprentice.cli.main import main
from apprentice.data.normalize import Normalizer
from apprentice.data.spec import ObsActSpec
from apprentice.envs import make_task
from apprentice.envs.pool import make_pool
from apprentice.errors import ApprenticeError
from apprentice.evaluate.run import EvalConfig, evaluate
from apprentice.policies import ACTConfig, load_policy, save_checkpoint

TASK = "gym/Reacher-v5"
OPEN_LOOP = ("temporal_ensemble=false", "execute_horizon=2")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt: ACT with temporal ensembling (its default); open_loop.pt: the same weights,
    saved with the settings of OPEN_LOOP."""
    root = tmp_path_factory.mktemp("policy_args")
    spec = ObsActSpec({"state": (10,)}, 2)
    state = Normalizer.identity(spec).state_dict()
    env_args = make_task(TASK).env_args
    torch.manual_seed(0)
    policy = ACTConfig.tiny().build(spec, state)
    save_checkpoint(root / "best.pt", policy, env_args=env_args)
    config = dataclasses.replace(policy.config, temporal_ensemble=False, execute_horizon=2)
    open_loop = config.build(spec, state)
    open_loop.load_state_dict(policy.state_dict())
    save_checkpoint(root / "open_loop.pt", open_loop, env_args=env_args)
    return root


def _eval(checkpoint: Path, out: Path, *policy_args: str, workers: int = 1) -> dict[str, object]:
    cfg = EvalConfig(
        str(checkpoint),
        policy_args=policy_args,
        episodes=4,
        workers=workers,
        envs_per_worker=2,
        out=str(out),
    )
    return evaluate(cfg)


def test_overridden_settings_act_as_a_checkpoint_saved_with_them(run_dir: Path) -> None:
    default = _eval(run_dir / "best.pt", run_dir / "default.json")
    overridden = _eval(run_dir / "best.pt", run_dir / "overridden.json", *OPEN_LOOP)
    saved = _eval(run_dir / "open_loop.pt", run_dir / "saved.json")
    assert overridden["per_episode_return"] == saved["per_episode_return"]
    assert overridden["per_episode_return"] != default["per_episode_return"]
    assert overridden["policy_args"] == {"temporal_ensemble": False, "execute_horizon": 2}
    assert default["policy_args"] == {}
    loaded = load_policy(run_dir / "best.pt", {"temporal_ensemble": False, "execute_horizon": 2})
    assert loaded.config == load_policy(run_dir / "open_loop.pt").config


@pytest.mark.parametrize(
    ("policy_args", "message"),
    [
        (
            ("hidden_dim=64",),
            "^policy setting hidden_dim is fixed by training; run-time settings of act: "
            "ensemble_decay, execute_horizon, temporal_ensemble$",
        ),
        (
            ("chunk_size=3", "temporal_ensemble=false", "encoder=resnet18"),
            "^policy setting chunk_size, encoder are fixed by training; run-time settings",
        ),
        (("horizon=5",), "^act policy has no setting horizon; run-time settings of act: "),
        (("temporal_ensemble=flase",), r"setting temporal_ensemble='flase' is not a bool$"),
        (("execute_horizon=99",), r"execute_horizon must be in \[0, chunk_size=5\], got 99"),
        (("execute_horizon",), "policy argument 'execute_horizon' is not of the form key=value"),
    ],
)
def test_refused_settings_are_named_before_any_rollout(
    run_dir: Path, policy_args: tuple[str, ...], message: str
) -> None:
    out = run_dir / "refused.json"
    with pytest.raises(ApprenticeError, match=message):
        _eval(run_dir / "best.pt", out, *policy_args)
    assert not out.exists() and not (run_dir / "refused.partial.jsonl").exists()


def test_policy_args_name_the_results_file(run_dir: Path) -> None:
    """Evaluations of one checkpoint under other run-time settings keep their own file."""
    checkpoint = str(run_dir / "best.pt")
    plain = evaluate(EvalConfig(checkpoint, episodes=1, workers=1))
    chunks = evaluate(EvalConfig(checkpoint, policy_args=OPEN_LOOP, episodes=1, workers=1))
    assert Path(plain["results_path"]) == run_dir / "eval_gym-Reacher-v5.json"
    assert Path(chunks["results_path"]) == (
        run_dir / "eval_gym-Reacher-v5_execute_horizon=2_temporal_ensemble=False.json"
    )
    assert json.loads(Path(plain["results_path"]).read_text())["policy_args"] == {}
    saved = json.loads(Path(chunks["results_path"]).read_text())
    assert saved["policy_args"] == {"temporal_ensemble": False, "execute_horizon": 2}


def test_a_journal_under_other_policy_args_is_not_resumed(run_dir: Path) -> None:
    out = run_dir / "journaled.json"

    class Killed(Exception):
        pass

    def kill(n: int) -> None:
        raise Killed

    cfg = EvalConfig(str(run_dir / "best.pt"), episodes=4, workers=1, envs_per_worker=2)
    with pytest.raises(Killed):
        evaluate(dataclasses.replace(cfg, out=str(out)), progress=kill)
    assert len((run_dir / "journaled.partial.jsonl").read_text().splitlines()) == 2
    other = evaluate(dataclasses.replace(cfg, out=str(out), policy_args=OPEN_LOOP))
    clean = evaluate(
        dataclasses.replace(cfg, out=str(run_dir / "clean.json"), policy_args=OPEN_LOOP)
    )
    assert other["resumed_episodes"] == 0
    assert other["per_episode_return"] == clean["per_episode_return"]


def test_pool_workers_load_the_policy_with_its_settings(run_dir: Path) -> None:
    saved = _eval(run_dir / "open_loop.pt", run_dir / "saved.json")
    cfg = EvalConfig(
        str(run_dir / "best.pt"),
        policy_args=OPEN_LOOP,
        episodes=4,
        workers=2,
        envs_per_worker=2,
        out=str(run_dir / "pooled.json"),
    )
    with make_pool(2) as pool:
        pooled = evaluate(cfg, pool=pool)
    assert pooled["workers_used"] == 2
    assert pooled["per_episode_return"] == saved["per_episode_return"]


def test_the_eval_command_takes_policy_args(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", str(run_dir / "open_loop.pt"), "--episodes", "1", "--workers", "1"]
    assert main([*argv, "--policy-args", "ensemble_decay=0.1", "execute_horizon=3"]) == 0
    saved = json.loads(
        (run_dir / "eval_gym-Reacher-v5_ensemble_decay=0.1_execute_horizon=3.json").read_text()
    )
    assert saved["policy_args"] == {"ensemble_decay": 0.1, "execute_horizon": 3}
    capsys.readouterr()
    assert main([*argv, "--policy-args", "latent_dim=8"]) == 2
    assert "policy setting latent_dim is fixed by training" in capsys.readouterr().err
