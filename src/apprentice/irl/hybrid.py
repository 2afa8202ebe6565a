"""BC then RL: a cloned start, fine-tuned on the task's reward with a decaying BC term.

DAPG (Rajeswaran et al. 2018, "Learning Complex Dexterous Manipulation with Deep
Reinforcement Learning and Demonstrations", Sec. 4): pretrain the policy by behaviour
cloning, then improve it with policy gradients on the true reward while a demonstration
term keeps it near the demos early on, weighted lambda_k = lambda0 * lambda1^k at policy
update k (their Eq. 6 also scales it by the largest advantage; here the weight alone, as
the brief of this project gives it). Clones are robust only where the demos went; the RL
term takes the policy beyond them.

How it sits on stable-baselines3. The RL learner is SB3's PPO; `PPOWithBC` overrides
`train()`: PPO's clipped update on the fresh rollout, then as many BC steps on demo batches
as PPO took minibatch steps, each minimizing lambda_k * -log pi(a_demo | s_demo) with the
same optimizer. That is an alternation of the two gradients rather than their sum in one
loss: copying SB3's 120-line update loop to add one term would fork it, and with one BC
step per PPO step the alternation moves the policy by about the same summed gradient.

BC pretraining maximizes the demo actions' log-likelihood under the SB3 policy's own
Gaussian with log_std frozen (so, the L2 loss on its mean, as mjrl's BC that DAPG uses):
learning log_std too would shrink the exploration noise RL needs to nothing.

Observations reach the policy flattened (the task's low-dim keys, sorted) and normalized
with mean/std fixed from the demos (floored like the data layer's), not VecNormalize's
running statistics, which would drift under the cloned weights and undo the pretraining.

A run folder holds config.json, metrics.jsonl, tb/, state.json (history, env steps),
policy.zip (the latest PPO) and normalizer.json. A killed run resumes from the last
evaluation's policy.zip.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from apprentice.algos.run_folder import RunLog, prepare_run_dir, write_json
from apprentice.data.normalize import floored_mean_std
from apprentice.errors import ApprenticeError
from apprentice.irl.bco import algo_config
from apprentice.irl.common import IRLConfig, IRLResult
from apprentice.irl.envs import (
    IRLEnv,
    check_demos_fit_env,
    evaluate_policy,
    expert_reference,
    flatten_obs,
    load_demo_transitions,
    make_irl_env,
)


@dataclass(frozen=True)
class BCRLConfig:
    """The hybrid's own settings (`--algo-args key=value`)."""

    bc_steps: int = 2000
    """BC pretraining gradient steps (0 = RL from scratch, the RL-only baseline)."""
    bc_batch: int = 256
    """Demo transitions per BC step (pretraining and the BC term)."""
    bc_lr: float = 1e-3
    """Adam learning rate of BC pretraining."""
    lambda0: float = 0.1
    """Weight of the BC term at the first policy update (DAPG: 0.1; 0 = plain PPO)."""
    lambda1: float = 0.95
    """Decay of the BC weight per policy update (DAPG: 0.95)."""
    n_steps: int = 1024
    """PPO rollout length per update."""
    batch_size: int = 64
    """PPO minibatch size."""
    n_epochs: int = 10
    """PPO epochs per update."""
    lr: float = 3e-4
    """PPO learning rate."""
    gamma: float = 0.99
    """Discount."""
    log_std_init: float = -1.0
    """Initial log std of the Gaussian policy (exploration noise around the clone)."""
    net_arch: tuple[int, ...] = (64, 64)
    """Hidden widths of the actor and the critic."""
    threads: int | None = None
    """torch CPU threads (1 is steadier on a shared machine)."""

    def __post_init__(self) -> None:
        checks = [
            (self.bc_steps >= 0 and self.bc_batch >= 1, "bc_steps >= 0 and bc_batch >= 1"),
            (self.lambda0 >= 0 and 0 < self.lambda1 <= 1, "lambda0 >= 0 and 0 < lambda1 <= 1"),
            (self.n_steps >= 2 and self.batch_size >= 1, "n_steps >= 2 and batch_size >= 1"),
            (self.lr > 0 and self.bc_lr > 0, "learning rates > 0"),
        ]
        for ok, what in checks:
            if not ok:
                raise ApprenticeError(f"irl --algo bc-rl: need {what}")


# ---- observations ---------------------------------------------------------------------------


class FlatNormalized(gym.ObservationWrapper[np.ndarray, np.ndarray, dict[str, np.ndarray]]):
    """IRLEnv's Dict observation -> (D,) float32: keys flattened in sorted order, then
    (x - mean) / std with the demos' fixed statistics."""

    def __init__(self, env: IRLEnv, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__(env)
        self.keys = env.obs_keys
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, mean.shape, np.float32)

    def observation(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        flat = flatten_obs({k: observation[k][None] for k in self.keys}, self.keys)[0]  # D
        return ((flat - self.mean) / self.std).astype(np.float32)


# ---- the learner ----------------------------------------------------------------------------


def _as_tensors(obs: np.ndarray | dict[str, np.ndarray]) -> Any:
    """float32 tensor(s) of an array or a dict of arrays (SB3's Dict observations)."""
    if isinstance(obs, dict):
        return {k: torch.as_tensor(v, dtype=torch.float32) for k, v in obs.items()}
    return torch.as_tensor(obs, dtype=torch.float32)


class PPOWithBC(PPO):
    """PPO plus a decaying BC term on demo batches after every update (module docstring)."""

    def setup_bc(
        self,
        demo_obs: np.ndarray | dict[str, np.ndarray],
        demo_actions: np.ndarray,
        *,
        lambda0: float,
        lambda1: float,
        batch: int,
        seed: int,
    ) -> None:
        """Demo batches come from demo_obs ((N, D), or a dict of (N, ...) for a Dict
        observation space; normalized as the policy reads them) and demo_actions (N, A)."""
        self.demo_obs: Any = _as_tensors(demo_obs)
        self.demo_actions = torch.as_tensor(demo_actions, dtype=torch.float32)
        self.lambda0, self.lambda1, self.bc_batch = lambda0, lambda1, batch
        self.bc_rng = np.random.default_rng([seed, 5])
        self.bc_weights: list[float] = []
        """The weight of each update's BC term so far (this process)."""
        self.actor_frozen = False
        """While True, updates train the critic alone (`critic_warmup_rounds`)."""

    def _excluded_save_params(self) -> list[str]:
        # The demos are re-read on resume; they do not belong in every policy.zip.
        extra = ["demo_obs", "demo_actions", "bc_rng", "bc_weights", "actor_frozen"]
        return [*super()._excluded_save_params(), *extra]

    def bc_weight(self) -> float:
        """lambda_k = lambda0 * lambda1^k, k = PPO updates done (n_epochs passes each)."""
        k = self._n_updates // self.n_epochs
        return float(self.lambda0 * self.lambda1**k)

    def actor_parameters(self) -> list[torch.nn.Parameter]:
        """The Gaussian actor's own weights: its MLP branch, mean head and log std."""
        p = self.policy
        return [*p.mlp_extractor.policy_net.parameters(), *p.action_net.parameters(), p.log_std]

    def train(self) -> None:
        if self.actor_frozen:
            # Without gradients Adam leaves the actor as it is; the value loss still trains.
            actor = self.actor_parameters()
            for param in actor:
                param.requires_grad_(False)
            try:
                super().train()
            finally:
                for param in actor:
                    param.requires_grad_(True)
            return
        weight = self.bc_weight()
        super().train()  # PPO's clipped update on the rollout just collected
        self.bc_weights.append(weight)
        if weight <= 0:
            return
        steps = self.n_epochs * max(1, self.rollout_buffer.buffer_size // self.batch_size)
        nll = []
        for _ in range(steps):
            loss = bc_nll(self, self.bc_rng, self.bc_batch)
            self.policy.optimizer.zero_grad()
            (weight * loss).backward()
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
            nll.append(float(loss.detach()))
        self.logger.record("train/bc_weight", weight)
        self.logger.record("train/bc_nll", float(np.mean(nll)))


def bc_nll(model: PPOWithBC, rng: np.random.Generator, batch: int) -> torch.Tensor:
    """-log pi(a | s) averaged over a random batch of demo transitions (scalar)."""
    idx = torch.as_tensor(rng.integers(0, len(model.demo_actions), size=batch))
    obs = model.demo_obs
    obs = {k: v[idx] for k, v in obs.items()} if isinstance(obs, dict) else obs[idx]
    _, log_prob, _ = model.policy.evaluate_actions(obs, model.demo_actions[idx])
    return -log_prob.mean()


def demo_action_mse(
    model: PPO, obs: np.ndarray | dict[str, np.ndarray], actions: np.ndarray
) -> float:
    """Mean squared error of the policy's deterministic (mean) actions on the demos (obs
    normalized as the policy reads them; a dict for a Dict observation space)."""
    with torch.no_grad():
        dist = model.policy.get_distribution(_as_tensors(obs))
        mean = dist.distribution.mean  # type: ignore[union-attr]
    return float((mean - torch.as_tensor(actions)).pow(2).mean())


def pretrain_bc(model: PPOWithBC, steps: int, lr: float) -> list[float]:
    """Maximize the demos' log-likelihood with log_std frozen (module docstring); returns
    the NLL of each step."""
    params = [p for n, p in model.policy.named_parameters() if n != "log_std"]
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        loss = bc_nll(model, model.bc_rng, model.bc_batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


# ---- the run --------------------------------------------------------------------------------


def run_bc_rl(cfg: IRLConfig) -> IRLResult:
    """Run (or resume) BC pretraining + PPO fine-tuning with a BC term; see the module
    docstring. History rows: env_steps (0 = the clone alone), mean_return, normalized_return
    or success_rate, bc_weight."""
    if cfg.algo != "bc-rl":
        raise ApprenticeError(f"run_bc_rl runs bc-rl, not {cfg.algo}")
    if cfg.rl_algo == "sac":
        raise ApprenticeError("irl --algo bc-rl fine-tunes with PPO; --rl-algo sac is not offered")
    if not cfg.demos:
        raise ApprenticeError("irl --algo bc-rl: --demos is required")
    hcfg = algo_config(BCRLConfig, cfg)
    if hcfg.threads is not None:
        torch.set_num_threads(hcfg.threads)
    eval_env = make_irl_env(cfg.task, cfg.seed)
    demos = load_demo_transitions(cfg.demos, eval_env.obs_keys, task_name=eval_env.task.name)
    check_demos_fit_env(demos, eval_env, cfg.demos, algo="bc-rl")  # refuses state-only demos
    raw = flatten_obs(demos.obs, eval_env.obs_keys)  # N,D
    mean, std = floored_mean_std(raw)
    demo_obs = ((raw - mean) / std).astype(np.float32)  # N,D
    reference = expert_reference(cfg.demos)

    run_dir = Path(cfg.out)
    if cfg.overwrite:
        for name in ("state.json", "policy.zip", "normalizer.json"):
            (run_dir / name).unlink(missing_ok=True)
    config = {"irl": asdict(cfg), "bc_rl": asdict(hcfg)}
    for free in ("resume", "overwrite", "eval_episodes", "env_steps", "wandb"):
        config["irl"].pop(free)
    prepare_run_dir(run_dir, config, resume=cfg.resume, overwrite=cfg.overwrite)
    write_json(run_dir / "normalizer.json", {"mean": mean.tolist(), "std": std.tolist()})

    venv = DummyVecEnv(
        [lambda: Monitor(FlatNormalized(make_irl_env(cfg.task, cfg.seed), mean, std))]
    )
    state_path = run_dir / "state.json"
    resume = state_path.exists() and (run_dir / "policy.zip").exists()
    ppo_kwargs: dict[str, Any] = {
        "n_steps": hcfg.n_steps,
        "batch_size": hcfg.batch_size,
        "n_epochs": hcfg.n_epochs,
        "learning_rate": hcfg.lr,
        "gamma": hcfg.gamma,
        "seed": cfg.seed,
        "device": "cpu",
        "policy_kwargs": {"net_arch": list(hcfg.net_arch), "log_std_init": hcfg.log_std_init},
    }
    if resume:
        model = PPOWithBC.load(run_dir / "policy.zip", env=venv, device="cpu")
        state: dict[str, Any] = json.loads(state_path.read_text())
    else:
        model = PPOWithBC("MlpPolicy", venv, **ppo_kwargs)
        state = {"history": [], "wall_s": 0.0}
    model.setup_bc(
        demo_obs,
        demos.actions,
        lambda0=hcfg.lambda0,
        lambda1=hcfg.lambda1,
        batch=hcfg.bc_batch,
        seed=cfg.seed,
    )

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        flat = flatten_obs({k: obs[k][None] for k in eval_env.obs_keys}, eval_env.obs_keys)[0]
        action, _ = model.predict((flat - mean) / std, deterministic=True)
        return np.asarray(action, dtype=np.float32)

    def evaluate(record: dict[str, Any]) -> None:
        scores = evaluate_policy(act, eval_env, cfg.eval_episodes, reference=reference)
        row = {"env_steps": int(model.num_timesteps), **scores, **record}
        row["wall_s"] = state["wall_s"]
        state["history"].append(row)
        log.epoch({"epoch": len(state["history"]), **row}, int(model.num_timesteps))
        model.save(run_dir / "policy.zip")
        write_json(state_path, state)

    log = RunLog(
        run_dir,
        resume_epoch=len(state["history"]),
        global_step=model.num_timesteps,
        wandb=cfg.wandb,
        config=config,
        job_type="irl-bc-rl",
    )
    try:
        if not state["history"]:
            t0 = time.perf_counter()
            mse0 = demo_action_mse(model, demo_obs, demos.actions)
            losses = pretrain_bc(model, hcfg.bc_steps, hcfg.bc_lr)
            state["wall_s"] += time.perf_counter() - t0
            evaluate(
                {
                    "bc_weight": model.bc_weight(),
                    "demo_mse_before_bc": mse0,
                    "demo_mse": demo_action_mse(model, demo_obs, demos.actions),
                    "bc_final_nll": losses[-1] if losses else float("nan"),
                }
            )
        every = cfg.eval_every or max(hcfg.n_steps, cfg.env_steps // 5)
        while model.num_timesteps < cfg.env_steps:
            t0 = time.perf_counter()
            chunk = min(every, cfg.env_steps - int(model.num_timesteps))
            model.learn(chunk, reset_num_timesteps=False)
            state["wall_s"] += time.perf_counter() - t0
            evaluate(
                {
                    "bc_weight": model.bc_weight(),
                    "demo_mse": demo_action_mse(model, demo_obs, demos.actions),
                }
            )
    finally:
        log.close()
    final = dict(state["history"][-1])
    final["policy"] = str(run_dir / "policy.zip")
    return IRLResult(run_dir=run_dir, history=list(state["history"]), final=final)


__all__ = ["BCRLConfig", "FlatNormalized", "PPOWithBC", "pretrain_bc", "run_bc_rl"]
