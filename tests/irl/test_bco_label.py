"""The inverse-dynamics model, `apprentice label-actions` and BCO (`irl --algo bco`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from apprentice.cli.main import main
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.data import DemoFile, DemoWriter, Episode
from apprentice.envs.base import make_task
from apprentice.errors import ApprenticeError
from apprentice.irl.bco import BCOConfig, run_bco
from apprentice.irl.common import IRLConfig
from apprentice.irl.envs import record_expert_demos
from apprentice.irl.idm import IDMConfig, Transitions, explore, fit_idm
from apprentice.irl.label import LabelConfig, label_actions, strip_actions

PENDULUM = "gym/InvertedPendulum-v5"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lift_demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lift") / "lift.hdf5"
    collect_demos(CollectConfig(task="lift", n=3, out=str(path), workers=1, progress=False))
    return path


@pytest.fixture(scope="module")
def pendulum_demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two PD-expert episodes (1000 steps each) with next_obs and reference returns."""
    path = tmp_path_factory.mktemp("pendulum") / "pd.hdf5"
    return record_expert_demos(PENDULUM, "pd", 2, path)


def test_idm_recovers_the_actions_of_a_linear_system() -> None:
    """s' = s + B a with B of full column rank: a is a linear function of (s, s')."""
    rng = np.random.default_rng(0)
    b = rng.normal(size=(6, 3)) * 0.05  # D,A

    def pairs(n: int) -> Transitions:
        s = rng.normal(size=(n, 6)).astype(np.float32)
        a = rng.uniform(-1, 1, size=(n, 3)).astype(np.float32)
        return Transitions(s, (s + a @ b.T).astype(np.float32), a)

    cfg = IDMConfig(hidden_dims=(64, 64), steps=700, batch_size=128, lr=3e-3)
    model, _ = fit_idm(pairs(2000), ["s"], cfg, seed=0)
    test = pairs(500)
    mae = np.abs(model.predict(test.obs, test.next_obs) - test.actions).mean()
    assert mae < 0.05


def test_idm_learns_inverted_pendulum_from_random_exploration() -> None:
    task = make_task(PENDULUM)
    train = explore(task, 2000, mode="auto", noise=0.0, seed=0)  # no oracle: random
    test = explore(task, 500, mode="random", noise=0.0, seed=1)
    assert np.abs(train.actions).max() > 0.9  # uniform over the whole box
    cfg = IDMConfig(hidden_dims=(64, 64), steps=700, batch_size=128)
    model, _ = fit_idm(train, ["state"], cfg, seed=0)
    mae = np.abs(model.predict(test.obs, test.next_obs) - test.actions).mean()
    assert mae < 0.05  # against 0.5 for always guessing 0


def test_strip_then_label_lift_end_to_end(lift_demos: Path, tmp_path: Path) -> None:
    states = tmp_path / "states.hdf5"
    assert strip_actions(lift_demos, states) == 3
    with DemoFile(states) as f:
        assert f.action_dim == 0
        assert set(f.masks) >= {"train", "valid"}
    out = tmp_path / "labelled.hdf5"
    cfg = LabelConfig(demos=str(states), out=str(out), exploration_steps=1500, idm_steps=600)
    r = label_actions(cfg)
    assert r.error is None and r.demos == 3 and r.idm_path is not None
    with DemoFile(out) as f, DemoFile(lift_demos) as ref:
        assert f.action_dim == 7 and f.masks["train"] and f.env_args == ref.env_args
        assert f.attrs("demo_0")["labelled_from"] == "demo_0"
    # The same IDM on the original file: the labels' error against the oracle's actions.
    again = label_actions(
        LabelConfig(demos=str(lift_demos), out=str(tmp_path / "l2.hdf5"), idm=str(r.idm_path))
    )
    assert again.error is not None
    assert again.error["mae"] < 0.1 and again.error["relative_mae"] < 0.3
    assert len(again.error["mae_per_dim"]) == 7
    # A rerun resumes: every demo is already there.
    assert label_actions(cfg).resumed == 3


def test_label_actions_cli_on_a_pendulum_file(
    pendulum_demos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.hdf5"
    args = ["label-actions", "--demos", str(pendulum_demos), "--out", str(out)]
    assert main([*args, "--exploration-steps", "1000", "--idm-steps", "400"]) == 0
    printed = capsys.readouterr().out
    assert "MAE vs true actions" in printed and "relative MAE" in printed
    with DemoFile(out) as f:
        assert f.action_dim == 1 and len(f.demo_names) == 2
        assert f.data_attrs["expert_return"] == pytest.approx(
            DemoFile(pendulum_demos).data_attrs["expert_return"]
        )


def _rewrite(
    src: Path,
    dst: Path,
    edit: Callable[[Episode], Episode],
    env_args: dict[str, object] | None = None,
) -> Path:
    with DemoFile(src) as f, DemoWriter(dst, env_args=env_args or f.env_args) as w:
        for name in f.demo_names:
            w.append(edit(f.read(name)))
    return dst


def test_bad_inputs_are_named(lift_demos: Path, tmp_path: Path) -> None:
    def run(demos: Path, task: str = "") -> None:
        out = str(tmp_path / "o.hdf5")
        label_actions(LabelConfig(demos=str(demos), out=out, task=task, exploration_steps=10))

    no_next = _rewrite(lift_demos, tmp_path / "nn.hdf5", lambda e: replace(e, next_obs={}))
    with pytest.raises(ApprenticeError, match="next_obs/eef_pos"):
        run(no_next)
    with pytest.raises(ApprenticeError, match="not --task 'stack'"):
        run(lift_demos, task="stack")

    def drop_object(e: Episode) -> Episode:
        obs = {k: v for k, v in e.obs.items() if k != "object"}
        return replace(e, obs=obs, next_obs={k: v for k, v in e.next_obs.items() if k != "object"})

    with pytest.raises(ApprenticeError, match="lacks observation keys object"):
        run(_rewrite(lift_demos, tmp_path / "nk.hdf5", drop_object))
    unnamed = strip_actions(lift_demos, tmp_path / "s.hdf5")
    assert unnamed == 3
    anonymous = _rewrite(tmp_path / "s.hdf5", tmp_path / "anon.hdf5", lambda e: e, {"x": 1})
    with pytest.raises(ApprenticeError, match="pass --task"):
        run(anonymous)
    with pytest.raises(ApprenticeError, match="--out must differ"):
        LabelConfig(demos="a.hdf5", out="a.hdf5")


def test_nan_in_demos_is_refused_with_demo_and_step(lift_demos: Path, tmp_path: Path) -> None:
    import h5py

    bad = tmp_path / "nan.hdf5"
    strip_actions(lift_demos, bad)
    with h5py.File(bad, "r+") as f:
        f["data/demo_1/next_obs/object"][4, 0] = np.nan
    with pytest.raises(ApprenticeError, match="demo_1/next_obs/object: NaN or inf at step 4"):
        label_actions(LabelConfig(demos=str(bad), out=str(tmp_path / "o.hdf5")))


def test_cli_bad_input_prints_one_line_and_exits_2(
    lift_demos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["label-actions", "--demos", str(lift_demos), "--out", str(tmp_path / "o.hdf5")]
    assert main([*args, "--task", "gym/InvertedPendulum-v5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds demos of task 'lift'" in err[0]


def test_bco_runs_rounds_within_the_env_step_budget(pendulum_demos: Path, tmp_path: Path) -> None:
    args = ("alpha=0.5", "rounds=1", "idm_steps=300", "train.epochs=2", "train.steps_per_epoch=20")
    cfg = IRLConfig(
        algo="bco",
        task=PENDULUM,
        demos=str(pendulum_demos),
        out=str(tmp_path / "bco"),
        env_steps=1500,
        eval_episodes=1,
        algo_args=(*args, "train.threads=1"),
    )
    r = run_bco(cfg)
    assert [h["env_steps"] for h in r.history] == [1000, 1500]  # N (1 + alpha) = 1500
    for h in r.history:
        assert h["idm_mae"] < 0.05 and "normalized_return" in h and h["mean_return"] > 0
    assert Path(r.final["policy"]).is_file()
    with DemoFile(r.final["labelled_demos"]) as f:
        assert f.action_dim == 1
    # Rerunning the finished run resumes it: nothing is redone, the history is the same.
    assert run_bco(cfg).history == r.history
    with pytest.raises(ApprenticeError, match="alpha > 0 when rounds > 0"):
        BCOConfig(rounds=2)
    with pytest.raises(ApprenticeError, match="unknown key"):
        run_bco(replace(cfg, algo_args=("alpah=0.1",)))
