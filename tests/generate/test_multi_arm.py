"""Generation on the two-arm tasks: per-arm segments, sync groups and the arms' waits."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.data import DemoFile
from apprentice.envs import make_task
from apprentice.envs.arms import ArmSubtask
from apprentice.envs.handover import Handover
from apprentice.envs.mujoco_task import yaw_of
from apprentice.envs.two_arm import TwoArmTask
from apprentice.errors import ApprenticeError
from apprentice.generate.attempt import GenerationSettings
from apprentice.generate.multi_arm import MultiArmPlayer
from apprentice.generate.poses import pose_inv
from apprentice.generate.run import GenerateConfig, run_generate
from apprentice.generate.source import check_subtasks, load_sources

TASKS = ("handover", "bimanual_lift")


@pytest.fixture(scope="module", params=TASKS)
def generated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, Path]:
    """(task, 4 oracle source demos, 2 demos generated from them)."""
    task = str(request.param)
    work = tmp_path_factory.mktemp(f"gen_{task}")
    source, out = work / "source.hdf5", work / "gen.hdf5"
    collect_demos(CollectConfig(task=task, n=4, out=str(source), workers=1, progress=False))
    r = run_generate(GenerateConfig(source=str(source), out=str(out), n=2, progress=False))
    assert r.successes == 2 and r.dgr == 2 / r.attempts
    assert sum(r.failures.values()) == r.attempts - 2
    return task, source, out


def episodes(path: Path) -> list:  # type: ignore[type-arg]
    with DemoFile(path) as f:
        return [f.read(n) for n in f.demo_names]


def test_per_arm_source_views_replay_each_arms_poses(generated: tuple[str, Path, Path]) -> None:
    task_name, source, _ = generated
    task = make_task(task_name)
    sources = load_sources(source, task)
    assert len(sources.demos) == 4 and not sources.skipped
    with DemoFile(source) as f:
        first = f.read(f.demo_names[0])
    demo = sources.demos[0]
    for arm, view in enumerate(demo.arms):
        pos = first.obs[f"robot{arm}_eef_pos"]
        np.testing.assert_allclose(view.info.eef_pose[:, :3, 3], pos, atol=1e-5)
        np.testing.assert_array_equal(view.info.gripper_action[:, 0], first.actions[:, 7 * arm + 6])
    # Arm 0's view is the stored (single-arm) datagen_info.
    np.testing.assert_allclose(demo.arms[0].info.target_pose, demo.info.target_pose, atol=1e-9)
    task.close()


def test_generated_demos_replay_to_success(generated: tuple[str, Path, Path]) -> None:
    task_name, _, out = generated
    task = make_task(task_name)
    for ep in episodes(out):
        assert ep.success and ep.source == "generated"
        assert ep.actions.shape[1] == 14 and np.all(np.abs(ep.actions) <= 1.0)
        assert len(ep.attrs["src_demos"]) == len(task.subtasks)
        task.reset(seed=ep.seed)
        task.set_state(ep.states[0])
        for action in ep.actions:
            task.step(action)
        assert task.is_success()
    task.close()


def test_sync_groups_start_and_end_together_and_the_early_arm_waits_still(
    generated: tuple[str, Path, Path],
) -> None:
    task_name, _, out = generated
    task = make_task(task_name)
    assert isinstance(task, TwoArmTask)
    subtasks = task.subtasks
    waited = 0
    for ep in episodes(out):
        steps = np.asarray(ep.attrs["subtask_steps"])  # n_subtasks, 2
        syncs = {s.sync for s in subtasks if isinstance(s, ArmSubtask) and s.sync}
        for group in syncs:
            members = [i for i, s in enumerate(subtasks) if getattr(s, "sync", None) == group]
            assert len({tuple(steps[i]) for i in members}) == 1, (group, steps[members])
            start = int(steps[members[0], 0])
            for i in members:
                arm = subtasks[i].arm  # type: ignore[attr-defined]
                # The arm's previous stage ended at its stop; from there to the group's start
                # it holds one target pose with its gripper unchanged.
                before = [j for j, s in enumerate(subtasks[:i]) if s.arm == arm]  # type: ignore[attr-defined]
                end = int(steps[before[-1], 1]) if before else 0
                assert end <= start
                if start - end < 2:
                    continue
                waited += 1
                targets = []
                for t in range(end, start):
                    task.set_state(ep.states[t])
                    targets.append(task.action_to_target_pose(ep.actions[t], arm))
                np.testing.assert_allclose(np.diff(targets, axis=0), 0.0, atol=1e-4)
                grippers = ep.actions[end:start, 7 * arm + 6]
                assert np.all(grippers == grippers[0])
    assert waited > 0, "no arm waited for its sync group"
    task.close()


def two_arm_task(*subtasks: object) -> SimpleNamespace:
    return SimpleNamespace(name="fake2", n_arms=2, subtasks=subtasks)


@pytest.mark.parametrize(
    ("subtasks", "message"),
    [
        ((ArmSubtask("a", None, arm=0),), "arm 1 has no subtask"),
        (
            (ArmSubtask("a", "x", arm=0), ArmSubtask("a", None, arm=1)),
            "arm 0's last subtask ends with the demo",
        ),
        (
            (
                ArmSubtask("a", "g", arm=0, sync="s"),
                ArmSubtask("a", None, arm=0),
                ArmSubtask("a", "h", arm=1, sync="s"),
                ArmSubtask("a", None, arm=1),
            ),
            "sync group 's': its stages end together",
        ),
        (
            (
                ArmSubtask("a", "g", arm=0, sync="s"),
                ArmSubtask("a", "h", arm=0, sync="t"),
                ArmSubtask("a", None, arm=0),
                ArmSubtask("a", "h", arm=1, sync="t"),
                ArmSubtask("a", "g", arm=1, sync="s"),
                ArmSubtask("a", None, arm=1),
            ),
            "different orders",
        ),
        (
            (
                ArmSubtask("a", None, arm=0, sync="s"),
                ArmSubtask("b", None, arm=1, sync="s"),
            ),
            "one object's transform",
        ),
    ],
)
def test_malformed_arm_subtasks_are_refused(subtasks: tuple[ArmSubtask, ...], message: str) -> None:
    with pytest.raises(ApprenticeError, match=message):
        check_subtasks(two_arm_task(*subtasks))  # type: ignore[arg-type]


@pytest.mark.parametrize("generated", ["handover"], indirect=True)  # the one with such a stage
def test_a_sync_stage_holding_an_object_makes_the_object_keep_the_sources_path(
    generated: tuple[str, Path, Path],
) -> None:
    """handover's giving arm holds the bar through the handover group. When the bar has
    slipped in its hand since the source, the giving arm's planned path takes up the slip, so
    the receiving arm's path stays where the source's was relative to the bar, not the eef."""
    task_name, source, _ = generated
    task = make_task(task_name)
    assert isinstance(task, Handover)
    sources = load_sources(source, task)
    demo = sources.demos[0]
    settings = GenerationSettings(action_noise=0.0)
    player = MultiArmPlayer(task, [demo], task.subtasks, settings, np.random.default_rng(0))
    group = player.plan.groups["handover"]
    giver, taker = group.stages
    assert (giver.arm, giver.subtask.held, taker.subtask.held) == (0, "bar", None)
    cuts = [demo.arms[s.arm].segments(player.offsets[s.arm])[s.position] for s in group.stages]
    start, stop = max(c[0] for c in cuts), min(c[1] for c in cuts)
    with DemoFile(source) as f:
        ep = f.read(demo.name)
    task.reset(seed=ep.seed)
    task.set_state(ep.states[start])
    # The scene where the source's group starts, with the bar 8 mm lower in the giving hand.
    bar = task.bar_pose()
    task.set_object_pose("bar", bar[:3, 3] - [0.0, 0.0, 0.008], yaw_of(bar[:3, :3]))
    task.set_state(task.get_state())
    bar_now, in_hand_now = task.bar_pose(), pose_inv(task.eef_pose(0)) @ task.bar_pose()
    for s in group.stages:
        player.arms[s.arm].next = s.position
        player.arms[s.arm].target = task.eef_pose(s.arm)
    player._plan_group(group)

    skip = settings.interp_steps + settings.fixed_steps
    planned = [np.array([p for p, _ in player.arms[s.arm].queue[skip:]]) for s in group.stages]
    giver_src, taker_src = demo.arms[0].info, demo.arms[1].info
    in_hand_src = pose_inv(giver_src.eef_pose[start]) @ giver_src.object_poses["bar"][start]
    # T, 4, 4: the receiving arm's targets relative to the bar the giving arm carries.
    rel_src = (
        np.linalg.inv(giver_src.target_pose[start:stop] @ in_hand_src)
        @ taker_src.target_pose[start:stop]
    )
    rel_now = np.linalg.inv(planned[0] @ in_hand_now) @ planned[1]
    np.testing.assert_allclose(rel_now, rel_src, atol=1e-6)
    # The giving arm's eef, not the bar, departs from the group's transform by the slip.
    shift = bar_now @ pose_inv(giver_src.object_poses["bar"][start])
    off = np.linalg.norm(planned[0][0, :3, 3] - (shift @ giver_src.target_pose[start])[:3, 3])
    assert 0.006 < off < 0.012, off
    task.close()
