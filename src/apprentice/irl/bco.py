"""BCO: behavioural cloning from observation (Torabi, Warnell & Stone 2018).

Demos give states only. The agent interacts with the task itself for N steps (its
pre-demonstration policy), fits an inverse-dynamics model a = f(s, s') on those steps where
it knows the action, labels the demos' (s, s') pairs with it, and clones the labelled demos
(Algorithm 1). BCO(alpha) then repeats: run the cloned policy for alpha * N more steps,
refit the IDM on all interaction so far (now also on the states the learner reaches),
relabel, reclone. Every env step counts against `--env-steps`:

    N (1 + alpha * rounds) = env_steps

The IDM, exploration and labelling are `label.py`'s (see there for why the built-in
manipulation tasks explore with the noisy oracle by default); cloning is the shared trainer.

A run folder holds

    config.json, metrics.jsonl, tb/   the run's config, one line per round, TensorBoard
    state.json                        rounds done, env steps, the evaluation history
    exploration_<r>.npz               round r's interaction (s, a, s')
    idm.pt                            the latest inverse-dynamics model
    labelled.hdf5                     the demos with the latest IDM's actions
    round_<r>/                        the trainer's run of round r (final.pt: the policy)

A killed run resumes at the round in flight (rerun the same command).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from apprentice.algos.config import ROUND_SET_FIELDS, TrainConfig, config_from_overrides
from apprentice.algos.run_folder import RunLog, prepare_run_dir, write_json
from apprentice.algos.trainer import train
from apprentice.data.source import open_source
from apprentice.errors import ApprenticeError
from apprentice.irl.common import IRLConfig, IRLResult
from apprentice.irl.envs import evaluate_policy, expert_reference, make_irl_env
from apprentice.irl.idm import (
    EXPLORATION,
    IDMConfig,
    InverseDynamicsModel,
    Transitions,
    explore,
    fit_idm,
    obs_keys_of,
)
from apprentice.irl.label import action_error, read_state_demos, write_labelled
from apprentice.overrides import parse_overrides
from apprentice.policies.base import Policy
from apprentice.policies.checkpoint import load_policy
from apprentice.policies.mlp import MLPConfig

_C = TypeVar("_C")


def algo_config(cls: type[_C], cfg: IRLConfig) -> _C:
    """`cls` (a dataclass) from `cfg.algo_args`; values read as JSON (3, 1e-3, [64,64]) or
    as comma lists; a nested config's fields by their dotted path (train.epochs=5)."""
    values = parse_overrides(cfg.algo_args, "irl --algo-args entry")
    return config_from_overrides(cls, values, f"irl --algo-args for {cfg.algo}")


# Settings of the cloning that the run sets itself.
_TRAIN_FIXED = ROUND_SET_FIELDS


def clone_training(**changes: Any) -> TrainConfig:
    """BCO's default cloning of a round (an MLP 2x256, 20 epochs x 100 steps at lr 1e-3, on
    every labelled demo), with `changes`."""
    default = TrainConfig(
        policy=MLPConfig(hidden_dims=(256, 256)),
        epochs=20,
        lr=1e-3,
        valid_fraction=0.0,
        train_mask="",  # all demos: the IDM labelled every one
        eval_every=0,
        progress=False,
    )
    return replace(default, **changes)


@dataclass(frozen=True)
class BCOConfig:
    """BCO's own settings (`--algo-args key=value`)."""

    alpha: float = 0.0
    """Post-demonstration interaction per round, as a fraction of the pre-demo steps N."""
    rounds: int = 0
    """BCO(alpha) rounds after the first (0 = BCO(0))."""
    exploration: str = "auto"
    """Pre-demonstration policy: auto (the noisy oracle if the task has one, else random)."""
    exploration_noise: float = 0.3
    """Largest std of the Gaussian noise on the explorer's actions (drawn per episode)."""
    policy_noise: float = 0.1
    """Largest std of the noise on the cloned policy's actions in BCO(alpha) rounds."""
    idm_hidden_dims: tuple[int, ...] = (256, 256)
    """Hidden widths of the inverse-dynamics MLP."""
    idm_steps: int = 3000
    """Gradient steps fitting the IDM each round."""
    train: TrainConfig = field(default_factory=clone_training, metadata={"fixed": _TRAIN_FIXED})
    """Each round's cloning (`train.epochs=5`, `train.policy.hidden_dims=[64,64]`): an MLP
    2x256 for 20 epochs x 100 steps at lr 1e-3, on every labelled demo."""

    def __post_init__(self) -> None:
        checks = [
            (self.alpha >= 0 and self.rounds >= 0, "alpha >= 0 and rounds >= 0"),
            (self.rounds == 0 or self.alpha > 0, "alpha > 0 when rounds > 0"),
            (self.exploration in EXPLORATION[:3], "exploration auto, random or oracle"),
            (self.exploration_noise >= 0 and self.policy_noise >= 0, "noise >= 0"),
            (self.idm_steps >= 1, "idm_steps >= 1"),
        ]
        for ok, what in checks:
            if not ok:
                raise ApprenticeError(f"irl --algo bco: need {what}")

    def budget(self, env_steps: int) -> list[int]:
        """Env steps of each round: N, then alpha * N per BCO(alpha) round."""
        pre = round(env_steps / (1.0 + self.alpha * self.rounds))
        post = round(self.alpha * pre)
        if pre < 1 or (self.rounds and post < 1):
            raise ApprenticeError(f"irl --algo bco: env_steps {env_steps} is too few to split")
        return [pre] + [post] * self.rounds


_RUN_FILES = ("state.json", "idm.pt", "labelled.hdf5", "labelled.hdf5.journal")


class _Run:
    """One BCO run: the task, the demos' (s, s') pairs, the folder."""

    def __init__(self, cfg: IRLConfig, bcfg: BCOConfig) -> None:
        from apprentice.irl.label import resolve_task

        self.cfg, self.bcfg = cfg, bcfg
        self.dir = Path(cfg.out)
        self.task = resolve_task(cfg.demos, cfg.task)
        self.keys = obs_keys_of(self.task)
        self.demos = read_state_demos(cfg.demos, self.keys)
        with open_source(cfg.demos) as f:
            self.env_args = f.env_args
        self.true_actions = next(iter(self.demos.values()))[2].shape[1] > 0
        self.reference = expert_reference(cfg.demos)
        self.eval_env = make_irl_env(self.task.name, cfg.seed, self.keys)

    def round_dir(self, r: int) -> Path:
        return self.dir / f"round_{r}"

    def learner(self, r: int) -> Policy:
        return load_policy(self.round_dir(r) / "final.pt")

    def interact(self, r: int, steps: int) -> Transitions:
        """Round r's interaction: the pre-demonstration policy, then the cloned one."""
        path = self.dir / f"exploration_{r}.npz"
        if path.exists():
            return Transitions.load(path)
        seed = self.cfg.seed * 100 + r  # disjoint episodes per (seed, round)
        if r == 0:
            mode, noise = self.bcfg.exploration, self.bcfg.exploration_noise
            data = explore(self.task, steps, mode=mode, noise=noise, seed=seed)
        else:
            learner = self.learner(r - 1)
            data = explore(
                self.task,
                steps,
                mode="policy",
                noise=self.bcfg.policy_noise,
                seed=seed,
                policy=learner.act,
                on_reset=learner.reset,
            )
        data.save(path)
        return data

    def fit_and_label(
        self, data: Transitions, init: InverseDynamicsModel | None
    ) -> tuple[InverseDynamicsModel, dict[str, float]]:
        idm_cfg = IDMConfig(hidden_dims=self.bcfg.idm_hidden_dims, steps=self.bcfg.idm_steps)
        model, loss = fit_idm(data, self.keys, idm_cfg, seed=self.cfg.seed, init=init)
        model.save(self.dir / "idm.pt", self.task.env_args)
        preds, _ = write_labelled(
            self.cfg.demos,
            self.dir / "labelled.hdf5",
            model,
            self.demos,
            env_args=self.env_args,
            resume=False,
        )
        stats = {"idm_loss": loss}
        if self.true_actions:
            err = action_error(
                np.concatenate(list(preds.values())),
                np.concatenate([d[2] for d in self.demos.values()]),
            )
            stats.update({"idm_mae": err["mae"], "idm_relative_mae": err["relative_mae"]})
        return model, stats

    def clone(self, r: int) -> None:
        train(
            replace(
                self.bcfg.train,
                dataset=str(self.dir / "labelled.hdf5"),
                out=str(self.round_dir(r)),
                seed=self.cfg.seed,
                init_checkpoint=str(self.round_dir(r - 1) / "final.pt") if r else None,
            )
        )

    def evaluate(self, r: int) -> dict[str, float]:
        """The round's policy on held-out seeds (one episode per seed, the policy reset
        between them)."""
        policy = self.learner(r)
        scores = []
        for i in range(self.cfg.eval_episodes):
            policy.reset()
            scores.append(
                evaluate_policy(
                    policy.act, self.eval_env, 1, reference=self.reference, seed_offset=i
                )
            )
        keys = [k for k in scores[0] if k not in ("std_return", "eval_episodes")]
        out = {k: float(np.mean([s[k] for s in scores])) for k in keys}
        out["eval_episodes"] = float(self.cfg.eval_episodes)
        return out


def run_bco(cfg: IRLConfig) -> IRLResult:
    """Run (or resume) BCO(alpha) as `cfg` says; see the module docstring."""
    if cfg.algo != "bco":
        raise ApprenticeError(f"run_bco runs bco, not {cfg.algo}")
    if not cfg.demos:
        raise ApprenticeError("irl --algo bco: --demos is required (state-only demos do)")
    bcfg = algo_config(BCOConfig, cfg)
    budget = bcfg.budget(cfg.env_steps)
    run = _Run(cfg, bcfg)
    run_dir = run.dir
    if cfg.overwrite and run_dir.exists():
        for name in _RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        for sub in [*run_dir.glob("round_*"), *run_dir.glob("exploration_*.npz")]:
            shutil.rmtree(sub) if sub.is_dir() else sub.unlink()
    bco = {k: v for k, v in asdict(bcfg).items() if k != "train"}
    config = {"irl": asdict(cfg), "bco": {**bco, "train": bcfg.train.to_dict()}}
    for free in ("resume", "overwrite", "eval_episodes", "wandb"):
        config["irl"].pop(free)
    prepare_run_dir(run_dir, config, resume=cfg.resume, overwrite=cfg.overwrite)
    state_path = run_dir / "state.json"
    state: dict[str, Any] = (
        json.loads(state_path.read_text())
        if state_path.exists()
        else {"rounds_done": -1, "env_steps": 0, "history": []}
    )
    done = int(state["rounds_done"])
    data: Transitions | None = None
    for r in range(done + 1):  # a resumed run's interaction so far
        part = Transitions.load(run_dir / f"exploration_{r}.npz")
        data = part if data is None else data + part
    model = InverseDynamicsModel.load(run_dir / "idm.pt")[0] if done >= 0 else None
    log = RunLog(
        run_dir,
        resume_epoch=done + 1,
        global_step=int(state["env_steps"]),
        wandb=cfg.wandb,
        config=config,
        job_type="irl-bco",
    )
    try:
        for r in range(done + 1, len(budget)):
            t0 = time.perf_counter()
            part = run.interact(r, budget[r])
            data = part if data is None else data + part
            model, stats = run.fit_and_label(data, model)
            run.clone(r)
            steps = int(state["env_steps"]) + len(part)
            row = {"round": r, "env_steps": steps, **run.evaluate(r), **stats}
            row["wall_s"] = time.perf_counter() - t0
            log.epoch({"epoch": r + 1, **row}, steps)
            state["history"].append(row)
            state.update(rounds_done=r, env_steps=steps)
            write_json(state_path, state)
    finally:
        log.close()
    last = len(budget) - 1
    final = dict(state["history"][-1]) if state["history"] else {}
    final.update(
        {
            "policy": str(run.round_dir(last) / "final.pt"),
            "idm": str(run_dir / "idm.pt"),
            "labelled_demos": str(run_dir / "labelled.hdf5"),
        }
    )
    return IRLResult(run_dir=run_dir, history=list(state["history"]), final=final)


__all__ = ["BCOConfig", "algo_config", "clone_training", "run_bco"]
