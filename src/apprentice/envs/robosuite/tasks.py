"""robomimic's benchmark tasks (four single-arm, and Transport): what each adds to the adapter.

Each names its objects for `object_poses` (the keys generation transforms demos with), its
subtask signals and its stages, as MimicGen's configs for these tasks do, and its oracle.
Success is robosuite's own check (see `RobosuiteTask.is_success`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from apprentice.envs.arms import ArmSubtask
from apprentice.envs.base import Oracle, Subtask
from apprentice.envs.robosuite.oracles import CanOracle, LiftOracle, SquareOracle, StackOracle
from apprentice.envs.robosuite.oracles_transport import TransportOracle
from apprentice.envs.robosuite.task import ARM_ACTION, OSC_POSE, RobosuiteTask, _pose


class Lift(RobosuiteTask):
    name = env_name = "Lift"
    subtasks = (Subtask("cube", "grasp", (0, 5)), Subtask("cube", None))

    def object_poses(self) -> dict[str, np.ndarray]:
        return {"cube": self.body_pose(self.env.cube_body_id)}

    def subtask_signals(self) -> dict[str, bool]:
        return {"grasp": self.holds(self.env.cube), "lift": self.is_success()}

    def oracle(self, rng: np.random.Generator) -> Oracle:
        return LiftOracle(self, rng)


class PickPlaceCan(RobosuiteTask):
    name = env_name = "PickPlaceCan"
    subtasks = (Subtask("can", "grasp", (5, 10)), Subtask("bin", None))

    def object_poses(self) -> dict[str, np.ndarray]:
        env = self.env
        # "bin": the centre of the can's quarter of the target bin, on its floor (fixed).
        target = np.asarray(env.target_bin_placements[env.object_id], dtype=np.float64)
        return {
            "can": self.body_pose(env.obj_body_id[env.obj_to_use]),
            "bin": _pose(target, np.eye(3)),
        }

    def subtask_signals(self) -> dict[str, bool]:
        env = self.env
        return {"grasp": self.holds(env.objects[env.object_id]), "place": self.is_success()}

    def oracle(self, rng: np.random.Generator) -> Oracle:
        return CanOracle(self, rng)


class NutAssemblySquare(RobosuiteTask):
    name = env_name = "NutAssemblySquare"
    subtasks = (
        Subtask("square_nut", "grasp", (10, 20)),
        Subtask("square_peg", None, held="square_nut"),
    )

    def object_poses(self) -> dict[str, np.ndarray]:
        env = self.env
        return {
            "square_nut": self.body_pose(env.obj_body_id[env.nuts[env.nut_id].name]),
            "square_peg": self.body_pose(env.peg1_body_id),
        }

    def handle_pos(self) -> np.ndarray:
        """World position (3,) of the nut's handle, where the oracle grasps it."""
        site = self.env.nuts[self.env.nut_id].important_sites["handle"]
        return np.asarray(self.sim.data.get_site_xpos(site), dtype=np.float64)

    def subtask_signals(self) -> dict[str, bool]:
        env = self.env
        return {"grasp": self.holds(env.nuts[env.nut_id]), "insert": self.is_success()}

    def oracle(self, rng: np.random.Generator) -> Oracle:
        return SquareOracle(self, rng)


class Stack(RobosuiteTask):
    name = env_name = "Stack"
    subtasks = (Subtask("cubeA", "grasp", (10, 20)), Subtask("cubeB", None))

    def object_poses(self) -> dict[str, np.ndarray]:
        return {
            "cubeA": self.body_pose(self.env.cubeA_body_id),
            "cubeB": self.body_pose(self.env.cubeB_body_id),
        }

    def subtask_signals(self) -> dict[str, bool]:
        return {"grasp": self.holds(self.env.cubeA), "stack": self.is_success()}

    def oracle(self, rng: np.random.Generator) -> Oracle:
        return StackOracle(self, rng)


class TwoArmTransport(RobosuiteTask):
    """robomimic's Transport: two Pandas face each other across two tables. robot0 (y < 0)
    has the start bin, its lid and the payload (a hammer) in it; robot1 (y > 0) the target
    bin, with a trash cube in it, and the trash bin. Success: the payload lies in the target
    bin and the trash in the trash bin; neither arm reaches both tables, so the payload
    changes hands over the gap between them.

    robomimic's settings: Panda x2 "single-arm-opposed", OSC_POSE at 20 Hz, horizon 1100.
    The OSC reads its deltas in the world frame, as robosuite 1.4 (robomimic's datasets) did:
    the arms' bases are turned +-90 degrees, so their base frames are not the world's.
    """

    name = env_name = "TwoArmTransport"
    robots = ("Panda", "Panda")
    env_defaults: ClassVar[dict[str, Any]] = {
        "env_configuration": "single-arm-opposed",
        "controller_configs": {
            "type": "BASIC",
            "body_parts": {"right": OSC_POSE | {"input_ref_frame": "world"}},
        },
    }
    cameras: ClassVar[dict[str, str]] = {
        name: name
        for name in (
            "shouldercamera0",
            "shouldercamera1",
            "robot0_eye_in_hand",
            "robot1_eye_in_hand",
        )
    }
    """robomimic's Transport image datasets' cameras."""
    horizon = 1100
    # The `arms.MultiArmTask` protocol: [robot0 (7), robot1 (7)].
    n_arms: int = 2
    arm_names: tuple[str, ...] = ("robot0", "robot1")
    arm_actions: tuple[slice, ...] = (slice(0, ARM_ACTION), slice(ARM_ACTION, 2 * ARM_ACTION))
    subtasks = (
        ArmSubtask("lid", "lid_off", arm=0),
        ArmSubtask("payload", "grasp_payload", arm=0),
        ArmSubtask(None, "at_handover", arm=0, held="payload"),
        ArmSubtask("payload", "handover", arm=0, sync="handover"),
        ArmSubtask(None, None, arm=0),
        ArmSubtask("trash", "grasp_trash", arm=1),
        ArmSubtask("trash_bin", "trash", arm=1, held="trash"),
        ArmSubtask(None, "at_handover", arm=1),
        ArmSubtask("payload", "handover", arm=1, sync="handover"),
        ArmSubtask("target_bin", None, arm=1, held="payload"),
    )

    def object_poses(self) -> dict[str, np.ndarray]:
        transport = self.env.transport
        names = ("payload", "trash", "lid", "start_bin", "target_bin", "trash_bin")
        return {
            name: self.body_pose(self.sim.model.body_name2id(transport.objects[name].root_body))
            for name in names
        }

    def payload_handle(self) -> tuple[np.ndarray, np.ndarray]:
        """The hammer's handle: its centre (3,) and its unit axis (3,) towards the head."""
        geom = self.sim.model.geom_name2id("payload_handle")
        d = self._data
        return d.geom_xpos[geom].copy(), d.geom_xmat[geom].reshape(3, 3)[:, 2].copy()

    def lid_handle_pos(self) -> np.ndarray:
        """World position (3,) of the lid's handle (a bar along y on top of the lid)."""
        return np.asarray(self.env.transport.lid_handle_pos, dtype=np.float64)

    def lid_off(self) -> bool:
        """Whether the lid is clear of the start bin (its centre 20 cm off the bin's in x)."""
        poses = self.object_poses()
        return bool(abs(poses["lid"][0, 3] - poses["start_bin"][0, 3]) > 0.2)

    def at_handover(self) -> bool:
        """Whether robot0 holds the hammer out over the gap between the tables (their inner
        edges are at y = +-0.3), above the bins' rims."""
        centre, _ = self.payload_handle()
        over_gap = abs(centre[1]) < 0.15 and centre[2] > 0.96
        return bool(over_gap and self.holds(self.env.transport.payload, arm=0))

    def subtask_signals(self) -> dict[str, bool]:
        transport = self.env.transport
        payload = transport.payload
        return {
            "lid_off": self.lid_off(),
            "grasp_payload": self.holds(payload, arm=0),
            "at_handover": self.at_handover(),
            "grasp_trash": self.holds(transport.trash, arm=1),
            "trash": bool(transport.trash_in_trash_bin),
            "handover": self.holds(payload, arm=1) and not self.holds(payload, arm=0),
            "place": self.is_success(),
        }

    def oracle(self, rng: np.random.Generator) -> Oracle:
        return TransportOracle(self, rng)


TASK_CLASSES: dict[str, type[RobosuiteTask]] = {
    cls.env_name: cls for cls in (Lift, PickPlaceCan, NutAssemblySquare, Stack, TwoArmTransport)
}
