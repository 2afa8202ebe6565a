"""robomimic's four single-arm benchmark tasks: what each adds to the adapter.

Each names its objects for `object_poses` (the keys generation transforms demos with), its
subtask signals and its stages, as MimicGen's configs for these tasks do, and its oracle.
Success is robosuite's own check (see `RobosuiteTask.is_success`).
"""

from __future__ import annotations

import numpy as np

from apprentice.envs.base import Oracle, Subtask
from apprentice.envs.robosuite.oracles import CanOracle, LiftOracle, SquareOracle, StackOracle
from apprentice.envs.robosuite.task import RobosuiteTask, _pose


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


TASK_CLASSES: dict[str, type[RobosuiteTask]] = {
    cls.env_name: cls for cls in (Lift, PickPlaceCan, NutAssemblySquare, Stack)
}
