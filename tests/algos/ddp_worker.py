"""One torchrun process of tests/algos/test_distributed.py: `torchrun --nproc_per_node=2
tests/algos/ddp_worker.py JOBS.json OUT` runs each job of the file in turn and writes what it
found to OUT/<job>_rank<r>.json (or .pt), for the test to compare across ranks and with one
process. One launch for all jobs (starting torchrun costs seconds), in one process group made
here, which each job's `join_processes` uses (a process joins once).

Jobs (each a dict with "kind" and "name"):
- "steps": Trainer.step on rank r's rows of fixed global batches (weights, EMA: a .pt file).
- "kinds": two steps of every registered policy kind (and camera variants): digests.
- "train": `train(config)` for each config in turn (joining the processes itself), with its
  checkpoint writes and log records counted, and digests of the weights every process ends
  with; what it prints goes to OUT/<job>_rank<r>.out.
- "mismatch": `train` on a config whose epochs differ by rank: the error each process stops
  with.
- "pipeline": `apprentice train`'s `run_train` with stages (as a recipe's) that note which
  rank ran them and change the config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from apprentice.algos import TrainConfig, Trainer
from apprentice.algos import trainer as trainer_module
from apprentice.algos.launch import join_processes
from apprentice.algos.run_folder import RunLog
from apprentice.data.dataset import DemoDataset, WindowSampler
from apprentice.data.normalize import Normalizer
from apprentice.errors import ApprenticeError
from apprentice.policies import CameraConfig, MLPConfig, policy_config_class, policy_names

OBS = {"eef_pos": 3, "object": 5}
IMAGE = "agentview_image"
ACTION_DIM = 4


def demos(*, images: bool = False, num_demos: int = 6, length: int = 24) -> DemoDataset:
    """Demos of a fixed smooth map (seed 0), in memory; a small camera with `images`."""
    rng = np.random.default_rng(0)
    n = num_demos * length
    obs: dict[str, np.ndarray] = {
        k: rng.normal(size=(n, d)).astype(np.float32) for k, d in OBS.items()
    }
    w = rng.normal(size=(sum(OBS.values()), ACTION_DIM)) * 0.5
    actions = np.tanh(np.concatenate(list(obs.values()), axis=1) @ w).astype(np.float32)
    if images:
        obs[IMAGE] = rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8)
    starts = np.arange(num_demos, dtype=np.int64) * length
    lengths = np.full(num_demos, length, dtype=np.int64)
    names = [f"demo_{i}" for i in range(num_demos)]
    return DemoDataset(obs, actions, starts, lengths, names, {"env_name": "lift"})


def global_batches(config: Any, dataset: DemoDataset, size: int, count: int) -> list[Any]:
    """`count` batches of `size` windows, the same in every process (seed 7)."""
    sampler = WindowSampler.for_policy(
        dataset, config, batch_size=size, rng=np.random.default_rng(7)
    )
    return [sampler.sample() for _ in range(count)]


def rows_of(batch: dict[str, np.ndarray], rank: int, world: int) -> dict[str, np.ndarray]:
    """Rank `rank`'s equal share of the rows of `batch`."""
    per = next(iter(batch.values())).shape[0] // world
    return {k: v[rank * per : (rank + 1) * per] for k, v in batch.items()}


def step_config(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"lr": 1e-2, "ema_decay": 0.9, "grad_clip": 0.5, "threads": 1}
    return TrainConfig(**{**base, **kw})


def run_steps(job: dict[str, Any], out: Path, rank: int, world: int) -> None:
    """MLP steps on this rank's rows of the global batches: what one process on the whole
    batches must match (the test runs that process)."""
    config = step_config()
    dataset = demos()
    policy_config = MLPConfig(hidden_dims=(32, 32))
    batches = global_batches(policy_config, dataset, job["batch"] * world, job["steps"])
    with join_processes(config) as processes:
        torch.manual_seed(0)
        policy = policy_config.build(dataset.spec, Normalizer.fit(dataset).state_dict())
        trainer = Trainer.for_policy(policy, config, processes=processes)
        for batch in batches:
            trainer.step(rows_of(batch, rank, world))
        assert trainer.ema is not None
        torch.save(
            {"policy": policy.state_dict(), "ema": trainer.ema.policy.state_dict()},
            out / f"{job['name']}_rank{rank}.pt",
        )


def digest(module: torch.nn.Module, *, skip: tuple[str, ...] = ()) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if not any(part in name for part in skip):
            h.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def kind_configs() -> dict[str, Any]:
    """Every registered kind at its tiny size, and camera variants of the MLP: a trained
    conv encoder (random shift), and one with BatchNorm."""
    configs = {name: policy_config_class(name).tiny() for name in policy_names()}
    camera = {"obs_keys": tuple(OBS), "image_keys": (IMAGE,), "hidden_dims": (16,)}
    small = {"feature_dim": 8, "num_keypoints": 4}
    configs["mlp-camera"] = MLPConfig(**camera, camera=CameraConfig(**small))
    configs["mlp-camera-batchnorm"] = MLPConfig(
        **camera, camera=CameraConfig(**small, encoder_norm="batch")
    )
    return configs


def run_kinds(job: dict[str, Any], out: Path, rank: int, world: int) -> None:
    """Two steps of every kind on this rank's rows; the digests of its weights (a
    BatchNorm's running statistics are each process's own: left out)."""
    found: dict[str, Any] = {}
    config = TrainConfig(lr=1e-3, threads=1)
    with join_processes(config) as processes:
        for label, policy_config in kind_configs().items():
            dataset = demos(images=bool(policy_config.image_keys))
            batches = global_batches(policy_config, dataset, 4 * world, 2)
            torch.manual_seed(0)
            policy = policy_config.build(dataset.spec, Normalizer.fit(dataset).state_dict())
            trainer = Trainer.for_policy(policy, config, processes=processes)
            losses = [float(trainer.step(rows_of(b, rank, world))[0]) for b in batches]
            found[label] = {
                "weights": digest(policy, skip=("running_", "num_batches_tracked")),
                "losses": losses,
            }
    (out / f"{job['name']}_rank{rank}.json").write_text(json.dumps(found))


def run_train(job: dict[str, Any], out: Path, rank: int, world: int) -> None:
    """`train` on the job's config, counting checkpoint writes and log records per process;
    then the digests of the weights (and EMA) this process ends with."""
    writes: list[str] = []
    records: list[int] = []
    save = trainer_module.save_checkpoint
    log_epoch = RunLog.epoch
    ended: list[Trainer] = []
    fit = Trainer.fit

    def counted_save(path: Any, *args: Any, **kw: Any) -> None:
        writes.append(Path(path).name)
        save(path, *args, **kw)

    def counted_epoch(self: RunLog, record: dict[str, Any], global_step: int) -> None:
        records.append(int(record["epoch"]))
        log_epoch(self, record, global_step)

    def kept_fit(self: Trainer) -> Any:
        ended.append(self)
        return fit(self)

    trainer_module.save_checkpoint = counted_save  # type: ignore[assignment]
    RunLog.epoch = counted_epoch  # type: ignore[method-assign]
    Trainer.fit = kept_fit  # type: ignore[method-assign]
    printed = out / f"{job['name']}_rank{rank}.out"
    try:
        with open(printed, "w") as f, contextlib.redirect_stdout(f):
            for config in job["configs"]:
                trainer_module.train(TrainConfig.from_dict(config))
    finally:
        trainer_module.save_checkpoint = save
        RunLog.epoch = log_epoch  # type: ignore[method-assign]
        Trainer.fit = fit  # type: ignore[method-assign]
    trainer = ended[-1]
    found = {
        "writes": writes,
        "records": records,
        "weights": digest(trainer.policy, skip=("running_", "num_batches_tracked")),
        "ema": None if trainer.ema is None else digest(trainer.ema.policy),
        "normalizer": json.dumps(trainer.data.normalizer_state, sort_keys=True),
        "first_window": trainer.sampler.sample()["actions"][0].tolist(),
    }
    (out / f"{job['name']}_rank{rank}.json").write_text(json.dumps(found))


def run_mismatch(job: dict[str, Any], out: Path, rank: int, world: int) -> None:
    """`train` with epochs 2 + rank: every process must stop at the start, with the error."""
    config = TrainConfig.from_dict({**job["config"], "epochs": 2 + rank})
    try:
        trainer_module.train(config)
        found = {"error": None}
    except ApprenticeError as exc:
        found = {"error": type(exc).__name__, "message": str(exc)}
    (out / f"{job['name']}_rank{rank}.json").write_text(json.dumps(found))


def noted_stages(config: TrainConfig, note: Path) -> TrainConfig:
    """Stages that note the rank running them and give the run another seed."""
    with note.open("a") as f:
        f.write(os.environ["RANK"] + "\n")
    return dataclasses.replace(config, seed=config.seed + 1)


def run_pipeline(job: dict[str, Any], out: Path, rank: int, world: int) -> None:
    """`run_train` with stages: its rows and the seed this process trained with."""
    from apprentice.pipelines.train import run_train as pipeline

    config = TrainConfig.from_dict(job["config"])
    note = out / f"{job['name']}_stages.txt"
    seeds: list[int] = []
    fit = Trainer.fit

    def noted_fit(self: Trainer) -> Any:
        seeds.append(self.config.seed)
        return fit(self)

    Trainer.fit = noted_fit  # type: ignore[method-assign]
    try:
        rows = pipeline(config, stages=functools.partial(noted_stages, note=note))
    finally:
        Trainer.fit = fit  # type: ignore[method-assign]
    found = {"seeds": seeds, "epochs": rows["epochs"]}
    (out / f"{job['name']}_rank{rank}.json").write_text(json.dumps(found))


RUNNERS = {
    "steps": run_steps,
    "kinds": run_kinds,
    "train": run_train,
    "mismatch": run_mismatch,
    "pipeline": run_pipeline,
}


def main() -> None:
    jobs = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        for job in jobs:
            RUNNERS[job["kind"]](job, out, rank, world)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
