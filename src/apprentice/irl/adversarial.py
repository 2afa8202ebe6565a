"""GAIL, AIRL and GAIfO: a stable-baselines3 generator against a PyTorch discriminator.

A run alternates rounds. In each, the generator (PPO by default, SAC with rl_algo=sac) takes
`rollout_steps` environment steps and its update; then the discriminator takes `disc_updates`
minibatch steps on that rollout against the expert demos (`discriminators.py` has the
networks, the loss and the rewards).

Where the reward comes from. The env's reward is replaced *in the VecEnv*, by
`LearnedRewardVecEnv`, below `VecNormalize`: each step's reward is the current
discriminator's, computed from the raw (s, a, s') as the step happens, exactly as imitation's
`RewardVecEnvWrapper` does. The alternative, relabelling PPO's rollout buffer in a callback,
has to undo VecNormalize's observation scaling and reward normalization that the buffer
already holds; the wrapper sees raw observations and lets VecNormalize normalize the learned
reward as it would any reward, and the same code serves SAC. The cost: SAC's replay buffer
keeps the reward of the discriminator that was current when the step was taken (stale
rewards, as in imitation); PPO discards its buffer every round, so for PPO nothing is stale.
The same wrapper records the rollout's transitions, which the discriminator then trains on,
and the true env returns stay visible through each env's `Monitor` (logged as train_return).

Normalization. The generator's policy reads VecNormalize's normalized observations; the
discriminator normalizes its inputs with the expert demos' fixed statistics. AIRL's
log pi(a|s) on expert data passes the expert's observations through the same VecNormalize
statistics the generator reads, so expert and generator are scored by one policy on one scale.
Actions stay in the env's [-1, 1] unless `normalize_actions` moves the generator into the
demos' units (a - mean) / std (`envs.ActionNormalized`); the demo actions that the
discriminator, AIRL's log pi and the BC steps read are then in the same units.

A cloned start (`bc_steps`, PPO only). The generator can begin as a clone of the demos:
BC pretraining of SB3's actor with its log std frozen, and optionally a decaying BC term after
each PPO update (`bc_weight`, `bc_decay`): the learner and both steps are the hybrid's
(`hybrid.py`), with the discriminator's reward in place of the task's. VecNormalize's
observation statistics are then pinned to the demos' (`FixedStats`), since running ones
would drift as the generator leaves the demos and undo the clone. The clone is scored at 0
environment steps, before the first round. `critic_warmup_rounds` holds the cloned actor for
the first rounds while PPO's critic (and the discriminator) learn: a fresh critic's
advantages are noise, and PPO, which normalizes them per batch, would take full-size steps
along that noise away from the clone.

Divergence. A NaN discriminator loss, or a discriminator right on >= 99% of expert and
generator samples for `divergence_rounds` rounds in a row while its mean D on the generator's
data is below 0.01 (the generator's reward has collapsed: it gets no signal), stops the run
with an ApprenticeError naming the round and the numbers, rather than training on silently.

Run folder (resumable per round):

    config.json  metrics.jsonl  tb/       config, one line per round, TensorBoard
    state.json                            rounds done, env steps, evaluation history
    generator.zip  vecnormalize.pkl       the SB3 model and its observation statistics
    action_stats.json                     normalize_actions only: the demo units it acts in
    discriminator.pt                      the discriminator and its optimizer
    replay_buffer.pkl                     SAC only
    policy.zip  reward.pt                 the final policy, and the learned reward
                                          (AIRL: g(s); `discriminators.load_reward`)
    report.png                            return against env steps, discriminator stats
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.running_mean_std import RunningMeanStd

from apprentice.algos.run_folder import RunLog, prepare_run_dir, write_json
from apprentice.data.normalize import floored_mean_std
from apprentice.errors import ApprenticeError
from apprentice.irl.common import IRLConfig, IRLResult
from apprentice.irl.diagnostics import DivergenceMonitor, write_report_png
from apprentice.irl.discriminators import (
    Batch,
    Discriminator,
    discriminator_loss,
    generator_reward,
    save_reward,
)
from apprentice.irl.envs import (
    Act,
    ActionNormalized,
    ActionStats,
    IRLEnv,
    Transitions,
    check_demos_fit_env,
    evaluate_policy,
    expert_reference,
    flatten_obs,
    load_demo_transitions,
    make_irl_env,
)
from apprentice.irl.hybrid import PPOWithBC, demo_action_mse, pretrain_bc
from apprentice.irl.reward_env import LearnedRewardVecEnv, Rollout
from apprentice.overrides import parse_overrides

ADVERSARIAL = ("gail", "airl", "gaifo")
_RUN_FILES = (
    "state.json",
    "generator.zip",
    "vecnormalize.pkl",
    "discriminator.pt",
    "replay_buffer.pkl",
    "policy.zip",
    "reward.pt",
    "report.png",
    "action_stats.json",
)


class FixedStats(RunningMeanStd):
    """VecNormalize statistics that no longer update (a cloned generator's; `bc_steps`)."""

    def update(self, arr: np.ndarray) -> None:
        return


@dataclass(frozen=True)
class AdversarialConfig:
    """GAIL / AIRL / GAIfO settings, set with `--algo-args key=value`."""

    rollout_steps: int = 2048
    """Environment steps per round (all envs together): one generator rollout and update."""
    n_envs: int = 4
    """Parallel environments of the generator (in one process)."""
    policy_hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of the generator's policy and value networks."""
    lr: float = 3e-4
    """Generator learning rate."""
    ppo_epochs: int = 10
    """PPO epochs over each rollout."""
    ppo_batch: int = 64
    """PPO minibatch size."""
    ent_coef: float = 0.0
    """PPO entropy bonus."""
    gamma: float = 0.99
    """Discount of the generator (and AIRL's shaping term)."""
    sac_learning_starts: int = 1000
    """SAC: random steps before its first update."""
    disc_hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of the discriminator (AIRL: of g and of h)."""
    disc_lr: float = 3e-4
    """Discriminator (Adam) learning rate."""
    disc_updates: int = 4
    """Discriminator minibatch steps per round."""
    disc_batch: int = 256
    """Expert and generator transitions per discriminator step (each)."""
    grad_penalty: float = 0.0
    """Gradient-penalty weight on the discriminator (GAIL, GAIfO); 0 = none, 10 is usual."""
    reward: str = "positive"
    """GAIL/GAIfO reward: positive = -log(1-D); logit = log D - log(1-D) (AIRL: always logit)."""
    state_only: bool = True
    """AIRL: g(s) rather than g(s, a): the reward that transfers (Fu et al. 2018, sec. 5)."""
    normalize_reward: bool = True
    """Normalize the learned reward by its running return scale (VecNormalize)."""
    obs_keys: tuple[str, ...] = ()
    """Observation keys to learn from; empty = the task's low-dim keys."""
    divergence_rounds: int = 10
    """Stop when D is >= 99% accurate and the generator's mean D < 0.01 this many rounds."""
    bc_steps: int = 0
    """PPO generator: BC pretraining steps on the demos before the first round (0 = none)."""
    bc_weight: float = 0.0
    """PPO generator: weight of a BC term after each update, decaying by bc_decay (0 = none)."""
    bc_decay: float = 0.95
    """Per-update decay of bc_weight (as DAPG's lambda1)."""
    bc_lr: float = 1e-3
    """Adam learning rate of BC pretraining."""
    bc_batch: int = 256
    """Demo transitions per BC step."""
    log_std_init: float = 0.0
    """Initial log std of the PPO generator's Gaussian (-1 suits a cloned start)."""
    critic_warmup_rounds: int = 0
    """Cloned start: the first rounds train PPO's critic (and D) with the actor held, so the
    clone's first policy steps follow advantages from a critic that has learned its values."""
    normalize_actions: bool = False
    """The generator acts, and the discriminator reads actions, in the demos' units
    (a - mean) / std (`envs.ActionNormalized`): for tasks whose demo actions are small
    against their [-1, 1] range, such as lift's."""

    @property
    def uses_bc(self) -> bool:
        """A BC start or BC term: the generator's observation statistics are then fixed."""
        return self.bc_steps > 0 or self.bc_weight > 0

    def __post_init__(self) -> None:
        checks = [
            (self.rollout_steps >= self.n_envs >= 1, "rollout_steps >= n_envs >= 1"),
            (self.disc_updates >= 1 and self.disc_batch >= 1, "disc_updates, disc_batch >= 1"),
            (self.reward in ("positive", "logit"), "reward is positive or logit"),
            (self.divergence_rounds >= 1, "divergence_rounds >= 1"),
            (self.disc_lr > 0 and self.lr > 0, "learning rates > 0"),
            (self.grad_penalty >= 0, "grad_penalty >= 0"),
            (self.bc_steps >= 0 and self.bc_batch >= 1, "bc_steps >= 0 and bc_batch >= 1"),
            (self.bc_weight >= 0 and 0 < self.bc_decay <= 1, "bc_weight >= 0, 0 < bc_decay <= 1"),
            (self.bc_lr > 0, "bc_lr > 0"),
            (isinstance(self.normalize_actions, bool), "normalize_actions is true or false"),
            (self.critic_warmup_rounds >= 0, "critic_warmup_rounds >= 0"),
            (
                not self.critic_warmup_rounds or self.bc_steps > 0,
                "bc_steps > 0 with critic_warmup_rounds (it warms the critic up to a clone)",
            ),
        ]
        for ok, what in checks:
            if not ok:
                raise ApprenticeError(f"irl --algo-args: need {what}")

    @classmethod
    def from_irl(cls, cfg: IRLConfig) -> AdversarialConfig:
        """From `cfg.algo_args` (values read as JSON: 4, 1e-3, [64,64], true)."""
        values = parse_overrides(cfg.algo_args, "irl --algo-args entry")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ApprenticeError(
                f"irl --algo-args: unknown key(s) {', '.join(unknown)} for {cfg.algo}; "
                f"known: {', '.join(known)}"
            )
        for key, value in values.items():
            if isinstance(value, list):
                values[key] = tuple(value)
            elif isinstance(known[key].default, tuple) and isinstance(value, str):
                values[key] = tuple(v for v in value.split(",") if v)
        return cls(**values)


class _Run:
    """One adversarial run: demos, envs, generator, discriminator, folder."""

    def __init__(self, cfg: IRLConfig, acfg: AdversarialConfig) -> None:
        self.cfg, self.acfg = cfg, acfg
        self.dir = Path(cfg.out)
        self.rl_algo = _generator_algo(cfg.rl_algo)
        self.eval_env: IRLEnv = make_irl_env(cfg.task, cfg.seed, acfg.obs_keys or None)
        self.keys = self.eval_env.obs_keys
        needs = {"gaifo": "gaifo (its D(s, s'))", "airl": "airl (its shaping term h(s'))"}
        self.demos: Transitions = load_demo_transitions(
            cfg.demos, self.keys, task_name=cfg.task, needs=needs.get(cfg.algo, "")
        )
        check_demos_fit_env(
            self.demos, self.eval_env, cfg.demos, algo=cfg.algo, needs_actions=cfg.algo != "gaifo"
        )
        if acfg.uses_bc and (self.rl_algo != "ppo" or cfg.algo == "gaifo"):
            raise ApprenticeError(
                f"irl --algo {cfg.algo}: bc_steps/bc_weight clone the demo actions into a PPO "
                f"generator; not offered with --rl-algo {self.rl_algo} or gaifo's state-only demos"
            )
        self.action_stats: ActionStats | None = None
        if acfg.normalize_actions:
            if cfg.algo == "gaifo":
                raise ApprenticeError(
                    "irl --algo gaifo: normalize_actions takes its units from the demos' "
                    "actions, and gaifo learns from states only"
                )
            self.action_stats = ActionStats.fit(self.demos.actions)
            normalized = self.action_stats.normalize(self.demos.actions)
            self.demos = dataclasses.replace(self.demos, actions=normalized)
        self.reference = expert_reference(cfg.demos)
        self.expert_obs = flatten_obs(self.demos.obs, self.keys)  # (N, Ds)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng([cfg.seed, 5])
        self.disc = Discriminator(
            cfg.algo,
            self.expert_obs.mean(0),
            self.expert_obs.std(0),
            int(self.eval_env.action_space.shape[0]),
            acfg.disc_hidden,
            acfg.gamma,
            acfg.state_only,
        )
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=acfg.disc_lr)
        self.reward_env = LearnedRewardVecEnv(self._make_base_venv(), self.keys, self._reward)
        self.model: Any = None
        self.venv: Any = None

    # ---- generator ---------------------------------------------------------------------------

    def _make_base_venv(self) -> Any:
        from stable_baselines3.common.monitor import Monitor
        from stable_baselines3.common.vec_env import DummyVecEnv

        def make(i: int) -> Any:
            env: Any = make_irl_env(self.cfg.task, self.cfg.seed * 1000 + i, self.keys)
            if self.action_stats is not None:
                env = ActionNormalized(env, self.action_stats)
            return Monitor(env)

        def factory(i: int) -> Any:
            return lambda: make(i)

        return DummyVecEnv([factory(i) for i in range(self.acfg.n_envs)])

    def build_generator(self, resume: bool) -> None:
        from stable_baselines3 import PPO, SAC
        from stable_baselines3.common.vec_env import VecNormalize

        a = self.acfg
        ppo_cls: Any = PPOWithBC if a.uses_bc else PPO
        if resume:
            self.venv = VecNormalize.load(str(self.dir / "vecnormalize.pkl"), self.reward_env)
            cls: Any = ppo_cls if self.rl_algo == "ppo" else SAC
            self.model = cls.load(self.dir / "generator.zip", env=self.venv, device="cpu")
            if self.rl_algo == "sac" and (self.dir / "replay_buffer.pkl").exists():
                self.model.load_replay_buffer(self.dir / "replay_buffer.pkl")
            self._setup_bc()
            return
        self.venv = VecNormalize(
            self.reward_env, norm_obs=True, norm_reward=a.normalize_reward, gamma=a.gamma
        )
        if a.uses_bc:
            self._fix_obs_stats()
        common: dict[str, Any] = {
            "learning_rate": a.lr,
            "gamma": a.gamma,
            "seed": self.cfg.seed,
            "device": "cpu",
            "policy_kwargs": {"net_arch": list(a.policy_hidden)},
            "verbose": 0,
        }
        if self.rl_algo == "ppo":
            n_steps = a.rollout_steps // a.n_envs
            common["policy_kwargs"]["log_std_init"] = a.log_std_init
            self.model = ppo_cls(
                "MultiInputPolicy",
                self.venv,
                n_steps=n_steps,
                batch_size=min(a.ppo_batch, n_steps * a.n_envs),
                n_epochs=a.ppo_epochs,
                ent_coef=a.ent_coef,
                **common,
            )
        else:
            self.model = SAC(
                "MultiInputPolicy",
                self.venv,
                learning_starts=a.sac_learning_starts,
                buffer_size=max(self.cfg.env_steps, 1000),
                **common,
            )
        self._setup_bc()

    def _fix_obs_stats(self) -> None:
        """Pin VecNormalize's observation statistics to the demos' (std floored as the data
        layer's): running statistics would drift as the generator leaves the demos' states
        and undo a cloned start (the hybrid's module docstring)."""
        for key, rms in list(self.venv.obs_rms.items()):
            mean, std = floored_mean_std(self.demos.obs[key])
            fixed = FixedStats(shape=rms.mean.shape)
            fixed.mean = mean.reshape(rms.mean.shape)
            fixed.var = np.square(std).reshape(rms.var.shape)
            self.venv.obs_rms[key] = fixed

    def _setup_bc(self) -> None:
        if not self.acfg.uses_bc:
            return
        self.demo_obs_normalized = self.venv.normalize_obs(self.demos.obs)
        self.model.setup_bc(
            self.demo_obs_normalized,
            self.demos.actions,
            lambda0=self.acfg.bc_weight,
            lambda1=self.acfg.bc_decay,
            batch=self.acfg.bc_batch,
            seed=self.cfg.seed,
        )

    def pretrain(self) -> dict[str, float]:
        """BC pretraining of a fresh generator (bc_steps); the demo-action MSE before and
        after and the last NLL."""
        before = demo_action_mse(self.model, self.demo_obs_normalized, self.demos.actions)
        losses = pretrain_bc(self.model, self.acfg.bc_steps, self.acfg.bc_lr)
        return {
            "demo_mse_before_bc": before,
            "demo_mse": demo_action_mse(self.model, self.demo_obs_normalized, self.demos.actions),
            "bc_final_nll": losses[-1],
        }

    @torch.no_grad()
    def log_pi(self, obs: dict[str, np.ndarray], actions: np.ndarray) -> torch.Tensor:
        """(B,) the generator's log pi(a|s) at raw observations `obs` (normalized as its
        policy reads them)."""
        obs_t, _ = self.model.policy.obs_to_tensor(self.venv.normalize_obs(obs))
        acts = torch.as_tensor(actions, dtype=torch.float32)
        if self.rl_algo == "ppo":
            return self.model.policy.get_distribution(obs_t).log_prob(acts)
        actor = self.model.actor
        mean, log_std, kwargs = actor.get_action_dist_params(obs_t)
        dist = actor.action_dist.proba_distribution(mean, log_std, **kwargs)
        return dist.log_prob(acts.clamp(-1 + 1e-6, 1 - 1e-6))

    def _batch(
        self,
        obs: dict[str, np.ndarray],
        actions: np.ndarray,
        next_obs: dict[str, np.ndarray],
        dones: np.ndarray,
    ) -> Batch:
        return Batch(
            obs=torch.as_tensor(flatten_obs(obs, self.keys)),
            actions=torch.as_tensor(actions, dtype=torch.float32),
            next_obs=torch.as_tensor(flatten_obs(next_obs, self.keys)),
            dones=torch.as_tensor(dones, dtype=torch.float32),
            log_pi=self.log_pi(obs, actions) if self.cfg.algo == "airl" else None,
        )

    def _reward(
        self,
        obs: dict[str, np.ndarray],
        actions: np.ndarray,
        next_obs: dict[str, np.ndarray],
        dones: np.ndarray,
    ) -> np.ndarray:
        """The discriminator's reward for a VecEnv step, (n_envs,)."""
        b = self._batch(obs, actions, next_obs, dones)
        return generator_reward(self.disc, b, self.acfg.reward).numpy().astype(np.float32)

    # ---- discriminator -----------------------------------------------------------------------

    def _sample(self, rollout: Rollout) -> tuple[Batch, Batch]:
        """(expert, generator) minibatches of disc_batch transitions each."""
        a = self.acfg
        gi = self.rng.integers(0, len(rollout), size=a.disc_batch)
        ei = self.rng.integers(0, len(self.demos), size=a.disc_batch)
        gen = self._batch(
            {k: v[gi] for k, v in rollout.obs.items()},
            rollout.actions[gi],
            {k: v[gi] for k, v in rollout.next_obs.items()},
            rollout.dones[gi],
        )
        exp_next = self.demos.next_obs if self.demos.next_obs is not None else self.demos.obs
        exp = self._batch(
            {k: v[ei] for k, v in self.demos.obs.items()},
            self.demos.actions[ei],
            {k: v[ei] for k, v in exp_next.items()},
            self.demos.dones[ei],
        )
        return exp, gen

    def train_discriminator(self, rollout: Rollout) -> dict[str, float]:
        """`disc_updates` steps on this round's rollout; returns the mean training loss and
        the accuracies and mean D of the discriminator as it leaves the round (on a fresh
        minibatch: an average over the steps would hide a discriminator that just ran away)."""
        a = self.acfg
        losses = []
        for _ in range(a.disc_updates):
            exp, gen = self._sample(rollout)
            loss, stats = discriminator_loss(self.disc, exp, gen, a.grad_penalty)
            losses.append(stats["disc_loss"])
            if math.isfinite(stats["disc_loss"]):
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
        exp, gen = self._sample(rollout)
        with torch.no_grad():
            _, stats = discriminator_loss(self.disc, exp, gen)
        return {**stats, "disc_loss": float(np.mean(losses))}

    # ---- folder ------------------------------------------------------------------------------

    def save(self, state: dict[str, Any]) -> None:
        """Checkpoint the round: model, statistics and discriminator first, state.json last
        (a kill in between repeats at most one round's bookkeeping on newer weights)."""
        self.model.save(self.dir / "generator.tmp.zip")
        os.replace(self.dir / "generator.tmp.zip", self.dir / "generator.zip")
        self.venv.save(str(self.dir / "vecnormalize.tmp.pkl"))
        os.replace(self.dir / "vecnormalize.tmp.pkl", self.dir / "vecnormalize.pkl")
        if self.rl_algo == "sac":
            self.model.save_replay_buffer(self.dir / "replay_buffer.tmp.pkl")
            os.replace(self.dir / "replay_buffer.tmp.pkl", self.dir / "replay_buffer.pkl")
        disc_state = {"disc": self.disc.state_dict(), "opt": self.opt.state_dict()}
        torch.save(disc_state, self.dir / "discriminator.tmp.pt")
        os.replace(self.dir / "discriminator.tmp.pt", self.dir / "discriminator.pt")
        write_json(self.dir / "state.json", state)

    def load_discriminator(self) -> None:
        ckpt = torch.load(self.dir / "discriminator.pt", map_location="cpu", weights_only=False)
        self.disc.load_state_dict(ckpt["disc"])
        self.opt.load_state_dict(ckpt["opt"])

    def evaluate(self) -> dict[str, float]:
        act = generator_act(self.model, self.venv, self.action_stats)
        return evaluate_policy(act, self.eval_env, self.cfg.eval_episodes, reference=self.reference)


def _generator_algo(rl_algo: str) -> str:
    """IRLConfig.rl_algo -> the SB3 algorithm of the generator ("auto" is PPO)."""
    return "ppo" if rl_algo == "auto" else rl_algo


def generator_act(
    model: Any, venv: Any, actions: ActionStats | None = None, deterministic: bool = True
) -> Act:
    """The generator's action for one raw observation, normalized with the VecNormalize
    statistics `venv` (or an unpickled VecNormalize) holds, as its policy reads; with
    `actions`, its output is in those demo units and is mapped back to the env's. The mean
    action unless `deterministic` is False (then a sample, as in its training rollouts)."""

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        batch = venv.normalize_obs({k: v[None] for k, v in obs.items()})
        action, _ = model.predict(batch, deterministic=deterministic)
        out = np.asarray(action[0], dtype=np.float32)
        return out if actions is None else actions.unnormalize(out)

    return act


def load_generator(run_dir: str | Path, deterministic: bool = True) -> Act:
    """A finished run's final policy (policy.zip and vecnormalize.pkl in its folder) as an
    action function of raw observations, on the CPU (`generator_act`)."""
    import pickle

    from stable_baselines3 import PPO, SAC

    run_dir = Path(run_dir)
    missing = [
        n for n in ("config.json", "policy.zip", "vecnormalize.pkl") if not (run_dir / n).exists()
    ]
    if missing:
        raise ApprenticeError(
            f"{run_dir}: not a finished GAIL/AIRL/GAIfO run folder (no {', '.join(missing)})"
        )
    config = json.loads((run_dir / "config.json").read_text())
    cls: Any = PPO if _generator_algo(config["irl"]["rl_algo"]) == "ppo" else SAC
    model = cls.load(run_dir / "policy.zip", device="cpu")
    # VecNormalize.load would also attach an env; only its statistics are needed here.
    with open(run_dir / "vecnormalize.pkl", "rb") as f:
        norm = pickle.load(f)
    stats_path = run_dir / "action_stats.json"  # normalize_actions
    stats = None
    if stats_path.exists():
        stats = ActionStats.from_json(json.loads(stats_path.read_text()))
    return generator_act(model, norm, stats, deterministic)


def run_adversarial(cfg: IRLConfig) -> IRLResult:
    """Run (or resume) GAIL, AIRL or GAIfO as `cfg` says; see the module docstring."""
    if cfg.algo not in ADVERSARIAL:
        raise ApprenticeError(f"run_adversarial runs {', '.join(ADVERSARIAL)}, not {cfg.algo}")
    acfg = AdversarialConfig.from_irl(cfg)
    run = _Run(cfg, acfg)
    run_dir = Path(cfg.out)
    if cfg.overwrite:
        for name in _RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
    config = {"irl": asdict(cfg), "adversarial": asdict(acfg)}
    free = {"resume", "overwrite", "eval_episodes", "env_steps", "wandb"}
    config["irl"] = {k: v for k, v in config["irl"].items() if k not in free}
    prepare_run_dir(run_dir, config, resume=cfg.resume, overwrite=cfg.overwrite)
    state_path = run_dir / "state.json"
    resume = state_path.exists()
    state: dict[str, Any] = (
        json.loads(state_path.read_text())
        if resume
        else {"rounds_done": 0, "history": [], "pinned": 0, "wall_s": 0.0, "next_eval": 0}
    )
    if run.action_stats is not None:
        write_json(run_dir / "action_stats.json", run.action_stats.to_json())
    run.build_generator(resume)
    if resume:
        run.load_discriminator()
    elif acfg.bc_steps:
        t0 = time.perf_counter()
        state["bc"] = run.pretrain()
        state["wall_s"] += time.perf_counter() - t0
        # The clone alone, at 0 environment steps: where the adversarial rounds start from.
        state["history"].append({"round": 0, "env_steps": 0, "wall_s": state["wall_s"]})
        state["history"][-1].update(run.evaluate())
    log = RunLog(
        run_dir,
        resume_epoch=state["rounds_done"],
        global_step=run.model.num_timesteps,
        wandb=cfg.wandb,
        config=config,
        job_type=f"irl-{cfg.algo}",
    )
    monitor = DivergenceMonitor(acfg.divergence_rounds, int(state["pinned"]))
    rounds = math.ceil(cfg.env_steps / acfg.rollout_steps)
    if not state["next_eval"]:
        state["next_eval"] = cfg.eval_every or cfg.env_steps
    try:
        for round_index in range(state["rounds_done"] + 1, rounds + 1):
            t0 = time.perf_counter()
            run.reward_env.start_rollout()
            if acfg.critic_warmup_rounds:
                run.model.actor_frozen = round_index <= acfg.critic_warmup_rounds
            run.model.learn(acfg.rollout_steps, reset_num_timesteps=False)
            stats = run.train_discriminator(run.reward_env.rollout())
            monitor.check(cfg.algo, round_index, stats)
            steps = int(run.model.num_timesteps)
            episodes = [float(e["r"]) for e in run.model.ep_info_buffer]
            record: dict[str, Any] = {
                "epoch": round_index,
                "env_steps": steps,
                **stats,
                "train_return": float(np.mean(episodes)) if episodes else float("nan"),
            }
            state["wall_s"] += time.perf_counter() - t0
            if steps >= state["next_eval"] or round_index == rounds:
                while state["next_eval"] <= steps:
                    state["next_eval"] += cfg.eval_every or cfg.env_steps
                scores = run.evaluate()
                record.update(scores)
                state["history"].append(
                    {
                        "round": round_index,
                        "env_steps": steps,
                        "wall_s": state["wall_s"],
                        **scores,
                        **{k: stats[k] for k in ("acc_expert", "acc_generator", "d_generator")},
                    }
                )
            log.epoch(record, steps)
            state["rounds_done"] = round_index
            state["pinned"] = monitor.pinned
            run.save(state)
    finally:
        log.close()
    run.model.save(run_dir / "policy.zip")
    save_reward(run_dir / "reward.pt", run.disc, run.keys, acfg.reward)
    write_report_png(run_dir, f"{cfg.algo} on {cfg.task}", state["history"], log.records)
    final = dict(state["history"][-1]) if state["history"] else {}
    final.update(
        {
            "policy": str(run_dir / "policy.zip"),
            "reward": str(run_dir / "reward.pt"),
            "rl_algo": run.rl_algo,
        }
    )
    return IRLResult(run_dir=run_dir, history=list(state["history"]), final=final)


__all__ = ["ADVERSARIAL", "AdversarialConfig", "generator_act", "load_generator", "run_adversarial"]
