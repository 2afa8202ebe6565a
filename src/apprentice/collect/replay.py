"""Replay a stored demo: from its states (exact), from its actions (and how far it drifts).

From states, each stored simulator state is set and the observation read back: this is
exact, and the state error is 0 by construction of `set_state`. From actions, the task is
put in the first stored state and the stored actions are stepped open loop: with a
deterministic simulator on the same build this reproduces the demo; a file recorded with
another MuJoCo version, another machine, or with state the recorder did not capture drifts,
and the per-step eef and object position errors say where and by how much.

The same replay, with the task's scripted oracle in place of the stored actions, gives the
reference path length that `apprentice.data.quality` compares a human demo's path with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from apprentice.data.quality import QualityConfig, QualityScores, load_demo_arrays, score_demos
from apprentice.data.reader import DemoFile
from apprentice.data.source import open_source
from apprentice.envs.base import Task, make_task_from_env_args
from apprentice.errors import ApprenticeError

REPLAY_MODES = ("states", "actions", "both")
VIDEO_FPS = 20


@dataclass(frozen=True)
class ReplayConfig:
    """Replay one demo from its stored states and/or its actions, optionally to a video."""

    file: str = "demos.hdf5"
    """The demo file."""
    demo: str = "0"
    """Which demo: an index (3) or a name (demo_3)."""
    mode: str = "both"
    """states (exact), actions (open loop, reports divergence) or both."""
    video: str | None = None
    """Write an MP4 here: one camera, the two replays side by side in mode both."""
    camera: str = "agentview"
    """Camera of the video."""
    size: int = 192
    """Video frame size (pixels, square)."""


@dataclass
class ReplayResult:
    """What a replay found; errors are in metres (positions) or raw state units."""

    demo: str
    steps: int
    max_state_error: float | None = None
    """From states: largest |get_state() - stored state| after setting each one."""
    max_obs_error: float | None = None
    """From states: largest |observation - stored obs| over the low-dim keys."""
    eef_error: np.ndarray | None = None
    """From actions: (T-1,) eef position error against the stored state after each action."""
    object_error: np.ndarray | None = None
    """From actions: (T-1,) largest object position error after each action."""
    stored_success: bool | None = None
    replayed_success: bool | None = None
    video: Path | None = None
    frames: dict[str, list[np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def success_matches(self) -> bool | None:
        if self.stored_success is None or self.replayed_success is None:
            return None
        return self.stored_success == self.replayed_success


def resolve_demo(f: DemoFile, demo: str) -> str:
    """'3' or 'demo_3' -> 'demo_3', or an ApprenticeError listing the demos there are."""
    names = f.demo_names
    name = f"demo_{demo}" if demo.isdigit() else demo
    if name in names:
        return name
    shown = ", ".join(names[:8]) + (f" ... {names[-1]}" if len(names) > 8 else "")
    raise ApprenticeError(
        f"{f.path}: no demo {name!r}; it has {len(names)} demos: {shown or 'none'}"
    )


def _task_for(f: DemoFile) -> Task:
    try:
        return make_task_from_env_args(f.env_args)
    except ApprenticeError as e:
        raise ApprenticeError(f"{f.path}: its task cannot be rebuilt to replay it ({e})") from None


def _states(f: DemoFile, name: str) -> np.ndarray:
    if "states" not in f.fields(name):
        raise ApprenticeError(
            f"{f.path}: data/{name}/states is missing; without simulator states the demo "
            "cannot be replayed"
        )
    states = f.read_field(name, "states")
    if states.ndim != 2 or states.shape[1] == 0:
        raise ApprenticeError(f"{f.path}: data/{name}/states is empty")
    return states


def _positions(task: Task) -> tuple[np.ndarray, np.ndarray]:
    """(eef position (3,), object positions (K, 3)) of the task now."""
    objects = [p[:3, 3] for _, p in sorted(task.object_poses().items())]
    return task.eef_pose()[:3, 3].copy(), np.array(objects).reshape(-1, 3)


def _start(task: Task, seed: int | None, state: np.ndarray) -> None:
    """Reset (with the demo's seed when it has one, so any per-episode draw matches), then
    put the simulator in the stored first state."""
    task.reset(seed=seed)
    task.set_state(state)


def replay_from_states(
    task: Task,
    states: np.ndarray,
    obs: dict[str, np.ndarray] | None = None,
    *,
    camera: str | None = None,
    size: int = 192,
) -> tuple[float, float | None, list[np.ndarray]]:
    """Set each state (T, S); returns (max state error, max obs error, frames if camera)."""
    state_err, obs_err = 0.0, 0.0 if obs else None
    frames = []
    for t, state in enumerate(states):
        task.set_state(state)
        state_err = max(state_err, float(np.max(np.abs(task.get_state() - state))))
        if obs:
            now = task.get_observation()
            for key, stored in obs.items():
                if key in now and stored.dtype != np.uint8:
                    diff = np.abs(now[key].astype(np.float64) - stored[t])
                    obs_err = max(obs_err or 0.0, float(np.max(diff)))
        if camera is not None:
            frames.append(task.render_frame(camera, size))
    return state_err, obs_err, frames


def replay_from_actions(
    task: Task,
    states: np.ndarray,
    actions: np.ndarray,
    *,
    seed: int | None = None,
    camera: str | None = None,
    size: int = 192,
) -> tuple[np.ndarray, np.ndarray, bool, list[np.ndarray]]:
    """Step `actions` (T, A) open loop from states[0]; returns (eef error (T-1,), object
    error (T-1,), success at the end, frames if camera). Error t compares the state after
    action t with stored state t+1."""
    _start(task, seed, states[0])
    frames = [task.render_frame(camera, size)] if camera is not None else []
    replayed = []
    success = False
    for action in actions:
        _, _, _, _, info = task.step(np.asarray(action, dtype=np.float32))
        success = success or bool(info.get("success", False))
        replayed.append(_positions(task))
        if camera is not None:
            frames.append(task.render_frame(camera, size))
    eef_err = np.zeros(len(actions) - 1)
    obj_err = np.zeros(len(actions) - 1)
    for t in range(len(actions) - 1):
        task.set_state(states[t + 1])
        eef, objects = _positions(task)
        eef_err[t] = float(np.linalg.norm(replayed[t][0] - eef))
        if len(objects):
            obj_err[t] = float(np.linalg.norm(replayed[t][1] - objects, axis=1).max())
    return eef_err, obj_err, success, frames


def write_video(path: str | os.PathLike[str], frames: list[np.ndarray]) -> Path:
    """An MP4 of (H, W, 3) uint8 frames at the control rate, as `apprentice eval` writes."""
    import imageio.v2 as imageio

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ims: list[Any] = list(frames)
    imageio.mimwrite(out, ims, fps=VIDEO_FPS, macro_block_size=1)
    return out


def replay(cfg: ReplayConfig) -> ReplayResult:
    """Replay one demo of `cfg.file` as `cfg` asks; see the module docstring."""
    if cfg.mode not in REPLAY_MODES:
        raise ApprenticeError(f"--mode must be one of {', '.join(REPLAY_MODES)}, not {cfg.mode!r}")
    camera = cfg.camera if cfg.video else None
    with DemoFile(cfg.file) as f:
        name = resolve_demo(f, str(cfg.demo))
        states = _states(f, name)
        actions = f.read_field(name, "actions")
        attrs = f.attrs(name)
        obs = {k: f.read_field(name, f"obs/{k}") for k in f.obs_keys if k not in f.image_keys}
        task = _task_for(f)
    result = ReplayResult(demo=name, steps=len(actions))
    seed = attrs.get("seed")
    try:
        if cfg.mode in ("states", "both"):
            task.reset(seed=seed)
            state_err, obs_err, frames = replay_from_states(
                task, states, obs, camera=camera, size=cfg.size
            )
            result.max_state_error, result.max_obs_error = state_err, obs_err
            result.frames["states"] = frames
        if cfg.mode in ("actions", "both"):
            eef, objects, success, frames = replay_from_actions(
                task, states, actions, seed=seed, camera=camera, size=cfg.size
            )
            result.eef_error, result.object_error = eef, objects
            result.replayed_success = success
            result.stored_success = bool(attrs["success"]) if "success" in attrs else None
            result.frames["actions"] = frames
    finally:
        task.close()
    if cfg.video:
        parts = list(result.frames.values())
        # The states replay has T frames, the actions replay T + 1 (the final state too):
        # pad the shorter with its last frame so the two run side by side.
        n = max(len(p) for p in parts)
        padded = [p + [p[-1]] * (n - len(p)) for p in parts]
        result.video = write_video(
            cfg.video, [np.concatenate(fr, axis=1) for fr in zip(*padded, strict=True)]
        )
    return result


def oracle_path_lengths(
    path: str | os.PathLike[str], demos: list[str] | None = None, *, progress: bool = False
) -> tuple[np.ndarray, dict[str, str]]:
    """The task oracle's eef path length to success from each demo's initial state.

    Returns (lengths (E,), notes): NaN where the oracle could not be run, and why in
    `notes["path"]` (no task, no states or seed, or the oracle failed from that state).
    """
    with open_source(path) as f:
        names = list(demos) if demos is not None else f.demo_names
        starts: list[np.ndarray | None] = []
        seeds: list[int | None] = []
        for name in names:
            seeds.append(f.attrs(name).get("seed"))
            states = f.read_states(name)
            starts.append(states[0] if states is not None and states.shape[1] else None)
        try:
            task = make_task_from_env_args(f.env_args)
        except ApprenticeError as e:
            return np.full(len(names), np.nan), {"path": f"no oracle: {e}"}
    lengths = np.full(len(names), np.nan)
    failed: list[str] = []
    unplaceable: list[str] = []
    try:
        for i, name in enumerate(tqdm(names, desc="oracle paths", disable=not progress)):
            seed, state = seeds[i], starts[i]
            if state is None and seed is None:
                unplaceable.append(name)
                continue
            task.reset(seed=seed)
            if state is not None:
                task.set_state(state)
            oracle = task.oracle(np.random.default_rng(seed))
            oracle.reset()
            obs = task.get_observation()
            travelled, prev = 0.0, task.eef_pose()[:3, 3].copy()
            for _ in range(task.horizon):
                obs, _, terminated, truncated, info = task.step(oracle.act(obs))
                now = task.eef_pose()[:3, 3].copy()
                if info.get("success", False):
                    # A stored demo's path ends at the eef position before its first
                    # rewarded action; so does this one.
                    lengths[i] = travelled
                    break
                travelled += float(np.linalg.norm(now - prev))
                prev = now
                if terminated or truncated:
                    break
            if np.isnan(lengths[i]):
                failed.append(name)
    finally:
        task.close()
    notes = []
    if unplaceable:
        notes.append(f"no states or seed in {len(unplaceable)} demos ({unplaceable[0]}, ...)")
    if failed:
        notes.append(f"the oracle failed from the start of {len(failed)} demos ({failed[0]}, ...)")
    return lengths, ({"path": "; ".join(notes)} if notes else {})


def score_file(
    path: str | os.PathLike[str],
    demos: list[str] | None = None,
    *,
    oracle: bool = True,
    config: QualityConfig | None = None,
    progress: bool = False,
) -> QualityScores:
    """Quality scores of a file's demos, with path lengths against the task oracle's."""
    arrays = load_demo_arrays(path, demos)
    if not oracle:
        return score_demos(arrays, config, notes={"path": "not compared (no oracle asked)"})
    reference, notes = oracle_path_lengths(path, arrays.names, progress=progress)
    return score_demos(arrays, config, reference_path=reference, notes=notes)
