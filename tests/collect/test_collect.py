from pathlib import Path

import numpy as np
import pytest

from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.data import DemoFile
from apprentice.envs import make_task
from apprentice.errors import ApprenticeError


def test_collect_writes_successful_replayable_demos(tmp_path: Path) -> None:
    out = tmp_path / "lift.hdf5"
    r = collect_demos(CollectConfig(task="lift", n=4, out=str(out), workers=1, progress=False))
    assert (r.successes, r.resumed_from) == (4, 0)
    with DemoFile(out) as f:
        assert f.env_args["env_name"] == "lift"
        names = f.demo_names
        assert len(names) == 4
        assert sorted(f.masks["train"] + f.masks["valid"]) == sorted(names)
        ep = f.read(names[0])
    assert ep.success and ep.source == "oracle" and ep.seed == 0
    assert ep.datagen_info is not None
    assert set(ep.datagen_info.subtask_term_signals) == {"grasp", "lift"}
    assert ep.datagen_info.subtask_term_signals["lift"][-1] in (0, 1)
    # The stored states replay the stored actions exactly.
    task = make_task("lift")
    task.reset(seed=ep.seed)
    task.set_state(ep.states[0])
    for t in range(ep.num_samples):
        np.testing.assert_array_equal(task.get_state(), ep.states[t])
        obs, *_ = task.step(ep.actions[t])
    assert task.is_success()
    np.testing.assert_allclose(obs["eef_pos"], ep.next_obs["eef_pos"][-1])


def test_collect_resumes_and_skips_used_seeds(tmp_path: Path) -> None:
    out = tmp_path / "lift.hdf5"
    collect_demos(CollectConfig(task="lift", n=2, out=str(out), workers=1, progress=False))
    r = collect_demos(CollectConfig(task="lift", n=5, out=str(out), workers=2, progress=False))
    assert (r.resumed_from, r.successes) == (2, 5)
    with DemoFile(out) as f:
        seeds = [f.attrs(n)["seed"] for n in f.demo_names]
    assert sorted(seeds) == [0, 1, 2, 3, 4]


def test_pool_and_serial_collection_give_the_same_demos(tmp_path: Path) -> None:
    a, b = tmp_path / "a.hdf5", tmp_path / "b.hdf5"
    collect_demos(CollectConfig(task="stack", n=3, out=str(a), workers=1, progress=False))
    collect_demos(CollectConfig(task="stack", n=3, out=str(b), workers=2, progress=False))
    with DemoFile(a) as fa, DemoFile(b) as fb:
        for name in fa.demo_names:
            np.testing.assert_array_equal(fa.read(name).actions, fb.read(name).actions)


def test_unknown_task_and_held_out_seed_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ApprenticeError, match="unknown task 'lfit'"):
        collect_demos(CollectConfig(task="lfit", n=1, out=str(tmp_path / "x.hdf5")))
    with pytest.raises(ApprenticeError, match="held out"):
        collect_demos(
            CollectConfig(task="lift", n=1, seed=2_000_000_000, out=str(tmp_path / "x.hdf5"))
        )


def test_camera_collection_stores_uint8_images(tmp_path: Path) -> None:
    out = tmp_path / "cam.hdf5"
    collect_demos(
        CollectConfig(task="lift", n=1, out=str(out), workers=1, camera=True, progress=False)
    )
    with DemoFile(out) as f:
        ep = f.read(f.demo_names[0])
        assert f.env_args["env_kwargs"]["camera"] is True
    for key in ("agentview_image", "eye_in_hand_image"):
        frames = ep.obs[key]
        assert frames.dtype == np.uint8 and frames.shape == (ep.num_samples, 84, 84, 3)
        assert frames.std() > 1.0  # a rendered scene, not a blank buffer


def test_action_noise_is_seeded_and_leaves_the_gripper_alone(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.hdf5" for i in range(3)]
    for path, noise in zip(paths, (0.0, 0.1, 0.1), strict=True):
        collect_demos(
            CollectConfig(
                task="lift", n=1, out=str(path), workers=1, action_noise=noise, progress=False
            )
        )
    clean, noisy, again = (DemoFile(p).read("demo_0") for p in paths)
    np.testing.assert_array_equal(noisy.actions, again.actions)  # same seed, same demo
    assert set(np.unique(noisy.actions[:, -1])) <= {-1.0, 1.0}
    assert not np.array_equal(clean.actions[:5, :-1], noisy.actions[:5, :-1])


def test_recording_goes_on_past_success_for_the_steps_asked() -> None:
    from apprentice.collect.record import record_episode

    task = make_task("lift")
    oracle = task.oracle(np.random.default_rng(3))
    short = record_episode(task, oracle.act, seed=3, source="oracle", on_reset=oracle.reset)
    oracle = task.oracle(np.random.default_rng(3))
    long = record_episode(
        task, oracle.act, seed=3, source="oracle", on_reset=oracle.reset, steps_after_success=5
    )
    assert short.success and long.success
    assert long.num_samples == short.num_samples + 5
    np.testing.assert_array_equal(long.actions[: short.num_samples], short.actions)
    assert long.dones[-1] == 1 and long.dones[:-1].sum() == 0
