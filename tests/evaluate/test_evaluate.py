"""Evaluation end to end on `lift`: a briefly trained policy, rolled out on held-out seeds."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from apprentice.algos.trainer import TrainConfig, train
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.data.normalize import Normalizer
from apprentice.data.spec import ObsActSpec
from apprentice.envs import make_task
from apprentice.envs.pool import make_pool
from apprentice.envs.seeds import HELD_OUT_SEED_BASE, held_out_seeds
from apprentice.errors import ApprenticeError
from apprentice.evaluate.report import write_report
from apprentice.evaluate.rollout import BatchPolicy, rollout_batch
from apprentice.evaluate.run import (
    POOL_START_SECONDS,
    EvalConfig,
    evaluate,
    pool_pays,
    rollout_callback,
)
from apprentice.policies import load_policy
from apprentice.policies.base import policy_config_from_dict
from apprentice.policies.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    demos = root / "demos.hdf5"
    collect_demos(CollectConfig(task="lift", n=6, out=str(demos), workers=1, progress=False))
    cfg = TrainConfig(
        dataset=str(demos),
        out=str(root / "run"),
        policy=policy_config_from_dict({"name": "mlp", "hidden_dims": [64, 64]}),
        epochs=2,
        steps_per_epoch=20,
        threads=1,
        progress=False,
    )
    train(cfg)
    return root / "run"


def test_results_json_has_rate_interval_and_held_out_seeds(run_dir: Path) -> None:
    out = run_dir / "r.json"
    s = evaluate(EvalConfig(checkpoint=str(run_dir), episodes=4, workers=1, out=str(out)))
    saved = json.loads(out.read_text())
    for key in ("success_rate", "ci_low", "ci_high", "episodes", "seeds"):
        assert saved[key] == s[key]
    assert saved["episodes"] == 4
    assert all(seed >= HELD_OUT_SEED_BASE for seed in saved["seeds"])
    assert saved["ci_low"] <= saved["success_rate"] <= saved["ci_high"]
    assert saved["success_rate"] == pytest.approx(np.mean(saved["per_episode_success"]))


def test_pool_gives_the_same_episodes_as_one_process(run_dir: Path) -> None:
    one = evaluate(
        EvalConfig(checkpoint=str(run_dir), episodes=4, workers=1, out=str(run_dir / "a.json"))
    )
    cfg = EvalConfig(
        checkpoint=str(run_dir),
        episodes=4,
        workers=2,
        envs_per_worker=2,
        out=str(run_dir / "b.json"),
    )
    with make_pool(2) as pool:
        two = evaluate(cfg, pool=pool)
    assert two["workers_used"] == 2
    assert one["seeds"] == two["seeds"]
    assert one["per_episode_success"] == two["per_episode_success"]
    assert one["mean_episode_length"] == two["mean_episode_length"]
    assert one["per_episode_return"] == two["per_episode_return"]


def test_few_episodes_per_worker_stay_in_process(run_dir: Path) -> None:
    """A pool that cannot pay for its start-up is not started: more workers are never
    slower than one."""
    cfg = EvalConfig(checkpoint=str(run_dir), episodes=4, workers=2, envs_per_worker=2)
    assert evaluate(cfg)["workers_used"] == 1


def test_a_pool_is_started_where_it_pays() -> None:
    assert not pool_pays(chunk_seconds=0.5, chunks_left=1, workers=2)
    assert not pool_pays(chunk_seconds=0.5, chunks_left=19, workers=2)
    assert pool_pays(chunk_seconds=5.0, chunks_left=19, workers=2)
    assert pool_pays(chunk_seconds=POOL_START_SECONDS, chunks_left=4, workers=2)


def test_lockstep_rollouts_match_one_env_at_a_time(run_dir: Path) -> None:
    policy = load_policy(run_dir / "final.pt")
    seeds = [HELD_OUT_SEED_BASE + i for i in range(3)]
    together = rollout_batch(policy, [make_task("lift") for _ in seeds], seeds)
    alone = [rollout_batch(policy, [make_task("lift")], [s])[0] for s in seeds]
    assert [(r.success, r.length) for r in together] == [(r.success, r.length) for r in alone]


def test_videos_and_report(run_dir: Path) -> None:
    s = evaluate(
        EvalConfig(
            checkpoint=str(run_dir), episodes=2, workers=1, videos=1, out=str(run_dir / "v.json")
        )
    )
    assert len(s["videos"]) == 1 and Path(s["videos"][0]).stat().st_size > 1000
    report = write_report(run_dir, title="test", evaluation=s)
    text = report.read_text()
    assert f"{s['success_rate']:.1%}" in text and "data:image/png;base64" in text
    assert Path(s["videos"][0]).name in text


def test_checkpoint_for_another_task_is_rejected(run_dir: Path) -> None:
    with pytest.raises(ApprenticeError, match="trained for task 'lift', not 'stack'"):
        evaluate(EvalConfig(checkpoint=str(run_dir), task="stack", episodes=1, workers=1))


def test_observation_keys_that_the_task_lacks_are_rejected(tmp_path: Path) -> None:
    spec = ObsActSpec({"robot0_eef_pos": (3,), "object": (10,)}, 7)
    state = Normalizer.identity(spec).state_dict()
    policy = policy_config_from_dict({"name": "mlp", "hidden_dims": [8]}).build(spec, state)
    ckpt = tmp_path / "foreign.pt"
    save_checkpoint(ckpt, policy, env_args=make_task("lift").env_args)
    with pytest.raises(ApprenticeError, match="robot0_eef_pos"):
        evaluate(EvalConfig(checkpoint=str(ckpt), episodes=1, workers=1))


def test_missing_run_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ApprenticeError, match="no such run folder or checkpoint"):
        evaluate(EvalConfig(checkpoint=str(tmp_path / "nope"), episodes=1))


def test_a_killed_evaluation_resumes_from_its_journal(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks a killed evaluation finished are read back, not rolled out again."""
    import apprentice.evaluate.run as run

    whole = evaluate(
        EvalConfig(
            checkpoint=str(run_dir), episodes=6, workers=1, envs_per_worker=2,
            out=str(run_dir / "whole.json"),
        )
    )  # fmt: skip
    out = run_dir / "killed.json"
    journal = run_dir / "killed.partial.jsonl"
    cfg = EvalConfig(
        checkpoint=str(run_dir), episodes=6, workers=1, envs_per_worker=2, out=str(out)
    )

    class Killed(Exception):
        pass

    def kill_after_two_chunks(n: int) -> None:
        kill_after_two_chunks.seen += n  # type: ignore[attr-defined]
        if kill_after_two_chunks.seen >= 4:  # type: ignore[attr-defined]
            raise Killed

    kill_after_two_chunks.seen = 0  # type: ignore[attr-defined]
    with pytest.raises(Killed):
        evaluate(cfg, progress=kill_after_two_chunks)
    assert not out.exists()
    assert len(journal.read_text().splitlines()) == 3  # the header and two chunks
    with journal.open("a") as f:
        f.write('{"chunk": 2, "episo')  # a line torn by the kill

    rolled: list[list[int]] = []
    real = run._rollout_chunk

    def counting(*args: object) -> list[run.EpisodeResult]:
        rolled.append(list(args[4]))  # type: ignore[call-overload]
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(run, "_rollout_chunk", counting)
    resumed = evaluate(cfg)
    assert rolled == [whole["seeds"][4:6]]  # only the chunk the kill cut
    assert resumed["resumed_episodes"] == 4
    for key in ("seeds", "per_episode_success", "per_episode_max_reward", "success_rate"):
        assert resumed[key] == whole[key]
    assert not journal.exists()
    # A journal of another evaluation is not read.
    other = '{"checkpoint": "elsewhere"}\n{"chunk": 0, "episodes": []}\n'
    journal.write_text(other)
    rolled.clear()
    again = evaluate(cfg)
    assert again["resumed_episodes"] == 0 and len(rolled) == 3
    assert again["per_episode_success"] == whole["per_episode_success"]


def test_task_args_name_the_results_file_and_are_recorded(run_dir: Path) -> None:
    """An evaluation under other task arguments keeps its own results file (and journal)."""
    d0 = evaluate(EvalConfig(checkpoint=str(run_dir), episodes=1, workers=1))
    d1 = evaluate(
        EvalConfig(checkpoint=str(run_dir), episodes=1, workers=1, task_args=("variant=D1",))
    )
    assert Path(d0["results_path"]) == run_dir / "eval_lift.json"
    assert Path(d1["results_path"]) == run_dir / "eval_lift_variant=D1.json"
    assert json.loads((run_dir / "eval_lift.json").read_text())["task_args"] == {}
    saved = json.loads((run_dir / "eval_lift_variant=D1.json").read_text())
    assert saved["task_args"] == {"variant": "D1"}


@pytest.mark.parametrize(
    ("field", "value"), [("workers", 0), ("workers", -2), ("episodes", 0), ("envs_per_worker", 0)]
)
def test_counts_below_one_are_refused_up_front(field: str, value: int) -> None:
    with pytest.raises(ApprenticeError, match=f"^{field} must be >= 1, got {value}$"):
        EvalConfig(checkpoint="anything", **{field: value})  # type: ignore[arg-type]


def test_rollouts_report_the_return(run_dir: Path) -> None:
    """lift's reward is 1 on success, and an episode ends at its first success."""
    policy = load_policy(run_dir / "final.pt")
    seeds = held_out_seeds(3)
    results = rollout_batch(policy, [make_task("lift") for _ in seeds], seeds)
    assert [r.episode_return for r in results] == [float(r.success) for r in results]
    s = evaluate(
        EvalConfig(checkpoint=str(run_dir), episodes=3, workers=1, out=str(run_dir / "ret.json"))
    )
    assert s["per_episode_return"] == [r.episode_return for r in results]


class _CountingPolicy:
    """Records the batch size of every step."""

    def __init__(self, policy: BatchPolicy) -> None:
        self.policy = policy
        self.batches: list[int] = []

    def reset(self) -> None:
        self.policy.reset()

    def act_batch(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self.batches.append(len(next(iter(obs.values()))))
        return self.policy.act_batch(obs)


def test_trainer_callback_rolls_out_the_episodes_it_is_asked_for(run_dir: Path) -> None:
    callback = rollout_callback("lift", 2)
    policy = _CountingPolicy(load_policy(run_dir / "final.pt"))
    callback(policy, 3)  # type: ignore[arg-type]
    assert policy.batches[0] == 3
    policy.batches.clear()
    callback(policy, 1)  # type: ignore[arg-type]
    assert policy.batches[0] == 1


def test_an_in_process_chunk_runs_on_one_torch_thread_and_restores_the_count(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    import apprentice.evaluate.run as run_module

    seen: list[int] = []
    real = run_module.rollout_batch

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(run_module, "rollout_batch", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        evaluate(
            EvalConfig(checkpoint=str(run_dir), episodes=2, workers=1, out=str(run_dir / "t.json"))
        )
        assert seen == [1]  # as in a pool worker, so a chunk acts alike wherever it runs
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _untrained_pusht_checkpoint(path: Path) -> Path:
    """A seeded, untrained MLP on Push-T: its episodes' coverage, and so their returns, are
    floats that every action moves, so equal episodes are the same rollouts."""
    import torch

    from apprentice.envs.base import task_spec

    task = make_task("pusht")
    spec = task_spec(task)
    torch.manual_seed(0)
    config = policy_config_from_dict({"name": "mlp", "hidden_dims": [16]})
    save_checkpoint(
        path, config.build(spec, Normalizer.identity(spec).state_dict()), env_args=task.env_args
    )
    return path


def test_ray_backend_gives_the_process_pools_results(tmp_path: Path) -> None:
    """The same checkpoint and seeds on a local Ray instance and in a process pool: the same
    results JSON apart from where it went and how long it took."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("gym_pusht")
    ckpt = _untrained_pusht_checkpoint(tmp_path / "pusht.pt")
    cfg = EvalConfig(checkpoint=str(ckpt), episodes=4, workers=2, envs_per_worker=2)
    with make_pool(2) as pool:
        pooled = evaluate(replace(cfg, out=str(tmp_path / "pool.json")), pool=pool)
    try:
        on_ray = evaluate(replace(cfg, backend="ray", out=str(tmp_path / "ray.json")))
    finally:
        ray.shutdown()
    assert any(r > 0 for r in pooled["per_episode_return"])  # a case that can differ
    timings = {"wall_seconds", "env_steps_per_second", "results_path"}
    assert {k: v for k, v in on_ray.items() if k not in timings} == {
        k: v for k, v in pooled.items() if k not in timings
    }
    assert on_ray["workers_used"] == 2


def test_ray_backend_without_ray_is_one_line(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from apprentice.cli.main import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = run_dir / "never.json"
    argv = ["eval", str(run_dir), "--backend", "ray", "--episodes", "1", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--backend ray needs Ray: pip install" in err
    assert not out.exists()
