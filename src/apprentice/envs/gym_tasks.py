"""gymnasium MuJoCo control tasks (InvertedPendulum, Reacher, Hopper, HalfCheetah) as Tasks.

They are what interactive imitation is measured on against reinforcement-learned experts
(imitation's seals MuJoCo suite): no scripted oracle, a return rather than a success, and
no end effector. The adapter gives them the Task protocol's shape so that recording, the
store, training and rollouts work unchanged:

- observation {"state": (D,) float32}: the env's flat observation, under one low-dim key;
- actions in [-1, 1], scaled linearly onto the env's own box (InvertedPendulum's is [-3, 3]);
- get_state / set_state: qpos and qvel concatenated (S = nq + nv), enough to replay;
- the manipulation-only parts (eef pose, targets) raise ApprenticeError naming the task, so
  a command that needs them says why it cannot run here;
- experts: no scripted oracle; InvertedPendulum's PD law is its built-in expert
  (`builtin_expert`), and any of them takes a trained stable-baselines3 model (`SB3Expert`, a
  .zip with its .json record beside it).

They register as `gym/<env id>`, e.g. `gym/InvertedPendulum-v5`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from apprentice.envs.base import Oracle, Subtask, Task, register_task
from apprentice.errors import ApprenticeError

PREFIX = "gym/"
GYM_ENVS = {
    "InvertedPendulum-v5": "Balance a pole on a cart (gymnasium MuJoCo; return up to 1000).",
    "Reacher-v5": "Reach a random goal with a 2-link arm (gymnasium MuJoCo; 50 steps).",
    "Hopper-v5": "Hop forward with a 1-legged robot (gymnasium MuJoCo).",
    "HalfCheetah-v5": "Run forward with a planar cheetah (gymnasium MuJoCo).",
}
"""The env ids registered as `gym/<id>`: MuJoCo tasks small enough to train experts on a CPU."""


def _mujoco_envs_available() -> bool:
    try:
        import mujoco  # noqa: F401
    except ImportError:  # pragma: no cover - mujoco is a dependency
        return False
    return True


class GymTask(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """A gymnasium MuJoCo env behind the Task protocol (see the module docstring)."""

    control_freq: float
    observation_space: gym.spaces.Dict  # type: ignore[assignment]
    action_space: gym.spaces.Box
    subtasks: tuple[Subtask, ...] = ()

    def __init__(self, env_id: str, camera: bool = False, variant: str | None = None) -> None:
        if camera:
            raise ApprenticeError(f"task {PREFIX}{env_id}: camera observations are not offered")
        if variant not in (None, "D0"):
            raise ApprenticeError(f"task {PREFIX}{env_id} has no placement variant {variant!r}")
        self.env_id = env_id
        self.name = PREFIX + env_id
        self.env = gym.make(env_id)
        spec = self.env.spec
        self.horizon = int(spec.max_episode_steps) if spec and spec.max_episode_steps else 1000
        inner: Any = self.env.unwrapped
        self.control_freq = float(round(1.0 / inner.dt, 6))
        box = self.env.observation_space
        assert isinstance(box, gym.spaces.Box)
        self.observation_space = gym.spaces.Dict(
            {"state": gym.spaces.Box(-np.inf, np.inf, shape=box.shape, dtype=np.float32)}
        )
        act = self.env.action_space
        assert isinstance(act, gym.spaces.Box)
        self.env_action_space = act
        self._low = np.asarray(act.low, dtype=np.float64)
        self._high = np.asarray(act.high, dtype=np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=act.shape, dtype=np.float32)
        self._obs: np.ndarray = np.zeros(box.shape, dtype=np.float32)
        self._success = False

    # ---- action scaling: [-1, 1] <-> the env's box -----------------------------------------

    def to_env_action(self, action: np.ndarray) -> np.ndarray:
        """(A,) in [-1, 1] -> the env's action box."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return (self._low + (a + 1.0) * 0.5 * (self._high - self._low)).astype(np.float32)

    def from_env_action(self, action: np.ndarray) -> np.ndarray:
        """The env's action (A,) -> [-1, 1] (clipped), the scale the store and policies use."""
        a = np.asarray(action, dtype=np.float64)
        scaled = 2.0 * (a - self._low) / (self._high - self._low) - 1.0
        return np.clip(scaled, -1.0, 1.0).astype(np.float32)

    # ---- gymnasium ---------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs = np.asarray(obs, dtype=np.float32)
        self._success = False
        return {"state": self._obs.copy()}, dict(info)

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(self.to_env_action(action))
        self._obs = np.asarray(obs, dtype=np.float32)
        # No success in these tasks: the measure is the return. "success" stays False so
        # that rollouts run the whole episode and the return is complete.
        info = {**info, "success": False}
        return {"state": self._obs.copy()}, float(reward), bool(terminated), bool(truncated), info

    def close(self) -> None:
        self.env.close()

    # ---- Task protocol -----------------------------------------------------------------------

    def is_success(self) -> bool:
        return self._success

    def get_state(self) -> np.ndarray:
        inner: Any = self.env.unwrapped
        return np.concatenate([inner.data.qpos, inner.data.qvel]).astype(np.float64)

    def set_state(self, state: np.ndarray) -> None:
        inner: Any = self.env.unwrapped
        nq = int(inner.model.nq)
        state = np.asarray(state, dtype=np.float64)
        size = nq + int(inner.model.nv)
        if state.shape != (size,):
            raise ApprenticeError(
                f"task {self.name}: state has shape {state.shape}, expected ({size},)"
            )
        inner.set_state(state[:nq], state[nq:])
        self._obs = np.asarray(inner._get_obs(), dtype=np.float32)

    def get_observation(self) -> dict[str, np.ndarray]:
        return {"state": self._obs.copy()}

    def _not_manipulation(self, what: str) -> ApprenticeError:
        return ApprenticeError(f"task {self.name} is not a manipulation task: it has no {what}")

    def eef_pose(self) -> np.ndarray:
        raise self._not_manipulation("end effector")

    def object_poses(self) -> dict[str, np.ndarray]:
        return {}

    def subtask_signals(self) -> dict[str, bool]:
        return {}

    def target_pose_to_action(self, pose: np.ndarray, gripper: float) -> np.ndarray:
        raise self._not_manipulation("pose controller")

    def action_to_target_pose(self, action: np.ndarray) -> np.ndarray:
        raise self._not_manipulation("pose controller")

    def oracle(self, rng: np.random.Generator) -> Oracle:
        raise ApprenticeError(
            f"task {self.name} has no scripted oracle; use a trained expert "
            f"(benchmarks/train_experts.py --env {self.env_id} saves one as a .zip)"
        )

    def render_frame(self, camera: str, size: int = 84) -> np.ndarray:
        raise ApprenticeError(f"task {self.name}: rendering is not offered")

    @property
    def env_args(self) -> dict[str, Any]:
        return {"env_name": self.name, "env_type": "gymnasium", "env_kwargs": {}}


class PendulumPD:
    """A PD law that balances gym/InvertedPendulum-v5 (return 1000 from every start we
    tried): force = 0.5 x + 10 theta + 0.5 x' + 1 theta', in the env's units (N), mapped onto
    [-1, 1]. The task's built-in expert: it needs no training."""

    env_id = "InvertedPendulum-v5"
    gains = np.array([0.5, 10.0, 0.5, 1.0])
    """On obs (cart x, pole angle, cart velocity, pole angular velocity)."""

    def __init__(self, task: GymTask) -> None:
        self.task = task
        self.max_force = float(task.env_action_space.high[0])
        """The box is symmetric, [-3, 3] N: the unit action is force / max_force."""

    def reset(self) -> None:
        """Stateless."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        force = float(self.gains @ np.asarray(obs["state"], dtype=np.float64))
        return np.clip(np.array([force / self.max_force], dtype=np.float32), -1.0, 1.0)


def builtin_expert(task: GymTask) -> PendulumPD:
    """The task's built-in expert, which `apprentice collect` records by default: the PD law
    of gym/InvertedPendulum-v5; the other tasks have none (they need a trained expert)."""
    if task.env_id != PendulumPD.env_id:
        raise ApprenticeError(
            f"task {task.name} has no built-in expert; use a trained stable-baselines3 expert "
            f"(--expert model.zip; benchmarks/train_experts.py --env {task.env_id} saves one)"
        )
    return PendulumPD(task)


def expert_record_path(model_path: Path) -> Path:
    """The JSON beside an SB3 expert's .zip (task, returns), written by train_experts.py."""
    return model_path.with_suffix(".json")


class SB3Expert:
    """A stable-baselines3 model (SAC, PPO, TD3, ...) trained on a gymnasium task, acting
    deterministically; its actions are mapped from the env's box onto [-1, 1]. It labels
    (`label`, an interactive expert) and acts (`act`, an `Oracle` for `apprentice collect`)."""

    name = "sb3"
    noise_free_dims: tuple[int, ...] = ()

    def __init__(self, task: Task, model: Any, record: dict[str, Any]) -> None:
        self.task = task
        self.model = model
        self.record = record

    @classmethod
    def load(cls, path: str | Path, task: Task) -> SB3Expert:
        """Load `path` (.zip) for `task`; refuses a model trained for another task."""
        path = Path(path)
        if not path.is_file():
            raise ApprenticeError(f"expert {path} does not exist")
        record_path = expert_record_path(path)
        if not record_path.is_file():
            raise ApprenticeError(
                f"expert {path} has no {record_path.name} beside it naming its task "
                "(benchmarks/train_experts.py writes one)"
            )
        try:
            record = json.loads(record_path.read_text())
        except json.JSONDecodeError as exc:
            raise ApprenticeError(f"expert record {record_path} is not JSON ({exc})") from None
        trained_for = record.get("env_name")
        if trained_for != task.name:
            raise ApprenticeError(
                f"expert {path} was trained for task {trained_for!r}, not {task.name!r}"
            )
        model = _load_sb3(path, record.get("algo"))
        obs_shape = tuple(model.observation_space.shape or ())
        want = tuple(task.observation_space.spaces["state"].shape or ())
        if obs_shape != want:
            raise ApprenticeError(
                f"expert {path} reads observations of shape {obs_shape}, task {task.name} "
                f"gives {want}"
            )
        return cls(task, model, record)

    def reset(self) -> None:
        """A feed-forward SB3 policy keeps no state between steps."""

    def label(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        action, _ = self.model.predict(obs["state"], deterministic=True)
        to_unit = getattr(self.task, "from_env_action", None)
        if to_unit is None:
            return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        return np.asarray(to_unit(action), dtype=np.float32)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.label(obs)


def _load_sb3(path: Path, algo: str | None) -> Any:
    """Load an SB3 model; `algo` (e.g. "sac") from its record, else each on-policy and
    off-policy algorithm is tried in turn (a .zip does not name its algorithm)."""
    try:
        import stable_baselines3 as sb3
    except ImportError:
        raise ApprenticeError(
            "an SB3 expert needs stable-baselines3: pip install 'apprentice[interactive]'"
        ) from None
    names = [algo.upper()] if algo else ["SAC", "PPO", "TD3", "A2C", "DDPG"]
    errors = []
    for name in names:
        cls = getattr(sb3, name, None)
        if cls is None:
            raise ApprenticeError(f"expert {path}: unknown stable-baselines3 algorithm {algo!r}")
        try:
            return cls.load(path, device="cpu")
        except Exception as exc:  # SB3 raises many types for a zip of another algorithm
            errors.append(f"{name}: {type(exc).__name__}")
    raise ApprenticeError(
        f"expert {path} is not a loadable stable-baselines3 model ({'; '.join(errors)})"
    )


def _register(env_id: str, description: str) -> None:
    def factory(**kwargs: Any) -> GymTask:
        return GymTask(env_id, **kwargs)

    register_task(PREFIX + env_id, description, _mujoco_envs_available, "gym")(factory)


for _env_id, _description in GYM_ENVS.items():
    _register(_env_id, _description)
