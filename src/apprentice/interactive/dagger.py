"""`apprentice dagger`: DAgger, HG-DAgger, DART and BC as rounds of collect -> aggregate -> retrain.

Ross, Gordon & Bagnell (2011), "A Reduction of Imitation Learning and Structured Prediction
to No-Regret Online Learning": round 0 clones the expert's demos; in round i the mixture
pi_i = beta_i pi* + (1 - beta_i) pi_learner drives, the expert labels every visited state,
the labelled episodes are appended to one dataset, and the learner is retrained on all of it
(here warm-started from the previous round's weights). The other methods change only who
drives and what is labelled (see `episodes.py`); `bc` keeps adding plain expert demos, the
baseline at an equal label budget.

A run folder holds

    config.json        the DaggerConfig (a rerun must match it, or pass --overwrite)
    demos.hdf5         the aggregated store: every labelled episode, attrs source, method,
                       round (0 = the initial demos), rollout, beta
    round_<i>/         the trainer's run for round i (final.pt is the learner after round i)
    state.json         rounds done and the per-round history (labels, success, return)
    wandb/             with --wandb: the W&B run (a row per round), its id in wandb_id.txt

A run killed at any point resumes where it stopped: the store is append-only and journaled
(a killed append is rolled back), the episodes of the round in flight that reached the file
are kept, and the round's training resumes from its last epoch.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from apprentice.algos.config import ROUND_SET_FIELDS, TrainConfig
from apprentice.algos.run_folder import write_json
from apprentice.algos.trainer import train
from apprentice.data.reader import DemoFile
from apprentice.data.spec import ObsActSpec
from apprentice.data.store import DemoWriter
from apprentice.envs.base import Task, make_task, task_spec
from apprentice.envs.gym_tasks import SB3Expert
from apprentice.envs.perturb import merge_task_args
from apprentice.envs.seeds import VALIDATION_SEED_OFFSET, dagger_seed, held_out_seeds
from apprentice.errors import ApprenticeError
from apprentice.evaluate.metrics import success_rate
from apprentice.evaluate.rollout import rollout_batch
from apprentice.interactive.dart import NoiseModel, fit_noise, learner_errors
from apprentice.interactive.episodes import Mode, run_episode
from apprentice.interactive.experts import Expert, OracleExpert, make_expert
from apprentice.interactive.gates import ActionGapGate, Gate
from apprentice.interactive.human import HumanGate, TeleopExpert
from apprentice.overrides import parse_overrides
from apprentice.policies.base import Policy, policy_config_from_dict
from apprentice.policies.checkpoint import load_policy
from apprentice.policies.mlp import MLPConfig
from apprentice.tracking import (
    Tracker,
    check_tracking,
    remove_tracking,
    scalars,
    start_tracker,
)

METHODS = ("dagger", "hg-dagger", "dart", "bc")
SCHEDULES = ("linear", "exponential")
_MODE: dict[str, Mode] = {"dagger": "dagger", "hg-dagger": "hg", "dart": "dart", "bc": "expert"}
# A person may resume with another device or page address.
_RESUME_FREE = frozenset(
    {
        "train.progress",
        "train.threads",
        "train.device",
        "overwrite",
        "device",
        "host",
        "port",
        "takeover_on_motion",
        "wandb",
    }
)
# Settings of each round's training that the run itself sets (no flags).
_TRAIN_SET_BY_DAGGER = (*ROUND_SET_FIELDS, "train_mask", "valid_mask", "wandb")


def round_training(**changes: Any) -> TrainConfig:
    """DAgger's default training of a round (an MLP, 20 epochs x 100 steps at lr 1e-3, on
    every labelled episode), with `changes`."""
    default = TrainConfig(
        policy=MLPConfig(), epochs=20, lr=1e-3, valid_fraction=0.0, eval_every=0, progress=False
    )
    return replace(default, **changes)


@dataclass(frozen=True)
class DaggerConfig:
    """Interactive imitation: roll out, let the expert label, aggregate, retrain, evaluate."""

    task: str
    """Registered task, e.g. lift or gym/InvertedPendulum-v5."""
    out: str
    """Run folder (config, aggregated demos.hdf5, a trainer run per round, state.json)."""
    expert: str = "oracle"
    """Who labels: 'oracle' (the task's scripted oracle), 'teleop' (you, at --device) or a
    stable-baselines3 model .zip."""
    device: str = "browser"
    """With --expert teleop: your input device (browser, keyboard, gamepad, spacemouse)."""
    host: str = "127.0.0.1"
    """With --device browser: interface the page is served on."""
    port: int = 8780
    """With --device browser: TCP port of the page (0 = any free port)."""
    takeover_on_motion: bool = False
    """HG-DAgger with --expert teleop: any motion input takes over, not only start/toggle."""
    task_args: tuple[str, ...] = ()
    """Task arguments key=value: a perturbation axis at a level or a range (light=0:1; see
    apprentice.envs.perturb), for the expert's and the learner's episodes alike."""
    method: str = "dagger"
    """dagger, hg-dagger (gated takeovers), dart (noisy expert demos) or bc (expert demos)."""
    dataset: str | None = None
    """Initial demos (HDF5) for round 0; default: record init_episodes expert episodes."""
    init_episodes: int = 10
    """Expert episodes recorded for round 0 when no dataset is given."""
    rounds: int = 5
    """Rounds after round 0, each: collect, aggregate, retrain, evaluate."""
    episodes_per_round: int = 10
    """Episodes rolled out per round (the cap on episodes when labels_per_round is set)."""
    labels_per_round: int = 0
    """If > 0, collect until exactly this many labels per round (equal label budgets across
    methods), within max_rollouts episodes."""
    max_rollouts: int = 0
    """With labels_per_round: episodes per round at most (HG-DAgger with a learner that rarely
    drifts may not reach the budget); 0 = 20 * episodes_per_round."""
    beta_schedule: str = "linear"
    """Expert share beta_i of the mixture in round i of R: linear 1 - i/R, exponential p^i."""
    beta_decay: float = 0.5
    """p of the exponential schedule."""
    gate_threshold: float = 0.3
    """HG-DAgger's scripted gate: action gap (L2) at which the expert takes over."""
    gate_release: float = 0.15
    """HG-DAgger's scripted gate: action gap under which the expert hands back."""
    gate_min_steps: int = 5
    """HG-DAgger's scripted gate: shortest takeover, in steps."""
    dart_scale: float = 1.0
    """DART: multiplier of the fitted noise covariance (their alpha)."""
    train: TrainConfig = field(
        default_factory=round_training,
        metadata={"fixed": _TRAIN_SET_BY_DAGGER},
    )
    """Each round's training: the learner policy (mlp by default) for 20 epochs x 100 steps at
    lr 1e-3, on every labelled episode (no validation split)."""
    warm_start: bool = True
    """Start each round's training from the previous round's weights."""
    eval_episodes: int = 50
    """Held-out rollouts after each round."""
    validation_episodes: int = 0
    """Ross et al.'s "return the best policy on validation": also roll each round's learner
    out on this many validation seeds (apart from the held-out and collection seeds) and
    report, after every round, the learner of the best round so far by validation (success,
    or return on gymnasium tasks; the later round on ties). 0 = the last round's learner."""
    seed: int = 0
    """Seed of collection seeds, the mixture's coin flips, noise and training."""
    wandb: str | None = None
    """Also log the config and each round's scores to this Weights & Biases project (offline
    under out/wandb/ without W&B credentials or network); None = no W&B."""
    overwrite: bool = False
    """Delete a previous run in the folder (its config, demos, rounds, state) first."""

    def __post_init__(self) -> None:
        checks = [
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}"),
            (self.beta_schedule in SCHEDULES, f"beta_schedule must be one of {SCHEDULES}"),
            (self.rounds >= 0, "rounds must be >= 0"),
            (self.episodes_per_round >= 1, "episodes_per_round must be >= 1"),
            (self.labels_per_round >= 0, "labels_per_round must be >= 0"),
            (self.max_rollouts >= 0, "max_rollouts must be >= 0"),
            (self.validation_episodes >= 0, "validation_episodes must be >= 0"),
            (self.init_episodes >= 1 or self.dataset, "init_episodes must be >= 1"),
            (0.0 < self.beta_decay < 1.0, "beta_decay must be in (0, 1)"),
            (self.dart_scale >= 0.0, "dart_scale must be >= 0"),
            (0 <= self.seed < 1000, "seed must be in [0, 1000)"),
            (self.eval_episodes >= 1, "eval_episodes must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ApprenticeError(f"dagger: {message}")


def config_dict(cfg: DaggerConfig) -> dict[str, Any]:
    """`cfg` as the JSON of a run's config.json (the training config under "train")."""
    d = {k: v for k, v in asdict(cfg).items() if k != "train"}
    d["train"] = cfg.train.to_dict()
    out: dict[str, Any] = json.loads(json.dumps(d))
    return out


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1}} -> {"train.lr": 1}: settings compared one by one."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


_FLAT_TRAIN_KEYS = ("epochs", "steps_per_epoch", "batch_size", "lr", "threads", "progress")


def _nested_layout(d: dict[str, Any]) -> dict[str, Any]:
    """A config.json with the training settings at the top (policy, policy_args, epochs, ...)
    in the layout of `config_dict`, so that its run resumes."""
    if "train" in d or "policy" not in d:
        return d
    d = dict(d)
    overrides = parse_overrides(d.pop("policy_args", ()), "policy argument")
    policy = policy_config_from_dict({"name": d.pop("policy"), **overrides})
    train = round_training()
    values = {k: d.pop(k) for k in _FLAT_TRAIN_KEYS if k in d}
    d["train"] = replace(train, policy=policy, **values).to_dict()
    return d


def beta(schedule: str, round_index: int, rounds: int, decay: float = 0.5) -> float:
    """The expert's share of the mixture in round `round_index` (1..rounds; round 0 is the
    expert's own demos, beta 1): linear 1 - i/R reaches the pure learner in the last round;
    exponential p^i is Ross et al.'s beta_i = p^(i-1) counted from their first round."""
    if round_index <= 0:
        return 1.0
    if schedule == "linear":
        return max(0.0, 1.0 - round_index / max(rounds, 1))
    if schedule == "exponential":
        return float(decay**round_index)
    raise ApprenticeError(f"unknown beta schedule {schedule!r}; known: {', '.join(SCHEDULES)}")


@dataclass
class DaggerResult:
    run_dir: Path
    dataset: Path
    history: list[dict[str, Any]]
    resumed_from_round: int
    """Rounds already done when this call started (-1: a fresh run)."""
    policy: Path
    """The learner the run returns: the best round's by validation, else the last round's."""


class _Run:
    """One DAgger run folder and its moving parts."""

    def __init__(self, cfg: DaggerConfig) -> None:
        self.cfg = cfg
        self.dir = Path(cfg.out)
        self.demos = self.dir / "demos.hdf5"
        self.state_path = self.dir / "state.json"
        self.task_kwargs = merge_task_args({}, parse_overrides(cfg.task_args, "--task-args"))
        self.task = make_task(cfg.task, **self.task_kwargs)
        self.rng_root = np.random.SeedSequence([cfg.seed, 7])
        # Fail before any work if the expert cannot label this task.
        self.expert: Expert = make_expert(
            cfg.expert,
            self.task,
            np.random.default_rng(cfg.seed),
            device=cfg.device,
            host=cfg.host,
            port=cfg.port,
        )
        self._eval_tasks: list[Task] | None = None

    # ---- folder and state -------------------------------------------------------------------

    def prepare(self) -> dict[str, Any]:
        cfg_dict = config_dict(self.cfg)
        config_path = self.dir / "config.json"
        if self.cfg.overwrite and self.dir.exists():
            for name in ("config.json", "state.json", "demos.hdf5", "demos.hdf5.journal"):
                (self.dir / name).unlink(missing_ok=True)
            for sub in self.dir.glob("round_*"):
                shutil.rmtree(sub)
            remove_tracking(self.dir)
        if config_path.exists():
            # A field the stored config lacks (written before the field existed) had its default.
            defaults = _flat(config_dict(DaggerConfig(task=self.cfg.task, out=self.cfg.out)))
            previous = {**defaults, **_flat(_nested_layout(json.loads(config_path.read_text())))}
            current = _flat(cfg_dict)
            differ = sorted(
                k
                for k in set(previous) | set(current)
                if k not in _RESUME_FREE and previous.get(k) != current.get(k)
            )
            if differ:
                raise ApprenticeError(
                    f"run folder {self.dir} holds a DAgger run with a different config "
                    f"({', '.join(differ)} differ); use a new --out or --overwrite"
                )
        elif self.dir.exists() and any(self.dir.iterdir()):
            raise ApprenticeError(f"run folder {self.dir} is not empty and holds no DAgger run")
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(config_path, cfg_dict)
        if self.state_path.exists():
            state: dict[str, Any] = json.loads(self.state_path.read_text())
            return state
        return {"rounds_done": -1, "history": [], "rollouts": {}}

    def save_state(self, state: dict[str, Any]) -> None:
        write_json(self.state_path, state)

    def round_stats(self, round_index: int) -> tuple[int, int, int]:
        """(labels, next rollout index, takeover segments) of round `round_index` in the store."""
        if not self.demos.exists():
            return 0, 0, 0
        labels, rollouts, segments = 0, -1, 0
        with DemoFile(self.demos) as f:
            for name in f.demo_names:
                attrs = f.attrs(name)
                if int(attrs.get("round", -1)) == round_index:
                    labels += f.num_samples(name)
                    rollouts = max(rollouts, int(attrs.get("rollout", 0)))
                    segments += 1
        return labels, rollouts + 1, segments

    # ---- round 0 ---------------------------------------------------------------------------

    def import_dataset(self, path: str) -> None:
        """Copy the initial demos into the run's store, after checking they fit the task."""
        spec = task_spec(self.task)
        with DemoFile(path) as f:
            name = f.env_args.get("env_name")
            if name != self.task.name:
                raise ApprenticeError(
                    f"dataset {path} holds demos of task {name!r}, not {self.task.name!r}"
                )
            data_spec = ObsActSpec(f.obs_shapes, f.action_dim)
            if set(data_spec.obs_shapes) != set(spec.obs_shapes):
                raise ApprenticeError(
                    f"dataset {path} has observation keys {sorted(data_spec.obs_shapes)}, "
                    f"task {self.task.name!r} gives {sorted(spec.obs_shapes)}"
                )
            data_spec.check_compatible(spec, what=f"dataset {path}", against=f"task {name!r}")
            with DemoWriter(self.demos, env_args=self.task.env_args) as writer:
                for i, demo in enumerate(f.demo_names):
                    ep = f.read(demo)
                    attrs = {**ep.attrs, "round": 0, "rollout": i, "method": "import"}
                    writer.append(replace(ep, attrs=attrs))

    # ---- collection ------------------------------------------------------------------------

    def collect(self, round_index: int, state: dict[str, Any]) -> dict[str, Any]:
        """Roll out round `round_index` to its episode or label budget, appending as it goes."""
        cfg = self.cfg
        round0 = round_index == 0
        method = "bc" if round0 else cfg.method
        mode: Mode = _MODE[method]
        # beta is the expert's share of the executed actions: all of them for expert demos
        # (noisy or not), none for HG-DAgger's learner (its gate decides instead).
        b = {"expert": 1.0, "dart": 1.0, "hg": 0.0}.get(mode, 0.0)
        if mode == "dagger":
            b = beta(cfg.beta_schedule, round_index, cfg.rounds, cfg.beta_decay)
        learner = None if mode in ("expert", "dart") else self.learner(round_index - 1)
        noise = self.fit_dart_noise(round_index) if mode == "dart" else None
        gate: Gate | None = None
        if mode == "hg" and isinstance(self.expert, TeleopExpert):
            gate = HumanGate(self.expert, takeover_on_motion=cfg.takeover_on_motion)
        elif mode == "hg":
            gate = ActionGapGate(cfg.gate_threshold, cfg.gate_release, cfg.gate_min_steps)
        labels, start, segments = self.round_stats(round_index)
        key = str(round_index)
        start = max(start, int(state["rollouts"].get(key, 0)))
        budget = cfg.labels_per_round
        max_episodes = cfg.init_episodes if round0 else cfg.episodes_per_round
        if budget and not round0:
            max_episodes = cfg.max_rollouts or 20 * cfg.episodes_per_round
        source = self.expert.name if mode == "expert" else method
        rollout = start
        with DemoWriter(self.demos, env_args=self.task.env_args) as writer:
            while rollout < max_episodes and (not budget or round0 or labels < budget):
                seed = dagger_seed(cfg.seed, round_index, rollout)
                rng = np.random.default_rng([cfg.seed, round_index, rollout])
                record = run_episode(
                    self.task,
                    self.expert_for(round_index, rollout),
                    seed=seed,
                    mode=mode,
                    rng=rng,
                    learner=learner,
                    beta=b,
                    gate=gate,
                    noise=noise,
                    max_labels=budget - labels if budget and not round0 else None,
                    source=source,
                    attrs={"round": round_index, "rollout": rollout, "method": method, "beta": b},
                )
                for episode in record.segments:
                    writer.append(episode)
                labels += record.labels
                segments += len(record.segments)
                rollout += 1
                state["rollouts"][key] = rollout
                self.save_state(state)
        return {
            "round": round_index,
            "method": method,
            "beta": b,
            "rollouts": rollout,
            "round_labels": labels,
            # hg: each stored segment is one takeover (the gate's interventions)
            "interventions": segments if mode == "hg" else 0,
            "noise_std": None if noise is None else noise.std.tolist(),
        }

    def expert_for(self, round_index: int, rollout: int) -> Expert:
        """The expert of one episode: an oracle draws its per-episode style (speed, gains)
        from a generator seeded by (seed, round, rollout), so a resumed round re-draws the
        same demos; an SB3 expert is deterministic and shared."""
        if isinstance(self.expert, OracleExpert):
            rng = np.random.default_rng([self.cfg.seed, round_index, rollout, 1])
            return OracleExpert(self.task, rng)
        return self.expert

    def fit_dart_noise(self, round_index: int) -> NoiseModel:
        """DART's noise for round i: the learner after round i-1, on the expert-driven
        episodes stored so far (their states are the expert's, their labels clean)."""
        learner = self.learner(round_index - 1)
        with DemoFile(self.demos) as f:
            episodes = [f.read(n, with_images=False) for n in f.demo_names]
        errors = learner_errors(learner, episodes)
        return fit_noise(errors, scale=self.cfg.dart_scale, frozen=self.expert.noise_free_dims)

    # ---- training and evaluation -------------------------------------------------------------

    def round_dir(self, round_index: int) -> Path:
        return self.dir / f"round_{round_index}"

    def learner(self, round_index: int) -> Policy:
        return load_policy(self.round_dir(round_index) / "final.pt")

    def train_round(self, round_index: int) -> None:
        cfg = self.cfg
        init = None
        if cfg.warm_start and round_index > 0:
            init = str(self.round_dir(round_index - 1) / "final.pt")
        train(
            replace(
                cfg.train,
                dataset=str(self.demos),
                out=str(self.round_dir(round_index)),
                seed=cfg.seed,
                init_checkpoint=init,
            )
        )

    def evaluate(self, round_index: int) -> dict[str, Any]:
        """The learner of round i on held-out seeds (the same seeds every round)."""
        return self.score(round_index, held_out_seeds(self.cfg.eval_episodes))

    def validate(self, round_index: int) -> float:
        """The learner of round i on the validation seeds: its success rate, or its mean
        return where the task's success is not the goal (gymnasium tasks)."""
        seeds = held_out_seeds(self.cfg.validation_episodes, offset=VALIDATION_SEED_OFFSET)
        score = self.score(round_index, seeds)
        return float(score["mean_return" if "normalized_return" in score else "success_rate"])

    def score(self, round_index: int, seeds: list[int]) -> dict[str, Any]:
        tasks = self._eval_tasks or []
        if len(tasks) < len(seeds):
            tasks += [
                make_task(self.cfg.task, **self.task_kwargs) for _ in range(len(seeds) - len(tasks))
            ]
            self._eval_tasks = tasks
        results = rollout_batch(self.learner(round_index), tasks[: len(seeds)], seeds)
        sr = success_rate(sum(r.success for r in results), len(results))
        mean_return = float(np.mean([r.episode_return for r in results]))
        out: dict[str, Any] = {
            "success_rate": sr.rate,
            "ci_low": sr.ci_low,
            "ci_high": sr.ci_high,
            "eval_episodes": len(results),
            "mean_return": mean_return,
        }
        if isinstance(self.expert, SB3Expert):
            expert_r = float(self.expert.record["expert_return"])
            random_r = float(self.expert.record["random_return"])
            out["normalized_return"] = (mean_return - random_r) / (expert_r - random_r)
        return out


def run_dagger(cfg: DaggerConfig) -> DaggerResult:
    """Run (or resume) the rounds of `cfg`; returns the per-round history."""
    check_tracking(cfg.wandb)
    run = _Run(cfg)
    try:
        return _run_rounds(run, cfg)
    finally:
        if isinstance(run.expert, TeleopExpert):
            run.expert.close()  # a browser page's server, a terminal in cbreak mode


def _run_rounds(run: _Run, cfg: DaggerConfig) -> DaggerResult:
    state = run.prepare()
    resumed_from = int(state["rounds_done"])
    tracker = start_tracker(
        cfg.wandb, run.dir, config_dict(cfg), resume=resumed_from >= 0, job_type="dagger"
    )
    try:
        _rounds(run, cfg, state, tracker)
    finally:
        tracker.finish()
    history = list(state["history"])
    chosen = history[-1].get("selected_round", history[-1]["round"]) if history else 0
    policy = run.round_dir(int(chosen)) / "final.pt"
    return DaggerResult(run.dir, run.demos, history, resumed_from, policy)


def _rounds(run: _Run, cfg: DaggerConfig, state: dict[str, Any], tracker: Tracker) -> None:
    """The rounds `state` has not done: each collects, trains, evaluates, saves `state` and
    logs its numbers to `tracker` (as round/<key>, at step = the round)."""
    total_labels = sum(int(h["round_labels"]) for h in state["history"])
    for round_index in range(int(state["rounds_done"]) + 1, cfg.rounds + 1):
        if round_index == 0 and cfg.dataset:
            if run.round_stats(0)[0] == 0:
                run.import_dataset(cfg.dataset)
            labels, rollouts, _ = run.round_stats(0)
            entry: dict[str, Any] = {
                "round": 0,
                "method": "import",
                "beta": 1.0,
                "rollouts": rollouts,
                "round_labels": labels,
                "interventions": 0,
                "noise_std": None,
            }
        else:
            entry = run.collect(round_index, state)
        if entry["round_labels"] == 0:
            # HG-DAgger whose learner never drifted: nothing to add, the learner stands.
            shutil.copytree(
                run.round_dir(round_index - 1), run.round_dir(round_index), dirs_exist_ok=True
            )
        else:
            run.train_round(round_index)
        total_labels += int(entry["round_labels"])
        entry["labels"] = total_labels
        entry.update(run.evaluate(round_index))
        if cfg.validation_episodes:
            entry["validation"] = run.validate(round_index)
            entry.update(_selection([*state["history"], entry]))
        state["history"].append(entry)
        state["rounds_done"] = round_index
        run.save_state(state)
        tracker.log(scalars(entry, "round/", skip=("round",)), round_index)


_SCORES = ("success_rate", "ci_low", "ci_high", "mean_return", "normalized_return")


def _selection(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The best round so far by validation (the later one on ties) and its held-out scores,
    under "selected_round" and "selected"."""
    best = max(history, key=lambda h: (h["validation"], h["round"]))
    return {
        "selected_round": best["round"],
        "selected": {k: best[k] for k in _SCORES if k in best},
    }


__all__ = [
    "METHODS",
    "SCHEDULES",
    "DaggerConfig",
    "DaggerResult",
    "beta",
    "round_training",
    "run_dagger",
]
