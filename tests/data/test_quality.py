"""Quality scores on arrays with a known answer, on human-like lift demos, and the filter."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from apprentice.algos.trainer import TrainConfig, train
from apprentice.cli.main import main
from apprentice.collect.noisy import HumanNoise, collect_human_like
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.collect.replay import score_file
from apprentice.data import DemoFile, DemoWriter
from apprentice.data.curate import FilterConfig, curate
from apprentice.data.quality import DemoArrays, QualityConfig, score_demos
from apprentice.envs import make_task
from apprentice.errors import ApprenticeError
from apprentice.policies.checkpoint import load_checkpoint
from apprentice.policies.mlp import MLPConfig


def arrays(
    paths: list[np.ndarray],
    grippers: list[np.ndarray] | None = None,
    object_z: list[np.ndarray] | None = None,
) -> DemoArrays:
    """Demos whose actions are the position steps (scaled to about 0.2) plus a gripper."""
    acts = []
    for i, p in enumerate(paths):
        motion = np.zeros((len(p), 6))
        motion[:-1, :3] = np.diff(p, axis=0) / 0.05
        motion[-1, :3] = motion[-2, :3]
        g = grippers[i] if grippers else -np.ones(len(p))
        acts.append(np.concatenate([motion, g[:, None]], axis=1))
    return DemoArrays(
        names=[f"demo_{i}" for i in range(len(paths))],
        lengths=np.array([len(p) for p in paths]),
        actions=np.concatenate(acts),
        eef_pos=np.concatenate(paths),
        object_z=np.concatenate(object_z)[:, None] if object_z else None,
    )


def line(t: int, speed: float = 0.01) -> np.ndarray:
    """(t, 3) a straight path at `speed` m/step."""
    return np.outer(np.arange(t), [speed, 0.0, 0.0])


def test_a_twenty_step_pause_scores_idle_twenty_over_t() -> None:
    t = 100
    steps = np.full(t - 1, 0.01)
    steps[40:60] = 0.0  # the hand stays put for steps 40..59
    paused = np.zeros((t, 3))
    paused[1:, 0] = np.cumsum(steps)
    s = score_demos(arrays([line(t), paused, line(t)]))
    assert s.idle_fraction[0] == 0.0
    assert s.idle_fraction[1] == pytest.approx(20 / t)
    assert s.penalties["idle"][1] > 0 and s.score[1] < s.score[0] == 1.0


def test_chatter_counts_the_flips_beyond_the_necessary() -> None:
    grip = np.array([-1] * 10 + [1, -1, 1, -1] + [-1] * 10 + [1] * 20, dtype=float)
    calm = np.array([-1] * 24 + [1] * 20, dtype=float)
    s = score_demos(arrays([line(44), line(44), line(44)], [calm, grip, calm]))
    assert list(s.chatter) == [0, 4, 0]
    assert list(s.grasp_attempts) == [1, 1, 1]
    assert s.penalties["chatter"][1] == 1.0 and s.score[1] < s.score[0]


def test_jerk_of_a_smooth_path_is_tiny_next_to_a_jittered_one() -> None:
    tt = np.linspace(0.0, 1.0, 80)[:, None]
    smooth = 0.2 * (3 * tt**2 - 2 * tt**3) * np.array([1.0, 0.5, 0.2])  # a smoothstep reach
    rng = np.random.default_rng(0)
    jittered = smooth + rng.normal(0.0, 0.002, smooth.shape)
    s = score_demos(arrays([smooth, jittered]))
    assert s.jerk[0] < 0.01
    assert s.jerk[1] > 20 * s.jerk[0]


def test_a_grasp_that_lifts_nothing_is_failed_and_extra() -> None:
    t = 60
    once = np.array([-1.0] * 20 + [1.0] * 40)
    twice = np.array([-1.0] * 10 + [1.0] * 10 + [-1.0] * 10 + [1.0] * 30)
    lifted = np.concatenate([np.zeros(25), np.linspace(0, 0.1, 35)])
    s = score_demos(
        arrays([line(t)] * 3, [once, twice, once], [lifted, lifted, lifted]),
    )
    assert list(s.grasp_attempts) == [1, 2, 1]
    assert list(s.extra_grasps) == [0, 1, 0]
    assert list(s.failed_grasps) == [0.0, 1.0, 0.0]
    assert s.penalties["grasps"][1] == 1.0


def test_outliers_are_scored_against_the_dataset() -> None:
    rng = np.random.default_rng(1)
    paths = [line(int(rng.integers(45, 55))) for _ in range(20)] + [line(200, 0.002)]
    s = score_demos(arrays(paths))
    assert int(np.argmax(s.outlier)) == 20 and s.outlier[20] > 5
    assert np.all(s.outlier[:20] < 3)
    assert np.all((s.score >= 0) & (s.score <= 1))


def test_path_ratio_uses_the_reference_and_says_why_it_is_missing() -> None:
    d = arrays([line(50), line(50)])
    s = score_demos(d, reference_path=np.array([0.49, np.nan]), notes={"path": "oracle failed"})
    assert s.path_ratio[0] == pytest.approx(1.0)
    assert np.isnan(s.path_ratio[1]) and s.penalties["path"][1] == 0.0
    assert s.records()[1]["path_ratio"] is None and s.notes["path"] == "oracle failed"
    with pytest.raises(ApprenticeError, match="reference_path"):
        score_demos(d, reference_path=np.ones(3))
    with pytest.raises(ApprenticeError, match="weights"):
        QualityConfig(weights=(1.0, 2.0))


# --- human-like lift demos --------------------------------------------------------------

FORCED = {
    "pause": HumanNoise(pause=1, hesitation=0, jitter=0, failed_grasp=0, chatter=0),
    "hesitation": HumanNoise(pause=0, hesitation=1, jitter=0, failed_grasp=0, chatter=0),
    "jitter": HumanNoise(pause=0, hesitation=0, jitter=1, failed_grasp=0, chatter=0),
    "failed_grasp": HumanNoise(pause=0, hesitation=0, jitter=0, failed_grasp=1, chatter=0),
    "chatter": HumanNoise(pause=0, hesitation=0, jitter=0, failed_grasp=0, chatter=1),
}
CLEAN = HumanNoise(pause=0, hesitation=0, jitter=0, failed_grasp=0, chatter=0)


@pytest.fixture(scope="module")
def human_lift(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 clean lift demos, then one with each defect forced (demos 10-14)."""
    path = tmp_path_factory.mktemp("quality") / "human.hdf5"
    task = make_task("lift")
    plan = [CLEAN] * 10 + list(FORCED.values())
    with DemoWriter(path, env_args=task.env_args) as w:
        for seed, noise in enumerate(plan):
            oracle = task.oracle(np.random.default_rng(seed))
            ep = collect_human_like(task, oracle, noise, seed=seed)
            assert ep.success
            w.append(ep, masks=("train" if seed % 5 else "valid",))
    task.close()
    return path


def test_human_like_demos_are_labelled(human_lift: Path) -> None:
    with DemoFile(human_lift) as f:
        attrs = [f.attrs(n) for n in f.demo_names]
    assert [a["injected"] for a in attrs] == [""] * 10 + list(FORCED)
    assert [bool(a["noisy"]) for a in attrs] == [False] * 10 + [True] * 5
    assert {a["source"] for a in attrs} == {"oracle:human"}


def test_scores_rank_clean_demos_above_each_injected_defect(human_lift: Path) -> None:
    s = score_file(human_lift)
    clean, noisy = s.score[:10], s.score[10:]
    assert clean.min() > noisy.max(), (clean, noisy)
    # Each defect is caught by the criterion made for it.
    by_kind = dict(zip(FORCED, range(10, 15), strict=True))
    assert s.penalties["idle"][by_kind["pause"]] > 0.5
    assert s.penalties["jerk"][by_kind["jitter"]] > 0
    assert s.penalties["path"][by_kind["jitter"]] > 0
    assert s.chatter[by_kind["chatter"]] >= 2
    assert s.extra_grasps[by_kind["failed_grasp"]] == 1
    # Clean oracle demos retrace the oracle exactly.
    np.testing.assert_allclose(s.path_ratio[:10], 1.0, atol=1e-9)


def test_filter_writes_masks_leaves_demos_alone_and_trains_on_them(
    human_lift: Path, tmp_path: Path
) -> None:
    path = tmp_path / "h.hdf5"
    path.write_bytes(human_lift.read_bytes())
    with h5py.File(path, "r") as f:
        before = {n: f[f"data/{n}/actions"][()] for n in f["data"]}
    cfg = FilterConfig(file=str(path), min_score=0.8, split=True)
    r = curate(cfg, score_file(path))
    assert set(r.dropped) == {f"demo_{i}" for i in range(10, 15)}
    assert all(why and why[0].startswith("score ") for why in r.dropped.values())
    with DemoFile(path) as f:
        masks = f.masks
        assert f.demo_names == sorted(before, key=lambda n: int(n[5:]))
        for name, actions in before.items():
            np.testing.assert_array_equal(f.read_field(name, "actions"), actions)
    assert masks["curated"] == [f"demo_{i}" for i in range(10)]
    assert set(masks["curated_train"]) == set(masks["curated"]) & set(masks["train"])
    assert set(masks["curated_valid"]) == set(masks["curated"]) & set(masks["valid"])

    run = train(
        TrainConfig(
            dataset=str(path),
            out=str(tmp_path / "run"),
            policy=MLPConfig(obs_keys=("eef_pos",), hidden_dims=(8,)),
            epochs=1,
            steps_per_epoch=2,
            train_mask="curated_train",
            valid_mask="curated_valid",
            progress=False,
        )
    )
    weights = load_checkpoint(run.final_checkpoint)["state_dict"]
    with DemoFile(path) as f:
        eef = np.concatenate([f.read_field(n, "obs/eef_pos") for n in masks["curated_train"]])
    # The policy's normalizer was fitted on the curated training demos and nothing else.
    np.testing.assert_allclose(weights["obs_mean"].numpy(), eef.mean(axis=0), atol=1e-5)


def test_filter_cli_and_its_bad_input(
    human_lift: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "h.hdf5"
    path.write_bytes(human_lift.read_bytes())
    assert main(["filter", str(path), "--min-score", "0.8", "--no-progress", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "drop demo_10: score" in out and "nothing written" in out
    with DemoFile(path) as f:
        assert "curated" not in f.masks
    assert main(["filter", str(path), "--min-score", "1.5"]) == 2
    assert "--min-score must be in [0, 1]" in capsys.readouterr().err
    assert main(["filter", str(path), "--from-mask", "nope", "--no-oracle"]) == 2
    assert "no mask 'nope'" in capsys.readouterr().err
    assert main(["filter", str(path), "--name", "train"]) == 2
    assert "overwrite the file's own split" in capsys.readouterr().err
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"no hdf5 here")
    assert main(["filter", str(bad)]) == 2
    assert "bad.hdf5" in capsys.readouterr().err


def test_inspect_scores_table_and_json(
    human_lift: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "q.json"
    assert main(["inspect", str(human_lift), "--scores", "--json", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "demos: 15" in text and "quality" in text
    assert re.search(r"lowest: demo_1[0-4] ", text)
    records = json.loads(out.read_text())["demos"]
    assert [r["demo"] for r in records][:2] == ["demo_0", "demo_1"]
    assert records[10]["idle_fraction"] > records[0]["idle_fraction"]
    assert 0.0 <= min(r["score"] for r in records) <= max(r["score"] for r in records) <= 1.0


def test_collect_noise_human_labels_demos_and_keeps_clean_ones_the_oracles(
    tmp_path: Path,
) -> None:
    plain, human = tmp_path / "plain.hdf5", tmp_path / "human.hdf5"
    collect_demos(CollectConfig(task="lift", n=6, out=str(plain), workers=1, progress=False))
    cfg = CollectConfig(task="lift", n=6, out=str(human), workers=1, noise="human", progress=False)
    collect_demos(cfg)
    with DemoFile(plain) as p, DemoFile(human) as h:
        attrs = {n: h.attrs(n) for n in h.demo_names}
        assert {a["source"] for a in attrs.values()} == {"oracle:human"}
        assert all("injected" in a and "noisy" in a for a in attrs.values())
        clean = [n for n, a in attrs.items() if not a["noisy"]]
        noisy = [n for n, a in attrs.items() if a["noisy"]]
        assert clean and noisy  # seeds 0-5 give both with the default rates
        for name in clean:  # no defect drawn: exactly the oracle's demo for that seed
            np.testing.assert_array_equal(
                h.read_field(name, "actions"), p.read_field(name, "actions")
            )
        for name in noisy:
            assert h.num_samples(name) != p.num_samples(name) or not np.array_equal(
                h.read_field(name, "actions"), p.read_field(name, "actions")
            )
    with pytest.raises(ApprenticeError, match="unknown --noise 'robot'"):
        collect_demos(
            CollectConfig(task="lift", n=1, out=str(tmp_path / "x.hdf5"), workers=1, noise="robot")
        )
