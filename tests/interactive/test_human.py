"""A person as the expert, through a scripted teleop device: HG-DAgger's button takeovers,
shadow labels, feedback to the device, an unplug mid-run, and a missing device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import pytest

from apprentice.cli.main import main
from apprentice.data.reader import DemoFile
from apprentice.envs.base import Task, make_task
from apprentice.envs.hand_grasp import grasp_synergy
from apprentice.envs.mujoco_task import MujocoTask
from apprentice.errors import ApprenticeError
from apprentice.interactive.dagger import DaggerConfig, round_training, run_dagger
from apprentice.interactive.episodes import run_episode
from apprentice.interactive.experts import OracleExpert, make_expert
from apprentice.interactive.human import HumanGate, TeleopExpert, TeleopStopped
from apprentice.policies.base import Policy
from apprentice.policies.mlp import MLPConfig
from apprentice.teleop.devices import ArmCommand, DeviceCommand, TeleopStatus
from apprentice.teleop.session import SessionOptions, command_to_action, view_rotation

AS_IS = SessionOptions(view_yaw=0.0, pos_scale=1.0, rot_scale=1.0)
"""Device commands reach the task unchanged: the operator's frame is the world frame."""


class ReplayHuman:
    """A `Device` whose person drives as the task's oracle would, from what they see.

    They start over (reset their oracle) whenever the scene is fresh (the task at step 0),
    press `buttons[t]` at step t of an episode, move only on `motion_steps` if given, and
    unplug the device at step `unplug_at[1]` of episode `unplug_at[0]` (counted from 0).
    """

    name = "scripted"

    def __init__(
        self,
        task: Task,
        *,
        buttons: dict[int, str] | None = None,
        motion_steps: set[int] | None = None,
        unplug_at: tuple[int, int] | None = None,
    ) -> None:
        self.task = cast(MujocoTask, task)
        self.buttons = buttons or {}
        self.motion_steps = motion_steps
        self.unplug_at = unplug_at
        self.oracle = OracleExpert(task, np.random.default_rng(0))
        self.sent: dict[int, DeviceCommand] = {}
        """The command sent at each step of the current episode."""
        self.episode = -1
        self.gone = False
        self.closed = False

    def start(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    @property
    def connected(self) -> bool:
        return not self.gone

    def poll(self) -> DeviceCommand:
        t = self.task.steps
        if t == 0:
            self.oracle.reset()
            self.episode += 1
            self.sent = {}
        if (self.episode, t) == self.unplug_at:
            self.gone = True
        action = self.oracle.label(self.task.get_observation())
        if self.motion_steps is not None and t not in self.motion_steps:
            action[:6] = 0.0
        pressed = frozenset({self.buttons[t]} if t in self.buttons else set())
        cmd = DeviceCommand(action[:3].copy(), action[3:6].copy(), float(action[-1]), pressed)
        self.sent[t] = cmd
        return cmd


class ShowingHuman(ReplayHuman):
    """A ReplayHuman whose device can show things (as the browser page does)."""

    wants_frames = True

    def __init__(self, task: Task, **kwargs: Any) -> None:
        super().__init__(task, **kwargs)
        self.shown: list[tuple[TeleopStatus, np.ndarray | None]] = []

    def show(self, status: TeleopStatus, frame: np.ndarray | None) -> None:
        self.shown.append((status, frame))


class StillLearner:
    """Proposes no motion with the hand open: it never lifts anything on its own."""

    obs_keys: ClassVar[list[str]] = ["robot0_eef_pos"]

    def __init__(self, still: np.ndarray | None = None) -> None:
        self.still = np.array([0, 0, 0, 0, 0, 0, -1]) if still is None else still

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.still.astype(np.float32)


def fake_timed_expert(task: Task, device: ReplayHuman, time: Any) -> TeleopExpert:
    """The person's expert on `time`, the `fake_time` fixture's clock."""
    return TeleopExpert(task, device, options=AS_IS, clock=time.clock, sleep=time.sleep)


def executed_actions(task: Task, monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """Every action `task.step` is given from now on."""
    seen: list[np.ndarray] = []
    step = task.step

    def spy(action: np.ndarray) -> Any:
        seen.append(np.asarray(action).copy())
        return step(action)

    monkeypatch.setattr(task, "step", spy)
    return seen


def hg_episode(
    task: Task, expert: TeleopExpert, gate: HumanGate, learner: StillLearner | None = None
) -> Any:
    return run_episode(
        task,
        expert,
        seed=3,
        mode="hg",
        rng=np.random.default_rng(0),
        learner=cast(Policy, learner or StillLearner()),
        gate=gate,
        max_labels=None,
        steps_after_success=-1,
        source="hg-dagger",
    )


def test_the_takeover_button_hands_control_over_and_back(
    monkeypatch: pytest.MonkeyPatch, fake_time: Any
) -> None:
    task = make_task("lift")
    device = ReplayHuman(task, buttons={5: "start", 15: "stop", 30: "toggle", 40: "toggle"})
    expert = fake_timed_expert(task, device, fake_time)
    gate = HumanGate(expert)
    executed = executed_actions(task, monkeypatch)
    record = hg_episode(task, expert, gate)
    assert record.steps > 40
    assert record.interventions == gate.interventions == 2
    # The press is felt on its own step: the person drives steps 5-14 and 30-39.
    assert [s.num_samples for s in record.segments] == [10, 10]
    assert record.learner_steps == record.steps - 20
    first, second = record.segments
    for segment, steps in ((first, range(5, 15)), (second, range(30, 40))):
        sent = np.stack([command_to_action(device.sent[t], np.eye(3), 1, 1) for t in steps])
        # The recorded labels are the device's commands, and they are what moved the robot.
        np.testing.assert_array_equal(segment.actions, sent)
        np.testing.assert_array_equal(np.stack([executed[t] for t in steps]), sent)
        assert segment.source == "hg-dagger"
    # Outside the takeovers the learner drove (its open, still hand).
    learner = StillLearner().act({})
    for t in [*range(5), *range(15, 30), *range(40, record.steps)]:
        np.testing.assert_array_equal(executed[t], learner)
    assert np.any(np.abs(first.actions[:, :6]) > 0.05), "the oracle commanded no motion"


def test_motion_takes_over_when_enabled_and_stillness_hands_back(fake_time: Any) -> None:
    task = make_task("lift")
    device = ReplayHuman(task, motion_steps=set(range(10, 15)))
    expert = fake_timed_expert(task, device, fake_time)
    gate = HumanGate(expert, takeover_on_motion=True, release_steps=3)
    record = hg_episode(task, expert, gate)
    # Moves on steps 10-14; after 3 still steps (15, 16, 17) the controls go back at step 17.
    assert record.interventions == 1
    assert [s.num_samples for s in record.segments] == [7]
    # Without the option, motion alone never takes over.
    device = ReplayHuman(task, motion_steps=set(range(10, 15)))
    expert = fake_timed_expert(task, device, fake_time)
    record = hg_episode(task, expert, HumanGate(expert))
    assert record.interventions == 0 and record.labels == 0


def test_label_is_the_command_in_the_view_frame_and_the_page_sees_who_drives(
    fake_time: Any,
) -> None:
    task = make_task("lift")
    task.reset(seed=0)
    device = ShowingHuman(task, buttons={2: "start"})
    options = SessionOptions(view_yaw=90.0, pos_scale=0.5, rot_scale=0.5, frame_size=32)
    clock = fake_time
    expert = TeleopExpert(task, device, options=options, clock=clock.clock, sleep=clock.sleep)
    gate = HumanGate(expert)
    assert expert.name == "teleop:scripted" and expert.noise_free_dims == (6,)
    expert.reset()
    gate.reset()
    obs = task.get_observation()
    for t in range(4):
        label = expert.label(obs)
        want = command_to_action(device.sent[t], view_rotation(90.0), 0.5, 0.5)
        np.testing.assert_array_equal(label, want)
        assert gate.expert_drives(StillLearner().act(obs), label) == (t >= 2)
        obs = task.step(label)[0]
    # The operator's "away" (+y) is world -x for the agentview camera.
    cmd = device.sent[3]
    np.testing.assert_allclose(want[:2], 0.5 * np.array([-cmd.delta_pos[1], cmd.delta_pos[0]]))
    # Paced at the task's control rate: 4 ticks of 1 / 20 s after the first.
    assert clock.now == pytest.approx(3 / task.control_freq)
    statuses = [s for s, _ in device.shown]
    assert [s.step for s in statuses] == [0, 1, 2, 3]
    assert statuses[1].state == "idle" and "learner drives" in statuses[1].message
    assert statuses[3].state == "recording" and "you drive" in statuses[3].message
    assert "(interventions: 1)" in statuses[3].message
    frame = device.shown[-1][1]
    assert frame is not None and frame.shape == (32, 32, 3) and frame.dtype == np.uint8
    # An episode without a gate (expert demos, shadow labels): every command is recorded.
    expert.reset()
    expert.label(obs)
    assert device.shown[-1][0].state == "recording"
    assert device.shown[-1][0].message.startswith("your commands are recorded")


def test_an_unplugged_device_ends_the_episode_and_keeps_what_was_aggregated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_time: Any
) -> None:
    opened: dict[str, ReplayHuman] = {}

    def open_scripted(cls: type[TeleopExpert], task: Task, device: str, **_: Any) -> TeleopExpert:
        # Round 0: the person demonstrates one episode; round 1: they take over at step 3 of
        # rollout 0 and unplug the device at step 4 of rollout 1 (the third episode).
        dev = ReplayHuman(task, buttons={3: "start"}, unplug_at=(2, 4))
        opened["device"] = dev
        return fake_timed_expert(task, dev, fake_time)

    monkeypatch.setattr(TeleopExpert, "open", classmethod(open_scripted))
    cfg = DaggerConfig(
        task="lift",
        out=str(tmp_path / "run"),
        expert="teleop",
        method="hg-dagger",
        init_episodes=1,
        rounds=1,
        episodes_per_round=3,
        train=round_training(
            policy=MLPConfig(hidden_dims=(8,)),
            epochs=1,
            steps_per_epoch=2,
            batch_size=16,
            threads=1,
        ),
        eval_episodes=1,
    )
    with pytest.raises(TeleopStopped, match=r"went away mid-episode.*already collected are kept"):
        run_dagger(cfg)
    assert opened["device"].closed  # the device is released on the way out
    run = Path(cfg.out)
    with DemoFile(run / "demos.hdf5") as f:
        attrs = [f.attrs(n) for n in f.demo_names]
        sources = [(a["source"], a["round"], a["rollout"]) for a in attrs]
    # The person's demo of round 0 and rollout 0's takeover (step 3 on, driving as the oracle
    # does, to success) are kept; rollout 1, cut off at step 4, left nothing.
    assert sources == [("teleop:scripted", 0, 0), ("hg-dagger", 1, 0)]
    assert bool(attrs[0]["success"]) and bool(attrs[1]["success"])
    state = json.loads((run / "state.json").read_text())
    assert state["rounds_done"] == 0 and state["rollouts"] == {"0": 1, "1": 1}


def test_teleop_without_the_device_lists_what_was_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = make_task("lift")
    with pytest.raises(ApprenticeError, match=r"; devices found: browser \("):
        make_expert("teleop", task, np.random.default_rng(0), device="spacemouse")
    code = main(
        [
            "dagger",
            *("--task", "lift", "--out", str(tmp_path / "r"), "--method", "hg-dagger"),
            *("--expert", "teleop", "--device", "spacemouse"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "devices found: browser" in err


def test_the_browser_expert_serves_its_page_and_closes(caplog: pytest.LogCaptureFixture) -> None:
    task = make_task("lift")
    expert = make_expert("teleop", task, np.random.default_rng(0), device="browser", port=0)
    try:
        assert isinstance(expert, TeleopExpert) and expert.name == "teleop:browser"
        url = cast(Any, expert.device).url
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
        assert any(url in r.getMessage() for r in caplog.records)
        assert not expert.device.connected  # no page open yet: reset() would wait for one
    finally:
        expert.close()


def test_a_task_without_end_effector_actions_is_refused() -> None:
    from apprentice.envs import gym_tasks  # noqa: F401  (registers gym/<id>)

    task = make_task("gym/InvertedPendulum-v5")
    with pytest.raises(ApprenticeError, match=r"--expert teleop: task 'gym/Inv.*1-D actions, not"):
        TeleopExpert(task, ReplayHuman(make_task("lift")))


def test_a_person_labels_hand_grasp_through_the_grasp_aperture(fake_time: Any) -> None:
    """The same 6-DoF and grasp-aperture command labels a 20-finger hand: the person, driving
    from the first step as the oracle does, grasps and lifts with the synergy's fingers."""
    task = make_task("hand_grasp")
    device = ReplayHuman(task, buttons={0: "start"})
    expert = fake_timed_expert(task, device, fake_time)
    assert expert.noise_free_dims == tuple(range(6, 26))  # DART leaves the fingers alone
    task.reset(seed=3)
    open_hand = task.target_pose_to_action(task.eef_pose(), -1.0) * (np.arange(26) >= 6)
    record = hg_episode(task, expert, HumanGate(expert), StillLearner(open_hand))
    assert record.success and record.interventions == 1 and record.learner_steps == 0
    (segment,) = record.segments
    assert segment.actions.shape == (record.steps, 26)
    for action in segment.actions:
        np.testing.assert_allclose(action[6:], grasp_synergy(float(action[-1])), atol=1e-6)


class TwoArmHuman:
    """Both arms driven as the fake two-arm task's oracle drives them, one command per arm;
    only arm 1 moves on `arm1_only` steps (arm 0 held still)."""

    name = "scripted"
    connected = True

    def __init__(self, task: Any, arm1_only: set[int]) -> None:
        self.task = task
        self.oracle = task.oracle(np.random.default_rng(0))
        self.arm1_only = arm1_only

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def drive_arms(self, arms: tuple[str, ...]) -> None:
        assert arms == ("robot0", "robot1")

    def poll(self) -> DeviceCommand:
        a = self.oracle.act(self.task.get_observation())
        if self.task.steps in self.arm1_only:
            a[:6] = 0.0
        arms = tuple(ArmCommand(a[i : i + 3], a[i + 3 : i + 6], float(a[i + 6])) for i in (0, 7))
        return DeviceCommand(arms[0].delta_pos, arms[0].delta_rot, arms[0].gripper, arms=arms)


def test_a_person_labels_both_arms_and_motion_of_either_takes_over(
    fake_time: Any, fake_two_arm: Any
) -> None:
    task = make_task("test_two_arm")
    device = TwoArmHuman(task, arm1_only=set(range(3)))
    expert = fake_timed_expert(task, cast(Any, device), fake_time)
    assert expert.noise_free_dims == (6, 13)
    gate = HumanGate(expert, takeover_on_motion=True, release_steps=100)
    still = np.array([0, 0, 0, 0, 0, 0, -1] * 2)
    record = hg_episode(task, expert, gate, StillLearner(still))
    # Arm 1's motion alone takes over at step 0; the person then drives both to success.
    assert record.interventions == 1 and record.learner_steps == 0 and record.success
    (segment,) = record.segments
    assert segment.actions.shape == (record.steps, 14)
    np.testing.assert_array_equal(segment.actions[:3, :6], 0.0)  # arm 0 held still
    assert np.all(np.abs(segment.actions[:3, 7:10]).max(axis=1) > 0.05)  # arm 1 moved
