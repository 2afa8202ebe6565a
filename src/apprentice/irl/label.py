"""Inverse dynamics and `apprentice label-actions`: infer the actions of state-only demos.

Recordings without actions (video, motion capture, another robot's logs) hold (s, s') pairs
but not the command that took one to the other. An inverse-dynamics model (IDM)
a = f(s, s') learned from the agent's *own* interaction, where the action is known, labels
them (Torabi, Warnell & Stone 2018, "Behavioral Cloning from Observation", Sec. 4: the
model is trained on the agent's exploration, then applied to the demonstrator's pairs).

State-only files. The robomimic layout has every field T steps long; a demo without actions
stores `actions` as a (T, 0) array. The store writes and reads that unchanged (no special
case in `apprentice.data`), `DemoFile.action_dim` is 0, and a learner that needs actions
sees an empty action space and refuses. `strip_actions` makes such a copy of a normal file
(`apprentice label-actions --demos full.hdf5 --strip --out states.hdf5`).

Exploration. What the IDM sees decides where it is right. Uniform random actions on the
built-in manipulation tasks (7-D delta pose + gripper) flail near the start pose and never
grasp, so the IDM would never see a carried cube; `oracle` exploration therefore runs the
task's scripted oracle with Gaussian action noise on every dimension (std drawn per episode
from [0, `exploration_noise`]: noise of 0.3 on every step almost never grasps, clean
episodes do, noisy ones vary the actions) and records the noisy action actually executed,
so the IDM learns a -> s' around the states demos visit. That uses privileged knowledge
BCO does not assume; `random` (uniform) is the paper's pre-demonstration policy and the
default where a task has no oracle (the gymnasium tasks), and BCO(alpha) adds `policy`
exploration: the current cloned policy plus noise.

Shape legend: N transitions, D observation features (the task's low-dim keys in sorted order,
concatenated), A action.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from apprentice.data.normalize import MIN_STD
from apprentice.data.reader import DemoFile
from apprentice.data.store import DemoWriter, write_mask
from apprentice.envs import gym_tasks  # noqa: F401  (registers the gym/<id> tasks)
from apprentice.envs.base import Task, make_task, make_task_from_env_args, task_spec
from apprentice.errors import ApprenticeError
from apprentice.policies.checkpoint import atomic_torch_save

EXPLORATION = ("auto", "random", "oracle", "policy")
EXPLORATION_SEED_BASE = 500_000_000
"""Exploration episodes start from seeds here (below the held-out range, away from the
seeds collection uses from 0), so the IDM never trains on a demo's own initial state."""

DELTA_MIN_STD = 1e-5
"""Floor on the std of a state change: below it a dimension is taken as not moving."""

ActFn = Callable[[dict[str, np.ndarray]], np.ndarray]


# ---- configs and data ---------------------------------------------------------------------


@dataclass(frozen=True)
class IDMConfig:
    """The inverse-dynamics network and its training."""

    hidden_dims: tuple[int, ...] = (256, 256)
    """Widths of the MLP's hidden layers."""
    steps: int = 3000
    """Gradient steps per fit."""
    batch_size: int = 256
    """Transitions per gradient step."""
    lr: float = 1e-3
    """Adam learning rate."""


@dataclass(frozen=True)
class Transitions:
    """(s, a, s') triples of the agent's own interaction: obs, next_obs (N, D), actions (N, A)."""

    obs: np.ndarray
    next_obs: np.ndarray
    actions: np.ndarray

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    def __add__(self, other: Transitions) -> Transitions:
        return Transitions(
            np.concatenate([self.obs, other.obs]),
            np.concatenate([self.next_obs, other.next_obs]),
            np.concatenate([self.actions, other.actions]),
        )

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, obs=self.obs, next_obs=self.next_obs, actions=self.actions)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Transitions:
        with np.load(path) as z:
            return cls(z["obs"], z["next_obs"], z["actions"])


def obs_keys_of(task: Task) -> list[str]:
    """The task's low-dim observation keys, sorted: what the IDM reads."""
    return task_spec(task).low_dim_keys


def flat(obs: dict[str, np.ndarray], keys: list[str]) -> np.ndarray:
    """{key: (..., Dk)} -> (..., D) float32, keys in the given order."""
    return np.concatenate([np.asarray(obs[k], np.float32) for k in keys], axis=-1)


# ---- the model ----------------------------------------------------------------------------


class InverseDynamicsModel(nn.Module):
    """(s, s') -> a in [-1, 1]: an MLP on the normalized state and normalized state change.

    The change s' - s is an input of its own (normalized by its own spread), because it is
    where the action shows: for a delta-pose controller it is nearly linear in a, and its
    scale (mm per step) would vanish next to s's (the workspace) in a shared normalization.
    """

    obs_mean: Tensor
    obs_std: Tensor
    delta_mean: Tensor
    delta_std: Tensor

    def __init__(self, obs_keys: list[str], obs_dim: int, action_dim: int, cfg: IDMConfig):
        super().__init__()
        self.obs_keys = list(obs_keys)
        self.obs_dim, self.action_dim, self.cfg = obs_dim, action_dim, cfg
        layers: list[nn.Module] = []
        width = 2 * obs_dim
        for h in cfg.hidden_dims:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, action_dim))
        self.net = nn.Sequential(*layers)
        for name in ("obs", "delta"):
            self.register_buffer(f"{name}_mean", torch.zeros(obs_dim))
            self.register_buffer(f"{name}_std", torch.ones(obs_dim))

    def fit_normalization(self, data: Transitions) -> None:
        """Mean and std of s (std floored at the data layer's MIN_STD) and of s' - s (floored
        at DELTA_MIN_STD: a step moves the eef by about 0.5 mm, far below MIN_STD)."""
        delta = data.next_obs - data.obs  # N,D
        for name, x, floor in (("obs", data.obs, MIN_STD), ("delta", delta, DELTA_MIN_STD)):
            x64 = x.astype(np.float64)
            getattr(self, f"{name}_mean").copy_(torch.as_tensor(x64.mean(0)))
            getattr(self, f"{name}_std").copy_(torch.as_tensor(np.maximum(x64.std(0), floor)))

    def forward(self, obs: Tensor, next_obs: Tensor) -> Tensor:
        """obs, next_obs (B, D) -> actions (B, A) in [-1, 1]."""
        x = (obs - self.obs_mean) / self.obs_std  # B,D
        d = (next_obs - obs - self.delta_mean) / self.delta_std  # B,D
        return self.net(torch.cat([x, d], dim=-1)).tanh()  # B,A

    def predict(self, obs: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """obs, next_obs (N, D) -> actions (N, A) float32."""
        self.eval()
        with torch.no_grad():
            a = self(torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(next_obs))
        return a.numpy().astype(np.float32)

    def save(self, path: Path, env_args: dict[str, Any]) -> None:
        """Self-describing: keys, sizes, config and the task, with the weights."""
        atomic_torch_save(
            {
                "format": "apprentice-idm",
                "obs_keys": self.obs_keys,
                "obs_dim": self.obs_dim,
                "action_dim": self.action_dim,
                "hidden_dims": list(self.cfg.hidden_dims),
                "env_args": json.dumps(env_args),
                "state_dict": self.state_dict(),
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> tuple[InverseDynamicsModel, dict[str, Any]]:
        """The model saved at `path` and the env_args of the task it was trained on."""
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for foreign or truncated files
            raise ApprenticeError(f"IDM {path} cannot be read ({type(exc).__name__})") from None
        if not isinstance(d, dict) or d.get("format") != "apprentice-idm":
            raise ApprenticeError(f"{path} is not an inverse-dynamics model of apprentice")
        cfg = IDMConfig(hidden_dims=tuple(d["hidden_dims"]))
        model = cls(d["obs_keys"], int(d["obs_dim"]), int(d["action_dim"]), cfg)
        model.load_state_dict(d["state_dict"])
        return model, json.loads(d["env_args"])


def fit_idm(
    data: Transitions,
    obs_keys: list[str],
    cfg: IDMConfig,
    *,
    seed: int,
    init: InverseDynamicsModel | None = None,
) -> tuple[InverseDynamicsModel, float]:
    """Train an IDM on `data` by L2 regression (warm-started from `init` if given); returns it
    and the mean loss of the last 10% of the steps."""
    if len(data) == 0:
        raise ApprenticeError("inverse dynamics: no exploration transitions to learn from")
    torch.manual_seed(seed)
    model = InverseDynamicsModel(obs_keys, data.obs.shape[1], data.actions.shape[1], cfg)
    if init is not None:
        model.load_state_dict(init.state_dict())
    model.fit_normalization(data)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(seed)
    obs, nxt, act = (
        torch.as_tensor(x, dtype=torch.float32) for x in (data.obs, data.next_obs, data.actions)
    )
    tail: list[float] = []
    model.train()
    for step in range(cfg.steps):
        idx = torch.as_tensor(rng.integers(0, len(data), size=cfg.batch_size))
        loss = (model(obs[idx], nxt[idx]) - act[idx]).pow(2).mean()  # scalar
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= cfg.steps * 0.9:
            tail.append(float(loss.detach()))
    return model.eval(), float(np.mean(tail)) if tail else float("nan")


# ---- exploration --------------------------------------------------------------------------


def resolve_exploration(mode: str, task: Task) -> str:
    """`auto` -> oracle where the task has a scripted oracle, else random."""
    if mode not in EXPLORATION:
        raise ApprenticeError(f"unknown exploration {mode!r}; known: {', '.join(EXPLORATION)}")
    if mode != "auto":
        return mode
    try:
        task.oracle(np.random.default_rng(0))
    except ApprenticeError:
        return "random"
    return "oracle"


def explore(
    task: Task,
    steps: int,
    *,
    mode: str,
    noise: float,
    seed: int,
    policy: ActFn | None = None,
    on_reset: Callable[[], None] | None = None,
) -> Transitions:
    """`steps` env steps of the agent's own interaction (see the module docstring), recording
    the action actually executed. Episode i starts from seed EXPLORATION_SEED_BASE + 10^5 *
    seed + i; `policy` (with `on_reset`) drives the `policy` mode."""
    mode = resolve_exploration(mode, task)
    if mode == "policy" and policy is None:
        raise ApprenticeError("policy exploration needs a policy (BCO rounds after the first)")
    rng = np.random.default_rng([seed, 11])
    keys = obs_keys_of(task)
    dim = int(task.action_space.shape[0])
    obs_l: list[np.ndarray] = []
    next_l: list[np.ndarray] = []
    act_l: list[np.ndarray] = []
    episode = 0
    while len(act_l) < steps:
        obs, _ = task.reset(seed=EXPLORATION_SEED_BASE + 100_000 * seed + episode)
        actor = policy
        if mode == "oracle":
            oracle = task.oracle(np.random.default_rng([seed, episode]))
            oracle.reset()
            actor = oracle.act
        elif on_reset is not None:
            on_reset()
        episode += 1
        # Per-episode scale: clean episodes reach the states demos visit (a carried cube,
        # which noise of 0.3 on every step almost never grasps), noisy ones vary the actions.
        scale = noise * rng.uniform()
        for _ in range(task.horizon):
            if actor is None or mode == "random":
                action = rng.uniform(-1.0, 1.0, size=dim)
            else:
                action = np.asarray(actor(obs), np.float64) + scale * rng.standard_normal(dim)
            action = np.clip(action, -1.0, 1.0).astype(np.float32)
            next_obs, _, terminated, truncated, _ = task.step(action)
            obs_l.append(flat(obs, keys))
            next_l.append(flat(next_obs, keys))
            act_l.append(action)
            obs = next_obs
            if terminated or truncated or len(act_l) >= steps:
                break
    return Transitions(np.stack(obs_l), np.stack(next_l), np.stack(act_l))


# ---- demos: checks, labelling, error --------------------------------------------------------


def resolve_task(demos: str | Path, task_name: str) -> Task:
    """The task of `demos`: --task, else the file's env_args; both given must agree."""
    with DemoFile(demos) as f:
        env_args = f.env_args
    in_file = env_args.get("env_name")
    if task_name and in_file and task_name != in_file:
        raise ApprenticeError(f"{demos} holds demos of task {in_file!r}, not --task {task_name!r}")
    if in_file:  # the file's env_kwargs too (a placement variant)
        return make_task_from_env_args(env_args)
    if not task_name:
        raise ApprenticeError(f"{demos} names no task in its env_args; pass --task")
    return make_task(task_name)


def read_state_demos(path: str | Path, keys: list[str]) -> dict[str, tuple[np.ndarray, ...]]:
    """demo -> (obs (T, D), next_obs (T, D), actions (T, A) or (T, 0)), checked for what
    learning from observation needs: every key in obs and next_obs (NaN is refused by the
    reader, naming the demo and step)."""
    out: dict[str, tuple[np.ndarray, ...]] = {}
    with DemoFile(path) as f:
        missing = [k for k in keys if k not in f.obs_shapes]
        if missing:
            raise ApprenticeError(
                f"{path}: lacks observation keys {', '.join(missing)} that the task gives "
                f"(it has: {', '.join(f.obs_keys) or 'none'})"
            )
        for name in f.demo_names:
            ep = f.read(name, obs_keys=keys, with_images=False)
            gone = [k for k in keys if k not in ep.next_obs]
            if gone:
                raise ApprenticeError(
                    f"{path}: data/{name} has no next_obs/{gone[0]}; learning from observation "
                    "needs (s, s') pairs (record with next_obs)"
                )
            out[name] = (flat(ep.obs, keys), flat(ep.next_obs, keys), ep.actions)
    if not out:
        raise ApprenticeError(f"{path}: holds no demos")
    return out


def action_error(pred: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    """Per-dimension MAE, overall MAE, relative MAE (MAE over the true actions' mean
    absolute deviation: 0 exact, 1 no better than always predicting their mean) and mean
    cosine similarity (for A = 1 only sign agreement) of pred vs true (N, A)."""
    mae = np.abs(pred - true).mean(axis=0)  # A
    spread = np.abs(true - true.mean(axis=0)).mean()
    norms = np.linalg.norm(pred, axis=1) * np.linalg.norm(true, axis=1)  # N
    ok = norms > 1e-8
    cos = (pred * true).sum(1)[ok] / norms[ok]
    return {
        "mae": float(mae.mean()),
        "mae_per_dim": [round(float(x), 5) for x in mae],
        "relative_mae": float(mae.mean() / spread) if spread > 0 else float("nan"),
        "cosine": float(cos.mean()) if cos.size else float("nan"),
        "steps": int(true.shape[0]),
    }


def write_labelled(
    src: str | Path,
    out: Path,
    model: InverseDynamicsModel,
    demos: dict[str, tuple[np.ndarray, ...]],
    *,
    env_args: dict[str, Any],
    resume: bool,
) -> tuple[dict[str, np.ndarray], int]:
    """Write every demo of `src` to `out` with the IDM's actions, through the store (one
    crash-safe append per demo; with `resume`, demos already in `out` are kept). Masks and
    data attrs (an expert's reference returns) are carried over. Returns the labels per
    source demo and how many demos `out` already held."""
    done: dict[str, str] = {}
    if resume and out.exists():
        with DemoFile(out) as f:
            done = {str(f.attrs(n).get("labelled_from")): n for n in f.demo_names}
    resumed = len(done)
    preds: dict[str, np.ndarray] = {}
    with DemoFile(src) as f, DemoWriter(out, env_args=env_args, overwrite=not resume) as writer:
        masks, data_attrs = f.masks, f.data_attrs
        for name, (obs, nxt, _) in demos.items():
            preds[name] = model.predict(obs, nxt)  # T,A
            if name in done:
                continue
            ep = f.read(name)
            attrs = {**ep.attrs, "labelled_from": name, "actions_source": "idm"}
            # datagen_info holds the true gripper commands: it would contradict the labels.
            labelled = replace(ep, actions=preds[name], datagen_info=None, attrs=attrs)
            done[name] = writer.append(labelled)
        if data_attrs:
            writer.set_data_attrs(data_attrs)
    for mask, names in masks.items():
        write_mask(out, mask, [done[n] for n in names if n in done])
    return preds, resumed


def strip_actions(src: str | Path, dst: str | Path, *, overwrite: bool = False) -> int:
    """Write a state-only copy of `src` to `dst` (actions (T, 0), no datagen_info, masks
    kept); returns the number of demos."""
    if Path(dst).exists() and not overwrite:
        raise ApprenticeError(f"{dst} exists; pass --overwrite to replace it")
    with DemoFile(src) as f:
        names, masks, env_args = f.demo_names, f.masks, f.env_args
        with DemoWriter(dst, env_args=env_args, overwrite=overwrite) as w:
            for name in names:
                ep = f.read(name)
                t = ep.num_samples
                w.append(replace(ep, actions=np.zeros((t, 0), np.float32), datagen_info=None))
            if f.data_attrs:
                w.set_data_attrs(f.data_attrs)
    for mask, demos in masks.items():
        write_mask(dst, mask, demos)
    return len(names)


# ---- the command --------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelConfig:
    """Infer the actions of (state-only) demos with an inverse-dynamics model."""

    demos: str
    """Demos to label (HDF5; state-only, or with actions to measure the labels' error)."""
    out: str
    """Labelled copy (HDF5); a partial one from a killed run is resumed."""
    task: str = ""
    """Task to explore; default: the one the file's env_args name."""
    strip: bool = False
    """Only write a state-only copy of --demos to --out (actions removed), then stop."""
    idm: str = ""
    """A saved inverse-dynamics model (.pt) instead of exploring and fitting one."""
    exploration_steps: int = 20_000
    """Env steps of the agent's own interaction that the IDM learns from."""
    exploration: str = "auto"
    """auto (oracle if the task has one, else random), random, or oracle (with noise)."""
    exploration_noise: float = 0.3
    """Largest std of the Gaussian noise on the explorer's actions (drawn per episode)."""
    idm_steps: int = 3000
    """Gradient steps fitting the IDM."""
    idm_hidden_dims: tuple[int, ...] = (256, 256)
    """Hidden widths of the IDM."""
    seed: int = 0
    """Seed of exploration and the IDM's training."""
    overwrite: bool = False
    """Replace --out (and its IDM) instead of resuming."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "idm_hidden_dims", tuple(int(h) for h in self.idm_hidden_dims))
        if self.exploration_steps < 1 or self.idm_steps < 1:
            raise ApprenticeError("label-actions: exploration_steps and idm_steps must be >= 1")
        if self.exploration_noise < 0:
            raise ApprenticeError("label-actions: exploration_noise must be >= 0")
        if Path(self.demos).resolve() == Path(self.out).resolve():
            raise ApprenticeError("label-actions: --out must differ from --demos")


@dataclass
class LabelResult:
    path: Path
    idm_path: Path | None
    demos: int
    resumed: int
    """Demos already in --out from an earlier, interrupted run."""
    error: dict[str, Any] | None = None
    """Against the true actions when --demos has them (mae, mae_per_dim, cosine)."""
    extra: dict[str, Any] = field(default_factory=dict)


def build_idm(cfg: LabelConfig, task: Task, idm_path: Path) -> InverseDynamicsModel:
    """Load `cfg.idm`, reuse a resumed run's model, or explore the task and fit one."""
    keys = obs_keys_of(task)
    if cfg.idm or (idm_path.exists() and not cfg.overwrite):
        model, env_args = InverseDynamicsModel.load(cfg.idm or idm_path)
        if env_args.get("env_name") != task.name:
            raise ApprenticeError(
                f"IDM {cfg.idm or idm_path} was trained on task {env_args.get('env_name')!r}, "
                f"not {task.name!r}"
            )
        if model.obs_keys != keys:
            raise ApprenticeError(f"IDM reads keys {model.obs_keys}, task {task.name} has {keys}")
        return model
    data = explore(
        task,
        cfg.exploration_steps,
        mode=cfg.exploration,
        noise=cfg.exploration_noise,
        seed=cfg.seed,
    )
    idm_cfg = IDMConfig(hidden_dims=cfg.idm_hidden_dims, steps=cfg.idm_steps)
    model, _ = fit_idm(data, keys, idm_cfg, seed=cfg.seed)
    model.save(idm_path, task.env_args)
    return model


def label_actions(cfg: LabelConfig) -> LabelResult:
    """Label `cfg.demos` (see LabelConfig); resumable, crash-safe through the store."""
    out = Path(cfg.out)
    if cfg.strip:
        n = strip_actions(cfg.demos, out, overwrite=cfg.overwrite)
        return LabelResult(out, None, n, 0)
    task = resolve_task(cfg.demos, cfg.task)
    keys = obs_keys_of(task)
    demos = read_state_demos(cfg.demos, keys)
    with DemoFile(cfg.demos) as f:
        env_args = f.env_args if f.env_args.get("env_name") else task.env_args
    idm_path = out.with_suffix(".idm.pt")
    model = build_idm(cfg, task, idm_path)
    if model.action_dim != int(task.action_space.shape[0]):
        raise ApprenticeError(f"IDM acts in {model.action_dim} dims, task {task.name} does not")
    preds, resumed = write_labelled(
        cfg.demos, out, model, demos, env_args=env_args, resume=not cfg.overwrite
    )
    error = None
    true_dim = next(iter(demos.values()))[2].shape[1]
    if true_dim == model.action_dim:
        error = action_error(
            np.concatenate(list(preds.values())), np.concatenate([d[2] for d in demos.values()])
        )
    return LabelResult(out, None if cfg.idm else idm_path, len(demos), resumed, error)


def cmd_label_actions(ns: argparse.Namespace) -> None:
    from apprentice.cli.args import dataclass_from_args
    from apprentice.cli.main import print_table

    cfg = dataclass_from_args(LabelConfig, ns)
    r = label_actions(cfg)
    if cfg.strip:
        print_table(f"state-only copy of {cfg.demos}", [("file", r.path), ("demos", r.demos)])
        return
    rows: list[tuple[str, Any]] = [
        ("file", r.path),
        ("demos labelled", f"{r.demos} ({r.resumed} from an earlier run)"),
        ("inverse-dynamics model", r.idm_path or cfg.idm),
    ]
    if r.error is None:
        rows.append(("error vs true actions", "unknown (state-only demos)"))
    else:
        rows += [
            ("MAE vs true actions", f"{r.error['mae']:.4f} over {r.error['steps']} steps"),
            ("MAE per dimension", " ".join(f"{x:.3f}" for x in r.error["mae_per_dim"])),
            ("relative MAE", f"{r.error['relative_mae']:.3f} (1 = predicting the mean)"),
            ("cosine similarity", f"{r.error['cosine']:.3f}"),
        ]
    print_table("labelled actions", rows)


def label_actions_command() -> tuple[
    str, str, type, Callable[[argparse.Namespace], None], dict[str, Any]
]:
    """The (name, help, config, function, extra) tuple of `apprentice label-actions`."""
    return (
        "label-actions",
        "infer the actions of state-only demos with an inverse-dynamics model (BCO)",
        LabelConfig,
        cmd_label_actions,
        {"choices": {"exploration": list(EXPLORATION[:3])}},
    )


__all__ = [
    "IDMConfig",
    "InverseDynamicsModel",
    "LabelConfig",
    "LabelResult",
    "Transitions",
    "explore",
    "fit_idm",
    "label_actions",
    "strip_actions",
]
