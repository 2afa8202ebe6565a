"""Perturbation axes: each changes the scene it names and nothing else, and a seed replays it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apprentice.envs.base import make_task
from apprentice.envs.mujoco_perturb import HIDDEN, N_DISTRACTORS
from apprentice.envs.perturb import (
    AXES,
    Actuation,
    Perturbations,
    merge_task_args,
    parse_level,
)
from apprentice.errors import ApprenticeError

MODEL_FIELDS = {
    "light": ("light_diffuse", "light_dir"),
    "colors": ("geom_rgba", "geom_matid", "mat_rgba"),
    "camera": ("cam_pos", "cam_quat"),
    "object_scale": ("geom_size", "body_mass", "body_inertia"),
    "object_mass": ("body_mass", "body_inertia"),
    "friction": ("geom_friction",),
}
"""The model arrays each scene axis may change; every other listed array must stay nominal."""
ALL_FIELDS = sorted({f for fields in MODEL_FIELDS.values() for f in fields})


def _model_arrays(task_name: str, seed: int, **kwargs: object) -> tuple[dict, np.ndarray]:
    env = make_task(task_name, **kwargs)
    env.reset(seed=seed)
    m = env.model
    arrays = {f: np.array(getattr(m, f)) for f in ALL_FIELDS}
    qpos = np.array(env.data.qpos)
    env.close()
    return arrays, qpos


@pytest.mark.parametrize("axis", sorted(MODEL_FIELDS))
def test_a_scene_axis_changes_what_it_names_and_nothing_else(axis: str) -> None:
    nominal, nominal_qpos = _model_arrays("stack", 3)
    perturbed, qpos = _model_arrays("stack", 3, **{axis: 1.0})
    changed = set()
    for field in ALL_FIELDS:
        a, b = nominal[field], perturbed[field]
        n = min(a.shape[0], b.shape[0])  # colors adds spare materials after the task's own
        if not np.array_equal(a[:n], b[:n]):
            changed.add(field)
    assert changed, f"{axis} at level 1 changed nothing"
    assert changed <= set(MODEL_FIELDS[axis]), f"{axis} also changed {changed}"
    if axis == "object_scale":  # the cubes rest on the table at their new half-height
        np.testing.assert_array_equal(qpos[:8], nominal_qpos[:8])
        assert not np.array_equal(qpos, nominal_qpos)
    else:  # the objects start where they start nominally
        np.testing.assert_array_equal(qpos, nominal_qpos)


def test_object_scale_keeps_the_task_consistent() -> None:
    """A scaled cube rests on the table at its own half-size and the oracle still lifts it."""
    env = make_task("lift", object_scale=1.0)
    successes = 0
    for seed in range(4):
        env.reset(seed=seed)
        scale = env.object_scale("cube")
        assert scale in (pytest.approx(0.75), pytest.approx(1.25))
        np.testing.assert_allclose(env.model.geom_size[env._scene.object_geoms][0], 0.0225 * scale)
        assert env.cube_pos()[2] == pytest.approx(0.0225 * scale)
        oracle = env.oracle(np.random.default_rng(seed))
        obs, _ = env.reset(seed=seed)
        for _ in range(env.horizon):
            obs, _, _, _, info = env.step(oracle.act(obs))
            if info["success"]:
                break
        successes += info["success"]
    assert successes >= 3


def test_a_seed_gives_the_same_scene_and_another_seed_another() -> None:
    levels = {"light": 1.0, "colors": [0.0, 1.0], "camera": 0.5, "object_mass": 1.0}
    a, _ = _model_arrays("lift", 11, perturb=levels)
    b, _ = _model_arrays("lift", 11, perturb=levels)
    c, _ = _model_arrays("lift", 12, perturb=levels)
    for field in ALL_FIELDS:
        np.testing.assert_array_equal(a[field], b[field])
    assert any(not np.array_equal(a[f], c[f]) for f in ("light_dir", "cam_pos", "body_mass"))


def test_one_axis_draws_the_same_whatever_other_axes_are_on() -> None:
    alone, _ = _model_arrays("lift", 5, light=0.7)
    together, _ = _model_arrays("lift", 5, light=0.7, camera=1.0, friction=1.0)
    np.testing.assert_array_equal(alone["light_dir"], together["light_dir"])
    np.testing.assert_array_equal(alone["light_diffuse"], together["light_diffuse"])


def test_every_reset_restores_the_nominal_model_first() -> None:
    env = make_task("lift", light=[0.0, 1.0])
    env.reset(seed=1)
    first = env.model.light_dir.copy()
    env.reset(seed=2)
    env.reset(seed=1)
    np.testing.assert_array_equal(env.model.light_dir, first)


def test_a_range_draws_a_level_per_episode() -> None:
    p = Perturbations.build("lift", AXES, {"light": [0.2, 0.6]}, {})
    draws = {round(p.draw("light", p.rngs(seed)["light"]), 6) for seed in range(20)}
    assert len(draws) == 20 and all(0.2 <= d <= 0.6 for d in draws)


def test_the_camera_axes_change_the_rendered_frames() -> None:
    def frame(**kwargs: object) -> np.ndarray:
        env = make_task("lift", camera=True, image_size=32, **kwargs)
        obs, _ = env.reset(seed=4)
        env.close()
        return obs["agentview_image"].astype(int)

    nominal = frame()
    np.testing.assert_array_equal(nominal, frame())
    for axis in ("light", "colors", "camera", "distractors"):
        assert np.abs(frame(perturb={axis: 1.0}) - nominal).mean() > 1.0, axis


def test_distractors_stand_on_the_table_clear_of_the_objects() -> None:
    env = make_task("stack", distractors=1.0)
    env.reset(seed=0)
    poses = env.object_poses()
    bodies = [env.model.body(f"distractor_{i}").id for i in range(N_DISTRACTORS)]
    placed = [env.data.xpos[b] for b in bodies if not np.allclose(env.model.body_pos[b], HIDDEN)]
    assert len(placed) == N_DISTRACTORS
    for p in placed:
        assert 0.0 < p[2] < 0.05
        for pose in poses.values():
            assert np.linalg.norm(p[:2] - pose[:2, 3]) > 0.08
    half = make_task("stack", distractors=0.5)
    half.reset(seed=0)
    hidden = [np.allclose(half.model.body_pos[b], HIDDEN) for b in bodies]
    assert sum(hidden) == N_DISTRACTORS // 2
    assert make_task("stack").model.nbody == env.model.nbody - N_DISTRACTORS


def test_latency_delays_the_action_and_its_state_resumes_mid_episode() -> None:
    env = make_task("lift", latency=1.0)
    env.reset(seed=0)
    start = env.eef_pose()[:3, 3].copy()
    up = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0])
    for _ in range(3):  # level 1: three steps late, the gripper holds still meanwhile
        env.step(up)
        assert np.linalg.norm(env.eef_pose()[:3, 3] - start) < 2e-3
    env.step(up)
    assert env.eef_pose()[2, 3] > start[2] + 5e-3
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (6, 7))
    env.step(actions[0])
    state = env.get_state()
    after = [env.step(a)[0]["eef_pos"] for a in actions[1:]]
    env.set_state(state)
    again = [env.step(a)[0]["eef_pos"] for a in actions[1:]]
    np.testing.assert_array_equal(np.array(after), np.array(again))


def test_action_noise_perturbs_the_executed_action_reproducibly() -> None:
    def path(**kwargs: object) -> np.ndarray:
        env = make_task("lift", **kwargs)
        env.reset(seed=2)
        return np.array([env.step(np.zeros(7))[0]["eef_pos"] for _ in range(5)])

    still = path()
    noisy = path(action_noise=1.0)
    assert np.abs(noisy - still).max() > 1e-3
    np.testing.assert_array_equal(noisy, path(action_noise=1.0))


def test_action_noise_moves_every_arms_pose_and_no_gripper() -> None:
    # A two-arm action (robosuite's Transport): one 7-D block per arm, the gripper last.
    hold = np.tile(np.r_[np.zeros(6), -1.0], 2)
    actuation = Actuation(Perturbations({"action_noise": 1.0}), hold=hold)
    actuation.reset({"action_noise": np.random.default_rng(0)})
    commanded = np.tile(np.r_[np.zeros(6), 0.5], 2)
    executed = actuation(commanded)
    grippers = [6, 13]
    np.testing.assert_array_equal(executed[grippers], commanded[grippers])
    assert np.all(executed[[i for i in range(14) if i not in grippers]] != 0.0)


def test_friction_and_mass_scale_by_their_level_in_either_direction() -> None:
    env = make_task("stack", friction=0.5, object_mass=1.0)
    nominal = make_task("stack")
    env.reset(seed=0)
    nominal.reset(seed=0)
    for body in env._object_bodies:
        mass = env.model.body_mass[body] / nominal.model.body_mass[body]
        assert abs(math.log(mass) / math.log(5.0)) == pytest.approx(1.0)
    # Every geom by one factor: MuJoCo takes the larger friction of a contact's two geoms.
    friction = env.model.geom_friction[:, 0] / nominal.model.geom_friction[:, 0]
    np.testing.assert_allclose(friction, friction[0])
    assert abs(math.log(friction[0]) / math.log(4.0)) == pytest.approx(0.5)
    np.testing.assert_array_equal(
        env.model.geom_friction[:, 1:], nominal.model.geom_friction[:, 1:]
    )


def test_tasks_without_axes_say_so() -> None:
    with pytest.raises(ApprenticeError) as e:
        make_task("pusht", light=0.5)
    assert "task 'pusht' takes no perturbation axes (got light)" in str(e.value)
    assert make_task("pusht", perturb={}).env_args == make_task("pusht").env_args


def test_env_args_record_the_levels_and_nominal_env_args_are_unchanged() -> None:
    assert "perturb" not in make_task("lift").env_args["env_kwargs"]
    args = make_task("lift", light="0:1", camera=0.5, friction=0.0).env_args["env_kwargs"]
    assert args["perturb"] == {"light": [0.0, 1.0], "camera": 0.5}
    assert args["camera"] is False
    again = make_task("lift", **args)
    assert again.env_args == make_task("lift", **args).env_args


def test_merge_task_args_gathers_axes_and_keeps_the_camera_switch() -> None:
    base = {"camera": True, "perturb": {"light": [0, 1], "camera": [0, 1]}}
    assert merge_task_args(base, {"friction": 0.5}) == {
        "camera": True,
        "perturb": {"light": [0, 1], "camera": [0, 1], "friction": 0.5},
    }
    assert merge_task_args(base, {"perturb": {"light": 0.5}}) == {
        "camera": True,
        "perturb": {"light": 0.5},
    }
    assert merge_task_args(base, {"camera": False, "perturb": {}}) == {"camera": False}
    assert merge_task_args({}, {"camera": "0:1"}) == {"perturb": {"camera": "0:1"}}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lihgt": 0.5}, "accepts camera (bool), image_size (int), variant (str) and the"),
        ({"light": 1.5}, "light=1.5: a level must lie in [0, 1]"),
        ({"light": float("nan")}, "a level must lie in [0, 1]"),
        ({"light": "1:0"}, "must run from low to high"),
        ({"light": "bright"}, "a level is a number in [0, 1] or a range LO:HI"),
        ({"perturb": {"wind": 1.0}}, "has no perturbation axis 'wind'; its axes are light"),
    ],
)
def test_bad_levels_and_axes_are_refused_in_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(ApprenticeError, match=None) as e:
        make_task("lift", **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_task_says_which_axes_it_does_not_support() -> None:
    with pytest.raises(ApprenticeError) as e:
        make_task("pick_place", object_scale=0.5)
    assert "does not support the perturbation axis 'object_scale'" in str(e.value)
    assert "its axes are light, colors, camera, object_mass" in str(e.value)


def test_parse_level_reads_the_command_lines_forms() -> None:
    assert parse_level("light", "0:1") == (0.0, 1.0)
    assert parse_level("light", [0.25, 0.25]) == 0.25
    assert parse_level("light", 1) == 1.0
    with pytest.raises(ApprenticeError):
        parse_level("light", True)


def test_collect_records_randomized_demos_that_replay(tmp_path) -> None:
    from apprentice.cli.main import main
    from apprentice.data.reader import DemoFile

    out = tmp_path / "r.hdf5"
    args = ["collect", "--task", "lift", "--n", "2", "--workers", "1", "--no-progress"]
    rc = main([*args, "--out", str(out), "--task-args", "light=0:1", "latency=0:1"])
    assert rc == 0
    with DemoFile(out) as f:
        assert f.env_args["env_kwargs"]["perturb"] == {"light": [0.0, 1.0], "latency": [0.0, 1.0]}
    assert main(["replay", str(out)]) == 0
    assert main([*args, "--out", str(tmp_path / "x.hdf5"), "--task-args", "wind=1"]) == 2


def test_generate_records_randomized_demos(tmp_path) -> None:
    from apprentice.cli.main import main
    from apprentice.data.reader import DemoFile

    src, gen = tmp_path / "src.hdf5", tmp_path / "gen.hdf5"
    collect = ["collect", "--task", "stack", "--n", "2", "--workers", "1", "--no-progress"]
    assert main([*collect, "--out", str(src)]) == 0
    args = ["generate", "--source", str(src), "--n", "2", "--workers", "1", "--out", str(gen)]
    assert main([*args, "--task-args", "friction=0:0.5", "light=1", "--no-progress"]) == 0
    with DemoFile(gen) as f:
        assert f.env_args["env_kwargs"]["perturb"] == {"light": 1.0, "friction": [0.0, 0.5]}
        assert len(f.demo_names) == 2


def test_dagger_refuses_an_unknown_axis_before_any_work(tmp_path, capsys) -> None:
    from apprentice.cli.main import main

    out = tmp_path / "dagger"
    assert main(["dagger", "--task", "lift", "--out", str(out), "--task-args", "wind=1"]) == 2
    assert "got unknown arguments ['wind']" in capsys.readouterr().err
    assert not (out / "demos.hdf5").exists()
