"""Write a small robomimic-layout HDF5 file (random but learnable low-dim data) for peer benchmarks.

Layout (robomimic's, as apprentice's store writes it):

    data                 attrs: total (int), env_args (JSON str)
      demo_<i>           attrs: num_samples (int; robomimic's SequenceDataset REQUIRES it)
        obs/{eef_pos (T,3), eef_quat (T,4), gripper_qpos (T,2), object (T,20)}   float32
        next_obs/<same>  obs shifted by one step (last step repeated)
        actions (T,7) float32 in [-1, 1], rewards (T,) float32, dones (T,) uint8,
        states (T,32) float64
    mask/train, mask/valid   np.array of bytes demo names

Needs only numpy and h5py, so it runs in the project's venv or in .venv-robomimic:

    python benchmarks/peers/make_fixture.py --out benchmarks/out/fixture.hdf5 --demos 50 --steps 100
"""

from __future__ import annotations

import argparse
import json

import h5py
import numpy as np

OBS_DIMS = {"eef_pos": 3, "eef_quat": 4, "gripper_qpos": 2, "object": 20}
ACTION_DIM = 7
STATE_DIM = 32


def _demo(rng: np.random.Generator, t: int, w: np.ndarray) -> dict[str, np.ndarray]:
    # smooth random walk per key, so consecutive frames are correlated like real trajectories
    obs = {}
    for k, d in OBS_DIMS.items():
        x = np.cumsum(rng.normal(0.0, 0.05, size=(t + 1, d)), axis=0) + rng.normal(
            0.0, 0.5, size=(1, d)
        )
        if k == "eef_quat":
            x = x / np.linalg.norm(x, axis=1, keepdims=True)
        obs[k] = x.astype(np.float32)
    flat = np.concatenate([obs[k][:t] for k in OBS_DIMS], axis=1)
    actions = np.tanh(flat @ w + rng.normal(0.0, 0.05, size=(t, ACTION_DIM))).astype(np.float32)
    rewards = np.zeros(t, dtype=np.float32)
    rewards[-1] = 1.0
    dones = np.zeros(t, dtype=np.uint8)
    dones[-1] = 1
    return {
        "obs": {k: v[:t] for k, v in obs.items()},
        "next_obs": {k: v[1 : t + 1] for k, v in obs.items()},
        "actions": actions,
        "rewards": rewards,
        "dones": dones,
        "states": rng.normal(size=(t, STATE_DIM)),
    }


def write_fixture(
    path: str,
    demos: int = 50,
    steps: int = 100,
    min_steps: int | None = None,
    valid_fraction: float = 0.1,
    seed: int = 0,
    env_args: dict | None = None,
    omit_num_samples: bool = False,
) -> dict:
    rng = np.random.default_rng(seed)
    in_dim = sum(OBS_DIMS.values())
    w = rng.normal(0.0, 1.0 / np.sqrt(in_dim), size=(in_dim, ACTION_DIM))
    if env_args is None:
        env_args = {"env_name": "lift", "env_type": "apprentice", "env_kwargs": {}}
    names = [f"demo_{i}" for i in range(demos)]
    total = 0
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for name in names:
            t = steps if min_steps is None else int(rng.integers(min_steps, steps + 1))
            d = _demo(rng, t, w)
            g = data.create_group(name)
            if not omit_num_samples:
                g.attrs["num_samples"] = t
            for part in ("obs", "next_obs"):
                for k, v in d[part].items():
                    g.create_dataset(f"{part}/{k}", data=v)
            for k in ("actions", "rewards", "dones", "states"):
                g.create_dataset(k, data=d[k])
            total += t
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps(env_args)
        order = rng.permutation(demos)
        n_valid = max(1, round(valid_fraction * demos)) if valid_fraction > 0 and demos > 1 else 0
        valid = sorted(names[i] for i in order[:n_valid])
        train = sorted(names[i] for i in order[n_valid:])
        key = lambda n: int(n.split("_")[1])  # noqa: E731
        f["mask/train"] = np.array(sorted(train, key=key), dtype="S")
        f["mask/valid"] = np.array(sorted(valid, key=key), dtype="S")
    return {"path": path, "demos": demos, "total": total, "train": len(train), "valid": len(valid)}


def write_with_apprentice(
    path: str,
    demos: int = 50,
    steps: int = 100,
    min_steps: int | None = None,
    valid_fraction: float = 0.1,
    seed: int = 0,
    env_args: dict | None = None,
) -> dict:
    """Same data, written by apprentice's DemoWriter (needs the project's venv)."""
    from apprentice.data.episode import Episode
    from apprentice.data.store import DemoWriter, split_train_valid

    rng = np.random.default_rng(seed)
    in_dim = sum(OBS_DIMS.values())
    w = rng.normal(0.0, 1.0 / np.sqrt(in_dim), size=(in_dim, ACTION_DIM))
    if env_args is None:
        env_args = {"env_name": "lift", "env_type": "apprentice", "env_kwargs": {}}
    total = 0
    with DemoWriter(path, env_args=env_args, overwrite=True, durable=False) as wr:
        for i in range(demos):
            t = steps if min_steps is None else int(rng.integers(min_steps, steps + 1))
            d = _demo(rng, t, w)
            wr.append(
                Episode(
                    obs=d["obs"],
                    next_obs=d["next_obs"],
                    actions=d["actions"],
                    rewards=d["rewards"],
                    dones=d["dones"],
                    states=d["states"],
                    seed=i,
                )
            )
            total += t
    train, valid = split_train_valid(path, valid_fraction=valid_fraction, seed=seed)
    return {
        "path": path,
        "writer": "apprentice",
        "demos": demos,
        "total": total,
        "train": len(train),
        "valid": len(valid),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True)
    p.add_argument("--demos", type=int, default=50)
    p.add_argument("--steps", type=int, default=100, help="steps per demo (max if --min-steps)")
    p.add_argument("--min-steps", type=int, default=None, help="draw lengths in [min-steps, steps]")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--env-args", default=None, help="JSON for data.attrs['env_args']")
    p.add_argument(
        "--omit-num-samples",
        action="store_true",
        help="leave out demo attrs num_samples (to show that robomimic cannot read such a file)",
    )
    p.add_argument(
        "--writer",
        choices=["h5py", "apprentice"],
        default="h5py",
        help="apprentice: write through apprentice's DemoWriter (project venv)",
    )
    a = p.parse_args()
    if a.writer == "apprentice":
        info = write_with_apprentice(
            a.out,
            a.demos,
            a.steps,
            a.min_steps,
            a.valid_fraction,
            a.seed,
            json.loads(a.env_args) if a.env_args else None,
        )
        print(json.dumps(info))
        return
    info = write_fixture(
        a.out,
        a.demos,
        a.steps,
        a.min_steps,
        a.valid_fraction,
        a.seed,
        json.loads(a.env_args) if a.env_args else None,
        a.omit_num_samples,
    )
    print(json.dumps(info))


if __name__ == "__main__":
    main()
