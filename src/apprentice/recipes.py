"""Shipped training recipes: a policy, its training settings, the data they expect, and what
they reached when measured.

A recipe is the answer to "what should I train on this task?" that a practitioner can run
as is: `apprentice train --recipe NAME --dataset FILE --out DIR`. Each names the data it was
measured on (the command that makes it), the budget it took on the machine that measured
it, and its result: successes per training seed on 50 held-out initial states, with the one
command that reproduces the row (`benchmarks/bench_recipes.py`, or the benchmark named).

A flag given beside `--recipe` overrides that recipe's value; everything else comes from
the recipe. `check_dataset` says, before training starts, what a dataset lacks for a recipe
(its task, observation keys, cameras, enough demos).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apprentice.algos.config import TrainConfig
from apprentice.collect.oracle import CollectConfig
from apprentice.errors import ApprenticeError
from apprentice.evaluate.metrics import success_rate
from apprentice.policies.base import PolicyConfig
from apprentice.policies.encoders import CameraConfig
from apprentice.policies.flow import FlowConfig
from apprentice.policies.rnn import RNNConfig


@dataclass(frozen=True)
class Measured:
    """A recipe's result: successes per training seed out of `episodes` held-out episodes
    each, and how it was obtained."""

    successes: tuple[int, ...]
    """Successes of each training seed."""
    episodes: int
    """Held-out evaluation episodes per seed (initial-state seeds >= 10^9)."""
    command: str
    """The single command that reproduces the row."""
    train_time: str
    """Training time per seed and where (machine, threads, load)."""
    mean_max_reward: float | None = None
    """Push-T's published score: the mean over episodes of each episode's best coverage."""
    note: str = ""
    """What else the reader needs: data differences, the checkpoint scored."""

    @property
    def summary(self) -> str:
        k, n = sum(self.successes), self.episodes * len(self.successes)
        rate = success_rate(k, n)
        text = (
            f"{k}/{n} = {100 * rate.rate:.1f}% ({100 * rate.ci_low:.1f}-{100 * rate.ci_high:.1f}%)"
            f"; seeds {'/'.join(map(str, self.successes))}"
        )
        if self.mean_max_reward is not None:
            text += f"; mean best reward {self.mean_max_reward:.3f}"
        return text

    @property
    def short(self) -> str:
        """Pooled successes and rate (the best reward too where recorded), for a table cell."""
        k, n = sum(self.successes), self.episodes * len(self.successes)
        text = f"{k}/{n} ({100 * k / n:.1f}%)"
        if self.mean_max_reward is not None:
            text += f", reward {self.mean_max_reward:.2f}"
        return text

    @property
    def spread(self) -> float:
        """Points between the best and the worst training seed."""
        return 100 * (max(self.successes) - min(self.successes)) / self.episodes


@dataclass(frozen=True)
class PretrainStage:
    """A stage before the policy: `apprentice pretrain-encoder` on each of the policy's cameras,
    on the run's own dataset; the policy then starts from those encoders (frozen, on cached
    features, where its camera settings say `freeze_encoder`)."""

    steps: int = 3000
    """Pretraining steps per camera."""
    batch_size: int = 32
    """Frame triplets (frames with a target key) per step."""
    target_key: str | None = None
    """Pretrain by regressing this low-dim observation of the demos (an object's pose, recorded
    in simulation) instead of the autoencoder; the policy still reads only the camera."""


@dataclass(frozen=True)
class Recipe:
    """A named policy and training config for one task, with the data it expects."""

    name: str
    summary: str
    """One line: what it trains, from what."""
    policy: PolicyConfig
    train: dict[str, Any]
    """TrainConfig settings besides dataset, out and policy (unset ones keep their default)."""
    collect: CollectConfig
    """How the data the recipe was measured on is made (`apprentice collect`); fewer demos
    than its n and the recipe refuses a dataset."""
    target: str
    """The success the recipe is meant to reach."""
    peer: str = ""
    """What the peers publish on the task, for comparison."""
    measured: Measured | None = None
    """None: not measured yet (`apprentice recipes` says so)."""
    extras: tuple[str, ...] = field(default=())
    """Packages beyond the core the task needs (`pip install apprentice[...]`)."""
    pretrain: PretrainStage | None = None
    """Encoder pretraining before the policy (camera recipes); None: none."""

    @property
    def task(self) -> str:
        """The registered task the dataset must have been recorded on."""
        return self.collect.task

    @property
    def min_demos(self) -> int:
        return self.collect.n

    @property
    def data(self) -> str:
        """The command that makes the data the recipe expects."""
        c, base = self.collect, CollectConfig()
        flags = [f"--task {c.task}", f"--n {c.n}"]
        if c.action_noise != base.action_noise:
            flags.append(f"--action-noise {c.action_noise}")
        if c.camera:
            flags.append("--camera")
        return f"apprentice collect {' '.join(flags)} --out demos.hdf5"

    def config(self, **overrides: Any) -> TrainConfig:
        """The recipe's TrainConfig; `overrides` (dataset, out, any field) replace its values."""
        return TrainConfig(**{"policy": self.policy, **self.train, **overrides})

    def run_stages(self, config: TrainConfig) -> TrainConfig:
        """Run the stages before training (encoder pretraining) for the run `config`, and
        return it with their outputs in place: each camera's encoder file, written under
        `config.out`/encoders and reused when already there (a resumed run does not pretrain
        again). A policy given encoder files of its own skips the stage."""
        camera = config.policy.camera
        if self.pretrain is None or not config.policy.image_keys or camera.encoder_checkpoint:
            return config
        from apprentice.algos.pretrain import PretrainEncoderConfig, pretrain_encoder
        from apprentice.console import console
        from apprentice.policies.encoder_file import EncoderFile

        camera_args = encoder_camera_args(camera)
        files = []
        for key in config.policy.image_keys:
            out = Path(config.out) / "encoders" / f"{key}.pt"
            if config.overwrite:
                out.unlink(missing_ok=True)
            if out.exists():
                EncoderFile.load(out)  # a damaged file is an error naming it, not a silent redo
            else:
                if config.progress:
                    console.print(
                        f"recipe {self.name}: pretraining the {key} encoder "
                        f"({self.pretrain.steps} steps) -> {out}"
                    )
                pretrain_encoder(
                    PretrainEncoderConfig(
                        dataset=config.dataset,
                        image_key=key,
                        out=str(out),
                        camera_args=camera_args,
                        steps=self.pretrain.steps,
                        batch_size=self.pretrain.batch_size,
                        target_key=self.pretrain.target_key,
                        seed=config.seed,
                        threads=config.threads,
                    )
                )
            files.append(str(out))
        camera = dataclasses.replace(camera, encoder_checkpoint=",".join(files))
        policy = dataclasses.replace(config.policy, camera=camera)
        return dataclasses.replace(config, policy=policy)


def encoder_camera_args(camera: CameraConfig) -> tuple[str, ...]:
    """`camera`'s encoder settings that differ from the defaults, as the key=value items
    `pretrain-encoder --camera-args` reads back (values in JSON, so true stays a bool); its
    two policy settings (encoder_checkpoint, freeze_encoder) left out."""
    base = CameraConfig()
    return tuple(
        f"{f.name}={json.dumps(getattr(camera, f.name))}"
        for f in dataclasses.fields(camera)
        if f.name not in ("encoder_checkpoint", "freeze_encoder")
        and getattr(camera, f.name) != getattr(base, f.name)
    )


_LOW_DIM_RNN = RNNConfig(hidden_dim=128)
"""BC-RNN, LSTM 2x128, sequence 10, deterministic head: the low-dim recipe of the built-in
tasks (benchmarks/results/quickstart-and-quality.md)."""

_LOW_DIM_TRAIN: dict[str, Any] = {
    "epochs": 60,
    "steps_per_epoch": 100,
    "batch_size": 100,
    "lr": 1e-3,
    "eval_every": 10,
    "eval_episodes": 20,
}
"""6000 steps of 100 windows, the best of six 20-rollout checks kept."""

_PROPRIO = ("eef_pos", "eef_quat", "gripper_qpos")
_CAMERAS = ("agentview_image", "eye_in_hand_image")

_PUSHT_TRAIN: dict[str, Any] = {
    "epochs": 50,
    "steps_per_epoch": 1000,
    "batch_size": 256,
    "lr": 3e-4,
    "lr_schedule": "cosine",
    "warmup_steps": 1000,
    "eval_every": 10,
    "eval_episodes": 20,
}
"""The flow MLP's Push-T training: 50,000 steps of batch 256, 1,000 warmup steps, cosine."""

_CAMERA_RNN = RNNConfig(
    obs_keys=_PROPRIO, image_keys=_CAMERAS, camera=CameraConfig(freeze_encoder=True)
)
"""BC-RNN (LSTM 2x400) from both cameras + proprio, on the features of frozen pretrained
encoders (the recipe's pretraining stage writes them): benchmarks/results/recipes.md."""
_CAMERA_TRAIN: dict[str, Any] = {"epochs": 60, "steps_per_epoch": 100, "batch_size": 64, "lr": 1e-3}

_ROBOSUITE_RNN = RNNConfig()  # LSTM 2x400, as robomimic's BC-RNN
_ROBOSUITE_TRAIN: dict[str, Any] = {
    "epochs": 20,
    "steps_per_epoch": 100,
    "batch_size": 100,
    "lr": 1e-3,
    "precision": "bf16",
    "eval_every": 0,
}


def _bench(name: str) -> str:
    return (
        f".venv/bin/python benchmarks/bench_recipes.py --recipe {name} --seeds 0 1 2 --episodes 50"
    )


def _head_to_head(successes: tuple[int, ...]) -> Measured:
    """A robosuite row measured by the head-to-head with robomimic (results/peers.md)."""
    return Measured(
        successes,
        50,
        "python3 benchmarks/robomimic_h2h/run.py --epochs 20 --save-every 5 --tasks "
        "Lift PickPlaceCan NutAssemblySquare",
        "2,000 steps, 1 thread, bf16; minutes a seed (timings: results/peers.md)",
        note="the head-to-head with robomimic trained these settings through its own "
        "launcher and scored final.pt; with eval_every=0 a run folder's best.pt is the "
        "lowest validation loss",
    )


def _collect(task: str, n: int, noise: float = 0.0, *, camera: bool = False) -> CollectConfig:
    return CollectConfig(task=task, n=n, action_noise=noise, camera=camera)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "lift-lowdim",
            "BC-RNN (LSTM 2x128) on lift's low-dim states",
            _LOW_DIM_RNN,
            _LOW_DIM_TRAIN,
            _collect("lift", 200, 0.1),
            ">= 98%",
            measured=Measured(
                (50, 50, 50),
                50,
                _bench("lift-lowdim"),
                "237-382 s a seed (1 thread, 2-core CPU shared with other runs)",
            ),
        ),
        Recipe(
            "stack-lowdim",
            "BC-RNN (LSTM 2x128) on stack's low-dim states, 1000 demos",
            _LOW_DIM_RNN,
            _LOW_DIM_TRAIN,
            _collect("stack", 1000, 0.1),
            ">= 90%",
            measured=Measured(
                (48, 48, 45),
                50,
                _bench("stack-lowdim"),
                "144-445 s a seed (1 thread, 2-core CPU shared with other runs)",
            ),
        ),
        Recipe(
            "pick_place-lowdim",
            "BC-RNN (LSTM 2x128) on pick_place's low-dim states, 1000 demos",
            _LOW_DIM_RNN,
            _LOW_DIM_TRAIN,
            _collect("pick_place", 1000, 0.1),
            ">= 95%",
            measured=Measured(
                (50, 49, 49),
                50,
                ".venv/bin/python benchmarks/bench_generate.py --phase policy --tasks pick_place",
                "170-570 s a seed (1 thread, 3-5 jobs on the 2-core CPU)",
                note="measured by the generation benchmark's '1000 oracle demos' arm, with this "
                "recipe's data and settings, before recipes existed (not through --recipe)",
            ),
        ),
        Recipe(
            "peg_insert-lowdim",
            "BC-RNN (LSTM 2x128) on peg_insert's low-dim states",
            _LOW_DIM_RNN,
            _LOW_DIM_TRAIN,
            # The oracle fails most attempts at noise 0.1 (83 of 610): 0.03 keeps it usable.
            _collect("peg_insert", 200, 0.03),
            ">= 98%",
            measured=Measured(
                (50, 50, 50),
                50,
                _bench("peg_insert-lowdim"),
                "251-332 s a seed (1 thread, 2-core CPU shared with other runs)",
            ),
        ),
        Recipe(
            "pusht-state",
            "Flow matching (MLP velocity network 3x1024, To 2, Tp 16, Ta 8, 10 Euler steps) on "
            "Push-T's state, 1000 demos",
            # 10 Euler steps, not the default 4: on a 200-demo run (seed 0, 50 episodes) 4, 10
            # and 20 steps scored 8, 14 and 12 successes, best reward 0.62, 0.68 and 0.74.
            FlowConfig(denoiser="mlp", inference_steps=10),
            _PUSHT_TRAIN,
            # 200 demos and 30,000 steps gave 33/150 (22%), best reward 0.653, still rising at
            # the last epoch (benchmarks/results/recipes.md): more data, more steps, a decay.
            _collect("pusht", 1000),
            "best reward >= 0.90, success >= 50%",
            peer="Diffusion Policy: best reward 0.95",
            extras=("pusht",),
            measured=Measured(
                (26, 26, 25),
                50,
                _bench("pusht-state"),
                "3557-3597 s a seed (3 seeds side by side on the 2-core CPU)",
                mean_max_reward=0.957,
            ),
        ),
        Recipe(
            "pusht-image",
            "Flow matching (MLP velocity network, as pusht-state) on Push-T's 96x96 top-down "
            "camera + pusher position; the camera's encoder pretrained to regress the T's "
            "corners recorded with the demos, then frozen, 1000 demos",
            FlowConfig(
                denoiser="mlp",
                inference_steps=10,
                obs_keys=("agent_pos",),
                image_keys=("image",),
                # No shift: the encoder regresses where the T is, to a few pixels.
                camera=CameraConfig(random_shift=0, freeze_encoder=True),
            ),
            {**_PUSHT_TRAIN, "epochs": 30},
            _collect("pusht", 1000, camera=True),
            "best reward >= 0.80",
            peer="Diffusion Policy (image): best reward 0.91",
            extras=("pusht",),
            pretrain=PretrainStage(steps=4000, target_key="keypoints"),
            measured=Measured(
                (14, 17, 14),
                50,
                _bench("pusht-image"),
                "2811-2852 s a seed, about 330 s of it the encoder pretraining (3 seeds side by "
                "side on the 2-core CPU)",
                mean_max_reward=0.886,
                note="the autoencoder's features locate the T to 36 of 512 units and its first "
                "recipe read best reward 0.12-0.14 after 10,000 steps; regressing the T's "
                "corners locates it to 2 (benchmarks/bench_encoder_probe.py)",
            ),
        ),
        Recipe(
            "lift-image",
            "BC-RNN (LSTM 2x400) on lift from two 84x84 cameras + proprio, no object pose; each "
            "camera's encoder pretrained on the demos' frames (spatial autoencoder), then frozen",
            _CAMERA_RNN,
            _CAMERA_TRAIN,
            _collect("lift", 200, 0.05, camera=True),
            ">= 95%",
            pretrain=PretrainStage(),
            measured=Measured(
                (50, 50, 50),
                50,
                ".venv/bin/python benchmarks/bench_encoder_pretraining.py --demos 200 --seeds 0 1 "
                "2 --arms pretrained --episodes 50 --epochs 60 --batch 64 --lr 1e-3",
                "pretraining 781-2,974 s and training 461-1,615 s a seed (both cameras; 1 "
                "thread, the 2-core CPU shared with other runs)",
                note="measured by the encoder-pretraining benchmark's pretrained arm at 200 "
                "demos, whose settings are this recipe's (3,000 pretraining steps of batch 32 "
                "per camera, seeded as the run); its final.pt scored, not through --recipe",
            ),
        ),
        Recipe(
            "stack-image",
            "BC-RNN (LSTM 2x400) on stack from two 84x84 cameras + proprio, no object pose; each "
            "camera's encoder pretrained to regress the cubes' recorded state from its frames, "
            "then frozen, 1000 demos",
            _CAMERA_RNN,
            _CAMERA_TRAIN,
            _collect("stack", 1000, 0.1, camera=True),
            ">= 80%",
            pretrain=PretrainStage(steps=4000, target_key="object"),
            measured=Measured(
                (50, 49, 50),
                50,
                _bench("stack-image"),
                "1053-1368 s a seed, pretraining included (seeds 0 and 1 side by side on the "
                "2-core CPU, seed 2 alone on 2 threads)",
                note="the encoders regress the demos' recorded `object` state (simulation "
                "only) while pretraining; the policy reads only the cameras and proprio. "
                "The autoencoder-pretrained version reached 7/100",
            ),
        ),
        Recipe(
            "robosuite-lift-lowdim",
            "BC-RNN (LSTM 2x400, bf16) on robosuite Lift's low-dim states",
            _ROBOSUITE_RNN,
            _ROBOSUITE_TRAIN,
            _collect("Lift", 200, 0.05),
            ">= 98%",
            peer="robomimic BC-RNN: 100%",
            measured=_head_to_head((50, 50, 50)),
            extras=("robosuite",),
        ),
        Recipe(
            "robosuite-can-lowdim",
            "BC-RNN (LSTM 2x400, bf16) on robosuite PickPlaceCan's low-dim states",
            _ROBOSUITE_RNN,
            _ROBOSUITE_TRAIN,
            _collect("PickPlaceCan", 200, 0.05),
            ">= 98%",
            peer="robomimic BC-RNN: 100%",
            measured=_head_to_head((50, 49, 50)),
            extras=("robosuite",),
        ),
        Recipe(
            "robosuite-square-lowdim",
            "BC-RNN (LSTM 2x400, bf16) on robosuite NutAssemblySquare's low-dim states, "
            "20,000 steps",
            _ROBOSUITE_RNN,
            {**_ROBOSUITE_TRAIN, "epochs": 200},
            _collect("NutAssemblySquare", 200, 0.05),
            ">= 80%",
            peer="robomimic BC-RNN: 84%",
            measured=Measured(
                (31, 42),
                50,
                ".venv-robosuite/bin/python benchmarks/bench_recipes.py --recipe "
                "robosuite-square-lowdim --seeds 0 1 2 --episodes 50",
                "about 47 min a seed of training (2 seeds side by side on the 2-core CPU with "
                "other jobs; 4,478-4,491 s wall including a 28-minute pause)",
                note="2 of the 3 seeds (seed 2 not run: session time); not met. At 2,000 steps "
                "(the robomimic head-to-head) the same recipe reached 51/150",
            ),
            extras=("robosuite",),
        ),
    )
}


def recipe_names() -> list[str]:
    return list(RECIPES)


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`; an unknown name is an error that lists the recipes."""
    if name not in RECIPES:
        raise ApprenticeError(
            f"unknown recipe {name!r}; the recipes are: {', '.join(RECIPES)} "
            "(`apprentice recipes` shows what each trains and reaches)"
        )
    return RECIPES[name]


def check_dataset(recipe: Recipe, path: str | Path, policy: PolicyConfig | None = None) -> None:
    """Refuse, in one error naming everything missing, a dataset that is not what `recipe`
    expects: another task, too few demos, absent observation keys or cameras, no actions.

    `policy` is the one the run trains, whose keys and cameras the dataset must hold: the
    recipe's unless flags beside `--recipe` changed it (None: the recipe's).
    """
    from apprentice.data.source import open_source

    path = Path(path)
    if not path.exists():
        raise ApprenticeError(f"dataset {path} does not exist")
    with open_source(path) as source:
        task = source.env_args.get("env_name")
        demos = len(source.demo_names)
        keys, images, action_dim = set(source.obs_keys), set(source.image_keys), source.action_dim
    policy = recipe.policy if policy is None else policy
    missing = []
    if task != recipe.task:
        missing.append(f"it was recorded on task {task!r}, the recipe is for {recipe.task!r}")
    if demos < recipe.min_demos:
        missing.append(f"it has {demos} demos, the recipe needs at least {recipe.min_demos}")
    if action_dim == 0:
        missing.append("it has no actions (label them with `apprentice label-actions`)")
    absent_keys = [k for k in policy.obs_keys if k not in keys]
    if absent_keys:
        missing.append(f"observation key(s) {', '.join(absent_keys)} are absent")
    target = recipe.pretrain.target_key if recipe.pretrain else None
    if target is not None and policy.image_keys and target not in keys:
        missing.append(f"observation key {target} (the encoder pretraining's target) is absent")
    absent_cameras = [k for k in policy.image_keys if k not in images]
    if absent_cameras:
        missing.append(
            f"camera(s) {', '.join(absent_cameras)} are absent (record them with --camera)"
        )
    if missing:
        raise ApprenticeError(
            f"dataset {path} does not fit recipe {recipe.name!r}: {'; '.join(missing)}. "
            f"The recipe expects data made by: {recipe.data}"
        )


def describe(recipe: Recipe) -> list[tuple[str, str]]:
    """(name, value) lines of one recipe, for `apprentice recipes NAME`."""
    settings = ", ".join(f"{k}={v}" for k, v in recipe.train.items())
    lines = [
        ("recipe", recipe.name),
        ("trains", recipe.summary),
        ("task", recipe.task + (f" (extra: {', '.join(recipe.extras)})" if recipe.extras else "")),
        ("policy", f"{recipe.policy.name}: {_policy_settings(recipe.policy)}"),
        ("training", settings),
        *(
            [
                (
                    "stages",
                    f"first `apprentice pretrain-encoder` on each camera ({recipe.pretrain.steps} "
                    f"steps, batch {recipe.pretrain.batch_size}"
                    + (
                        f", regressing {recipe.pretrain.target_key}"
                        if recipe.pretrain.target_key
                        else ""
                    )
                    + ") into OUT/encoders; the policy starts from those encoders",
                )
            ]
            if recipe.pretrain
            else []
        ),
        ("data", f"{recipe.data} (at least {recipe.min_demos} demos)"),
        ("target", recipe.target + (f" ({recipe.peer})" if recipe.peer else "")),
    ]
    m = recipe.measured
    if m is None:
        lines.append(("measured", "not yet"))
    else:
        lines += [
            ("measured", m.summary),
            ("train time", m.train_time),
            ("reproduce", m.command),
        ]
        if m.note:
            lines.append(("note", m.note))
    return lines


def _policy_settings(policy: PolicyConfig) -> str:
    """The policy's settings that differ from its kind's defaults."""
    base = type(policy)().to_dict()
    changed = {k: v for k, v in policy.to_dict().items() if base.get(k) != v}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "its defaults"
