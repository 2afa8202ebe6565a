"""The bodies that carry the gripper of the built-in parallel-jaw tasks.

The tasks on `MujocoTask` (lift, stack, pick_place, peg_insert) share one parallel-jaw gripper
(assets/gripper.xml: the finger pads, the `eef` site and the `eye_in_hand` camera, on a body
named "gripper"). A *body* is what moves it, picked with the task's `body` argument:

- "gripper" (the default): the gripper floats on slide x, y, z and hinge x, y, z joints, each
  servoed straight to its share of the target pose (assets/scene.xml).
- "arm": the gripper sits at the flange of a 7-DoF arm with a Panda-like kinematic chain
  (assets/arm_scene.xml); differential inverse kinematics turns the target pose into joint
  targets for the arm's position servos.

Either way the task turns an action into an eef target pose (`MujocoTask.action_to_target_pose`)
and drives the fingers, and the body turns the target pose into its own servo targets. A
task's MJCF includes scene.xml; a body names the scene file that stands in for it.
"""

from __future__ import annotations

import math
from typing import ClassVar, Protocol

import gymnasium as gym
import mujoco
import numpy as np

from apprentice.errors import ApprenticeError

FINGER_OPEN = 0.04
"""Finger target (m from the grasp centre) for gripper = -1."""
FINGER_CLOSED = -0.02
"""Finger target for gripper = +1; past the joint limit so the squeeze never fades."""

# The eef frame is the gripper body's frame turned half a turn about x, so its z axis points
# along the approach direction (down) as in robosuite. diag(1, -1, -1) is its own inverse.
EEF_IN_BODY = np.diag([1.0, -1.0, -1.0])


class Body(Protocol):
    """What a task needs of the body that carries its gripper, bound to one model."""

    name: ClassVar[str]
    """The value of the task's `body` argument that selects this body."""
    scene: ClassVar[str]
    """The MJCF file (in envs/assets) that a task's `<include file="scene.xml"/>` stands for."""

    def __init__(self, model: mujoco.MjModel) -> None:
        """Bind to a model built with `scene` in the task's MJCF."""
        ...

    def observation_spaces(self) -> dict[str, gym.spaces.Box]:
        """The observations this body adds to the task's (float32 vectors)."""
        ...

    def reset(self, data: mujoco.MjData) -> None:
        """Put the body at its start posture, its servos holding it there (after
        `mj_resetData`)."""
        ...

    def actuate(self, data: mujoco.MjData, target: np.ndarray) -> None:
        """Set the body's servo targets (its entries of `data.ctrl`) so that the eef moves
        towards `target` (4, 4), a pure function of the current state (replays exactly)."""
        ...

    def observe(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        """This body's observations of the current state."""
        ...


def _euler_xyz(rot: np.ndarray) -> tuple[float, float, float]:
    """Angles (a, b, c) with rot = Rx(a) Ry(b) Rz(c), the order of the gripper's hinges."""
    b = math.asin(max(-1.0, min(1.0, float(rot[0, 2]))))
    a = math.atan2(-float(rot[1, 2]), float(rot[2, 2]))
    c = math.atan2(-float(rot[0, 1]), float(rot[0, 0]))
    return a, b, c


class FloatingGripper:
    """The gripper on six servoed joints (slide x, y, z, hinge x, y, z) with gravity
    compensation: it moves through physics, never teleported, with no arm to reach around."""

    name: ClassVar[str] = "gripper"
    scene: ClassVar[str] = "scene.xml"

    def __init__(self, model: mujoco.MjModel) -> None:
        axes = ("x", "y", "z", "rx", "ry", "rz")
        self._home = model.body_pos[model.body("gripper").id].copy()
        self._qpos = np.array([model.jnt_qposadr[model.joint(f"gripper_{j}").id] for j in axes])
        self._ctrl = np.array([model.actuator(f"gripper_{j}").id for j in axes])

    def observation_spaces(self) -> dict[str, gym.spaces.Box]:
        return {}

    def reset(self, data: mujoco.MjData) -> None:
        data.ctrl[self._ctrl] = 0.0  # the joints' zero: the gripper at home, pointing down

    def actuate(self, data: mujoco.MjData, target: np.ndarray) -> None:
        ctrl = np.empty(6)
        ctrl[0:3] = target[:3, 3] - self._home
        a, b, c = _euler_xyz(target[:3, :3] @ EEF_IN_BODY)
        # The yaw hinge is unlimited: pick the turn of the target angle nearest the current one
        # so the servo never spins the gripper the long way round.
        qpos = data.qpos
        a += 2.0 * math.pi * round((qpos[self._qpos[3]] - a) / (2.0 * math.pi))
        c += 2.0 * math.pi * round((qpos[self._qpos[5]] - c) / (2.0 * math.pi))
        ctrl[3:6] = (a, b, c)
        data.ctrl[self._ctrl] = ctrl

    def observe(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        return {}


ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
ARM_HOME = np.array([0.0, 0.163635, 0.0, -2.195879, 0.0, 2.35949, 0.0])
"""Joint angles (rad) that put the eef where the floating gripper starts: 20 cm above the
table centre, pointing down, fingers across y."""
IK_DAMPING = 0.05
"""Damping (m, rad) of the least-squares inverse kinematics: motion slows near singularities
instead of blowing up."""
NULLSPACE_GAIN = 0.2
"""Share of the posture error (to the home posture) the elbow is pulled back by each step,
within the nullspace of the eef task."""
IK_ITERATIONS = 2
"""Damped least-squares steps per control step: the second removes most of what the first
leaves (its linearization error, a few mm across the motion over a 5 cm step, and the part
of the posture pull that leaks into eef motion)."""
LIMIT_MARGIN = 0.02
"""Joint targets stay this far (rad) inside the joint limits."""


class Arm:
    """A 7-DoF arm with the gripper at its flange (assets/arm_scene.xml).

    Each env step, differential IK turns the target pose into joint targets: damped least
    squares on the eef site's Jacobian (Nakamura & Hanafusa 1986; Buss 2004, eq. 11) maps
    the 6-D pose error to a joint displacement, iterated IK_ITERATIONS times from the current
    angles, with a pull to the home posture (ARM_HOME unless given) in the Jacobian's
    nullspace that keeps the redundant elbow near it. The joints' position servos get the
    result, clipped inside the joint limits, as their targets.
    """

    name: ClassVar[str] = "arm"
    scene: ClassVar[str] = "arm_scene.xml"

    def __init__(
        self, model: mujoco.MjModel, prefix: str = "", home: np.ndarray = ARM_HOME
    ) -> None:
        """Bind to the arm whose joints, servos and eef site are named `prefix` + their names
        in arm_scene.xml (a scene with several arms prefixes each), starting at and pulled
        towards the joint angles `home` (7,)."""
        self.model = model
        self.home = np.array(home, dtype=np.float64)
        joints = [model.joint(prefix + j).id for j in ARM_JOINTS]
        self._qpos = model.jnt_qposadr[joints].copy()
        self._dofs = model.jnt_dofadr[joints].copy()
        self._ctrl = np.array([model.actuator(prefix + j).id for j in ARM_JOINTS])
        # The servos' filtered setpoints (activations, where the servos have a timeconst).
        actadr = model.actuator_actadr[self._ctrl]
        self._filtered = np.flatnonzero(actadr >= 0)
        self._act = actadr[self._filtered]
        self._low = model.jnt_range[joints, 0] + LIMIT_MARGIN
        self._high = model.jnt_range[joints, 1] - LIMIT_MARGIN
        self._site = model.site(prefix + "eef").id
        self._jac = np.zeros((6, model.nv))
        self._scratch = mujoco.MjData(model)

    def observation_spaces(self) -> dict[str, gym.spaces.Box]:
        n = len(ARM_JOINTS)
        return {
            "joint_pos": gym.spaces.Box(-np.inf, np.inf, (n,), np.float32),
            "joint_vel": gym.spaces.Box(-np.inf, np.inf, (n,), np.float32),
        }

    def reset(self, data: mujoco.MjData) -> None:
        data.qpos[self._qpos] = self.home
        data.ctrl[self._ctrl] = self.home
        data.act[self._act] = self.home[self._filtered]

    def actuate(self, data: mujoco.MjData, target: np.ndarray) -> None:
        q = data.qpos[self._qpos]
        goal = q.copy()
        # Kinematics on a scratch copy of the state: the Jacobian at each iterate, and the
        # live data left as the step left it.
        self._scratch.qpos[:] = data.qpos
        for i in range(IK_ITERATIONS):
            self._scratch.qpos[self._qpos] = goal
            jac, error = self._pose_error(target)
            # The damped pseudo-inverse J+ = J^T (J J^T + lambda^2 I)^-1 (7, 6).
            gram = jac @ jac.T + IK_DAMPING**2 * np.eye(6)
            mujoco.mju_cholFactor(gram, 0.0)
            y = np.empty(6)
            mujoco.mju_cholSolve(y, gram, error)
            goal += jac.T @ y
            if i == 0:
                # The posture pull, projected by I - J+ J onto the Jacobian's nullspace. The
                # damped projector leaks a little of it into eef motion, which the next
                # iteration takes back out.
                pull = NULLSPACE_GAIN * (self.home - q)
                mujoco.mju_cholSolve(y, gram, jac @ pull)
                goal += pull - jac.T @ y
        data.ctrl[self._ctrl] = np.clip(goal, self._low, self._high)

    def _pose_error(self, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The eef Jacobian (6, 7) over the arm's joints and the pose error (6,) to `target`
        (position, then rotation as a world-frame rotation vector, the frame of the
        Jacobian's rows) at the scratch data's qpos."""
        m, d = self.model, self._scratch
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)  # the motion subspaces (cdof) the Jacobian is made of
        mujoco.mj_jacSite(m, d, self._jac[:3], self._jac[3:], self._site)
        error = np.empty(6)
        error[:3] = target[:3, 3] - d.site_xpos[self._site]
        quat = np.empty(4)
        mujoco.mju_mat2Quat(
            quat, (target[:3, :3] @ d.site_xmat[self._site].reshape(3, 3).T).reshape(9)
        )
        mujoco.mju_quat2Vel(error[3:], quat, 1.0)
        return self._jac[:, self._dofs], error

    def observe(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        return {
            "joint_pos": data.qpos[self._qpos].astype(np.float32),
            "joint_vel": data.qvel[self._dofs].astype(np.float32),
        }


BODIES: dict[str, type[Body]] = {"gripper": FloatingGripper, "arm": Arm}
"""The bodies by name, the values of a task's `body` argument."""


def body_class(name: object, task: str) -> type[Body]:
    """The body class named `name`; a clear error naming the bodies if there is none."""
    if not isinstance(name, str) or name not in BODIES:
        raise ApprenticeError(
            f"task {task!r} has no body {name!r}; its bodies are {', '.join(BODIES)}"
        )
    return BODIES[name]
