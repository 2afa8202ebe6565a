"""Push-T (the `gym-pusht` package) as a Task, with a scripted expert that plans its pushes.

Push-T is Diffusion Policy's planar benchmark: a round pusher (radius 15) in a 512 x 512
arena pushes a T-shaped block until the T covers more than 95% of a fixed goal T. The
block is quasi-static (the arena damps all its velocity every step), so it moves only
while it is pushed, and getting it into the goal pose takes a sequence of pushes at chosen
points, with moves around the block in between. The install is the `pusht` extra.

The adapter:

- observations, float32: "agent_pos" (2,) and "keypoints" (16,), the T's eight corners in
  the world (LeRobot's `environment_state_agent_pos`), so the policy never sees the angle's
  wrap at 2 pi;
- actions in [-1, 1]: the pusher's target position, scaled from the env's [0, 512] box
  (a PD controller drives the pusher towards it);
- get_state / set_state: pusher position and velocity, block pose and velocities (10,);
- the pusher is the "end effector" (a 4 x 4 pose at height 0), the T the one object;
- reward and success are the env's: reward = clip(coverage / 0.95, 0, 1), whose maximum
  over an episode is the score Diffusion Policy reports; success = coverage > 0.95, which
  ends the episode.

The expert (`PushTOracle`) needs no demonstrations: before each push it simulates every
candidate push (a contact point on the T's outline, a direction, a length) in a private copy
of the arena and keeps the one that brings the block's pose closest to the goal; then it
routes the pusher around the block to the push's start and pushes. When no push improves
the pose it widens the search, and then tries a push at random.
"""

from __future__ import annotations

import importlib.util
import math
import os
from typing import Any

import gymnasium as gym
import numpy as np

from apprentice.envs.base import Subtask, register_task
from apprentice.errors import ApprenticeError

ARENA = 512.0
PUSHER_RADIUS = 15.0
TEE_SCALE, TEE_LENGTH = 30.0, 4
REACH = (5.0 + PUSHER_RADIUS + 2.0, ARENA - 6.0 - PUSHER_RADIUS - 2.0)
"""Where the pusher's centre can go: inside the arena's walls (at 5 and 506), with 2 to spare."""
ANGLE_WEIGHT = 60.0
"""Pixels of position error that one radian of angle error counts as in the expert's cost
(the T is about 120 pixels across)."""


def _available() -> bool:
    return importlib.util.find_spec("gym_pusht") is not None


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def _rot(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def tee_outline() -> np.ndarray:
    """The T's outline (8, 2) in the block's frame, counter-clockwise (gym-pusht's `add_tee`)."""
    s, half = TEE_SCALE, TEE_LENGTH * TEE_SCALE / 2
    return np.array(
        [
            (-half, 0.0), (half, 0.0), (half, s), (s / 2, s),
            (s / 2, TEE_LENGTH * s), (-s / 2, TEE_LENGTH * s), (-s / 2, s), (-half, s),
        ]
    )  # fmt: skip


def outline_contacts(spacing: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 2) every `spacing` pixels along the T's outline and their outward normals."""
    corners = tee_outline()
    points, normals = [], []
    for i in range(len(corners)):
        a, b = corners[i], corners[(i + 1) % len(corners)]
        edge = b - a
        length = float(np.linalg.norm(edge))
        normal = np.array([edge[1], -edge[0]]) / length  # outward for a counter-clockwise outline
        k = max(1, int(length // spacing))
        for j in range(k):
            points.append(a + (j + 0.5) / k * edge)
            normals.append(normal)
    return np.array(points), np.array(normals)


def _make_env(render: bool = False) -> Any:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)

    return gym.make(
        "gym_pusht/PushT-v0", obs_type="state", render_mode="rgb_array" if render else None
    )


def _place(env: Any, agent: np.ndarray, block: np.ndarray) -> None:
    """Put the pusher at `agent` and the block at pose `block` (x, y, angle), both at rest."""
    env.agent.position = (float(agent[0]), float(agent[1]))
    env.agent.velocity = (0.0, 0.0)
    # The angle first: setting it turns the body about its centre of gravity, which moves
    # `position` (the T's frame origin) when set after it.
    env.block.angle = float(block[2])
    env.block.position = (float(block[0]), float(block[1]))
    env.block.velocity = (0.0, 0.0)
    env.block.angular_velocity = 0.0
    env.space.reindex_shapes_for_body(env.block)
    env.space.reindex_shapes_for_body(env.agent)


def _control_step(env: Any, target: np.ndarray) -> None:
    """One env step's physics (the PD pusher and 10 substeps), without the coverage."""
    from pymunk.vec2d import Vec2d

    goal = Vec2d(float(target[0]), float(target[1]))
    for _ in range(round(1.0 / (env.dt * env.control_hz))):
        acc = env.k_p * (goal - env.agent.position) - env.k_v * env.agent.velocity
        env.agent.velocity += acc * env.dt
        env.space.step(env.dt)


def pose_cost(block: np.ndarray, goal: np.ndarray) -> float:
    """Distance of block pose (x, y, angle) from the goal's, angle weighted by ANGLE_WEIGHT."""
    return float(
        np.linalg.norm(block[:2] - goal[:2]) + ANGLE_WEIGHT * abs(_wrap(block[2] - goal[2]))
    )


class PushTOracle:
    """The planning expert of the module docstring, bound to one PushTTask."""

    def __init__(
        self,
        task: PushTTask,
        rng: np.random.Generator,
        *,
        push_steps: int = 6,
        step_lengths: tuple[float, ...] = (3.0, 6.0, 12.0, 20.0),
        max_speed: float = 25.0,
        settle_steps: int = 2,
    ) -> None:
        self.task = task
        self.rng = rng
        self.push_steps = push_steps
        self.step_lengths = step_lengths
        self.max_speed = max_speed
        self.settle_steps = settle_steps
        self._sim = _make_env().unwrapped
        self._sim.reset(seed=0)
        self._contacts, self._normals = outline_contacts()
        self._queue: list[np.ndarray] = []

    def reset(self) -> None:
        self._queue = []

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        del obs  # the expert reads the simulator's state
        if not self._queue:
            self._queue = self._plan()
        target = self._queue.pop(0)
        return self.task.from_env_action(target)

    # ---- planning -----------------------------------------------------------------------------

    def _plan(self) -> list[np.ndarray]:
        agent, block = self.task.agent_position(), self.task.block_pose()
        goal = self.task.goal_pose()
        push = self._search(block, goal, (0.0,), self.step_lengths, self.push_steps)
        if push is None:  # no push along a normal helps: also slanted and longer pushes
            wide = (4.0, 10.0, 20.0)
            push = self._search(block, goal, (-0.5, 0.0, 0.5), wide, 2 * self.push_steps)
        if push is None:  # a local minimum: a push at random, to get out of it
            push = self._search(block, goal, (0.0,), (10.0,), self.push_steps, explore=True)
        if push is None:  # nowhere to push from (cannot happen in the open arena): stay
            return [agent.copy()]
        start, targets = push
        path = self._route(agent, start, block)
        return self._interpolate(agent, path) + [start] * self.settle_steps + targets

    def _free(self, point: np.ndarray, margin: float = 2.0) -> bool:
        """Whether the pusher fits at `point`: inside the walls and clear of the block."""
        lo, hi = REACH
        if not (lo < point[0] < hi and lo < point[1] < hi):
            return False
        xy = (float(point[0]), float(point[1]))
        return all(
            s.point_query(xy).distance >= PUSHER_RADIUS + margin for s in self._sim.block.shapes
        )

    def _search(
        self,
        block: np.ndarray,
        goal: np.ndarray,
        slants: tuple[float, ...],
        step_lengths: tuple[float, ...],
        steps: int,
        explore: bool = False,
    ) -> tuple[np.ndarray, list[np.ndarray]] | None:
        """The push (start, targets) that ends nearest the goal, or None if none improves."""
        rot = _rot(float(block[2]))
        _place(self._sim, np.array([-200.0, -200.0]), block)
        starts = []
        for point, normal in zip(self._contacts, self._normals, strict=True):
            n_world = rot @ normal
            start = block[:2] + rot @ point + n_world * (PUSHER_RADIUS + 3.0)
            if self._free(start):
                starts.append((start, n_world))
        if explore and starts:
            picks = self.rng.choice(len(starts), size=min(5, len(starts)), replace=False)
            starts = [starts[int(i)] for i in picks]
        best_cost = np.inf if explore else pose_cost(block, goal) - 0.5
        best: tuple[np.ndarray, list[np.ndarray]] | None = None
        for start, n_world in starts:
            for slant in slants:
                direction = _rot(slant) @ n_world
                for length in step_lengths:
                    self._reset_sim(start, block)
                    targets: list[np.ndarray] = []
                    for k in range(1, steps + 1):
                        targets.append(start - direction * length * k)
                        _control_step(self._sim, targets[-1])
                        cost = pose_cost(self._sim_block(), goal)
                        if cost < best_cost:
                            best_cost, best = cost, (start, list(targets))
        return best

    def _reset_sim(self, agent: np.ndarray, block: np.ndarray) -> None:
        # Park the pusher away and step once, so that no contact cached from the last
        # candidate survives into this one (it would push the block in the first substep).
        _place(self._sim, np.array([-200.0, -200.0]), block)
        self._sim.space.step(self._sim.dt)
        _place(self._sim, agent, block)

    def _sim_block(self) -> np.ndarray:
        b = self._sim.block
        return np.array([b.position[0], b.position[1], b.angle])

    def _route(self, agent: np.ndarray, start: np.ndarray, block: np.ndarray) -> list[np.ndarray]:
        """Waypoints to `start` that keep the pusher clear of the block: straight if that is
        clear, else out to a circle around the T, along it, and in."""
        _place(self._sim, np.array([-200.0, -200.0]), block)
        if all(self._free(agent + t * (start - agent), 1.0) for t in np.linspace(0, 1, 12)):
            return [start]
        centre = np.array(self._sim.block.local_to_world(self._sim.block.center_of_gravity))
        radius = 110.0
        a0 = math.atan2(agent[1] - centre[1], agent[0] - centre[0])
        turn = _wrap(math.atan2(start[1] - centre[1], start[0] - centre[0]) - a0)
        n = max(1, int(abs(turn) / 0.35))
        points = [
            np.clip(centre + radius * np.array([math.cos(a), math.sin(a)]), *REACH)
            for a in (a0 + turn * i / n for i in range(n + 1))
        ]
        return [*points, start]

    def _interpolate(self, agent: np.ndarray, waypoints: list[np.ndarray]) -> list[np.ndarray]:
        """Targets at most `max_speed` pixels apart along the waypoints."""
        out: list[np.ndarray] = []
        current = np.asarray(agent, dtype=np.float64)
        for point in waypoints:
            k = max(1, math.ceil(float(np.linalg.norm(point - current)) / self.max_speed))
            out += [current + (point - current) * i / k for i in range(1, k + 1)]
            current = np.asarray(point, dtype=np.float64)
        return out


class PushTTask(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """gym-pusht's PushT-v0 behind the Task protocol (see the module docstring)."""

    name = "pusht"
    horizon = 300
    control_freq = 10.0
    subtasks: tuple[Subtask, ...] = ()
    observation_space: gym.spaces.Dict  # type: ignore[assignment]
    action_space: gym.spaces.Box

    def __init__(
        self, *, camera: bool = False, image_size: int = 96, variant: str = "D0", **unknown: Any
    ) -> None:
        if unknown:
            raise ApprenticeError(
                f"task 'pusht' got unknown arguments {sorted(unknown)}; "
                "it accepts camera, image_size and variant ('D0' only)"
            )
        if image_size < 8:
            raise ApprenticeError(f"task pusht: image_size must be >= 8, got {image_size}")
        if variant != "D0":
            raise ApprenticeError(f"task 'pusht' has no variant {variant!r}; its variants are D0")
        if not _available():
            raise ApprenticeError(
                "task pusht needs the gym-pusht package: pip install 'apprentice[pusht]'"
            )
        self.env = _make_env(render=True)
        self.inner: Any = self.env.unwrapped
        self.camera, self.image_size = bool(camera), int(image_size)
        spaces: dict[str, gym.Space[Any]] = {
            "agent_pos": gym.spaces.Box(0.0, ARENA, shape=(2,), dtype=np.float32),
            "keypoints": gym.spaces.Box(-np.inf, np.inf, shape=(16,), dtype=np.float32),
        }
        if self.camera:  # Diffusion Policy's image Push-T: one top-down RGB view
            shape = (self.image_size, self.image_size, 3)
            spaces["image"] = gym.spaces.Box(0, 255, shape=shape, dtype=np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._success = False
        self.env.reset(seed=0)

    # ---- action scaling ------------------------------------------------------------------------

    @staticmethod
    def to_env_action(action: np.ndarray) -> np.ndarray:
        """(2,) in [-1, 1] -> a target position in the arena's [0, 512] box."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return ((a + 1.0) * (ARENA / 2)).astype(np.float32)

    @staticmethod
    def from_env_action(target: np.ndarray) -> np.ndarray:
        """A target position in the arena -> (2,) in [-1, 1] (clipped)."""
        a = np.asarray(target, dtype=np.float64) / (ARENA / 2) - 1.0
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    # ---- gymnasium -----------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        _, info = self.env.reset(seed=seed, options=options)
        self._success = False
        return self.get_observation(), {"coverage": float(self.inner._get_coverage()), **info}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (2,) or not np.all(np.isfinite(action)):
            raise ApprenticeError(f"task pusht: action must be 2 finite numbers, got {action!r}")
        _, reward, terminated, _, info = self.inner.step(self.to_env_action(action))
        self._success = self._success or bool(info["is_success"])
        info = {**info, "success": bool(info["is_success"])}
        return self.get_observation(), float(reward), bool(terminated), False, info

    def close(self) -> None:
        self.env.close()

    # ---- Task protocol -------------------------------------------------------------------------

    def agent_position(self) -> np.ndarray:
        return np.array(self.inner.agent.position, dtype=np.float64)

    def block_pose(self) -> np.ndarray:
        b = self.inner.block
        return np.array([b.position[0], b.position[1], b.angle], dtype=np.float64)

    def goal_pose(self) -> np.ndarray:
        return np.asarray(self.inner.goal_pose, dtype=np.float64)

    def coverage(self) -> float:
        """The share of the goal T the block covers (success above 0.95)."""
        return float(self.inner._get_coverage())

    def is_success(self) -> bool:
        return self._success

    def get_state(self) -> np.ndarray:
        a, b = self.inner.agent, self.inner.block
        return np.array(
            [*a.position, *a.velocity, *b.position, b.angle, *b.velocity, b.angular_velocity],
            dtype=np.float64,
        )

    def set_state(self, state: np.ndarray) -> None:
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (10,):
            raise ApprenticeError(f"task pusht: state has shape {state.shape}, expected (10,)")
        _place(self.inner, state[0:2], state[4:7])
        self.inner.agent.velocity = (float(state[2]), float(state[3]))
        self.inner.block.velocity = (float(state[7]), float(state[8]))
        self.inner.block.angular_velocity = float(state[9])

    def get_observation(self) -> dict[str, np.ndarray]:
        keypoints = self.inner.get_keypoints(self.inner._block_shapes).reshape(-1)
        obs = {
            "agent_pos": self.agent_position().astype(np.float32),
            "keypoints": np.asarray(keypoints, dtype=np.float32),
        }
        if self.camera:
            obs["image"] = self.render_frame("top", self.image_size)
        return obs

    @staticmethod
    def _planar_pose(x: float, y: float, angle: float) -> np.ndarray:
        pose = np.eye(4)
        pose[:2, :2] = _rot(angle)
        pose[:2, 3] = (x, y)
        return pose

    def eef_pose(self) -> np.ndarray:
        x, y = self.agent_position()
        return self._planar_pose(x, y, 0.0)

    def object_poses(self) -> dict[str, np.ndarray]:
        return {"tee": self._planar_pose(*self.block_pose())}

    def subtask_signals(self) -> dict[str, bool]:
        return {}

    def target_pose_to_action(self, pose: np.ndarray, gripper: float) -> np.ndarray:
        del gripper  # the pusher has none
        return self.from_env_action(np.asarray(pose)[:2, 3])

    def action_to_target_pose(self, action: np.ndarray) -> np.ndarray:
        x, y = self.to_env_action(np.asarray(action).reshape(-1)[:2])
        return self._planar_pose(float(x), float(y), 0.0)

    def oracle(self, rng: np.random.Generator) -> PushTOracle:
        return PushTOracle(self, rng)

    def render_frame(self, camera: str, size: int = 84) -> np.ndarray:
        del camera  # one top-down view
        return np.asarray(
            self.inner._get_img(self.inner._draw(), width=size, height=size, render_action=False)
        )

    @property
    def env_args(self) -> dict[str, Any]:
        kwargs = {"camera": True, "image_size": self.image_size} if self.camera else {}
        return {"env_name": self.name, "env_type": "gymnasium", "env_kwargs": kwargs}


@register_task(
    "pusht",
    "Push a T-shaped block into a goal pose with a round pusher (gym-pusht; the pusht extra).",
    _available,
    "pusht",
)
def make_pusht(**kwargs: Any) -> PushTTask:
    return PushTTask(**kwargs)
