"""The discriminators of GAIL, AIRL and GAIfO, their loss, and the rewards they give.

All three score a transition (s, a, s') with a logit that is high for the expert's:

- GAIL (Ho & Ermon 2016): D(s, a) = sigmoid(MLP([s, a])).
- GAIfO (Torabi, Warnell & Stone 2018): D(s, s') = sigmoid(MLP([s, s'])), no actions, so it
  imitates from observation alone.
- AIRL (Fu, Luo & Levine 2018, eq. 3-4): f(s, a, s') = g(s) + gamma h(s') - h(s), and
  D = exp f / (exp f + pi(a|s)), i.e. logit = f - log pi(a|s), with pi the generator's current
  policy. With g a function of the state alone, g recovers the true reward up to a constant
  (their Theorem 5.1), which is why AIRL's reward transfers to a fresh learner: `g` is what
  `reward.pt` holds for AIRL.

Inputs are normalized with the expert demos' mean and std, fixed at construction (kept in
the state dict), so the discriminator sees expert and generator data on one scale that does
not drift as the generator's own observation statistics (VecNormalize) move.

Shapes: B batch, Ds observation features (flattened keys), Da action size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from apprentice.errors import ApprenticeError

KINDS = ("gail", "airl", "gaifo")


def mlp(inputs: int, hidden: tuple[int, ...], outputs: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(inputs, width), nn.Tanh()]
        inputs = width
    layers.append(nn.Linear(inputs, outputs))
    return nn.Sequential(*layers)


@dataclass
class Batch:
    """Transitions as tensors: obs, next_obs (B, Ds), actions (B, Da), dones (B,),
    log_pi (B,) the generator's log-probability of the action (AIRL only)."""

    obs: Tensor
    actions: Tensor
    next_obs: Tensor
    dones: Tensor
    log_pi: Tensor | None = None


class Discriminator(nn.Module):
    """GAIL's D(s, a), GAIfO's D(s, s') or AIRL's f(s, a, s') - log pi(a|s) (module docstring)."""

    def __init__(
        self,
        kind: str,
        obs_mean: np.ndarray,
        obs_std: np.ndarray,
        act_dim: int,
        hidden: tuple[int, ...] = (64, 64),
        gamma: float = 0.99,
        state_only: bool = True,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ApprenticeError(f"unknown discriminator {kind!r}; known: {', '.join(KINDS)}")
        self.kind = kind
        self.act_dim = act_dim
        self.hidden = tuple(hidden)
        self.gamma = gamma
        self.state_only = state_only
        obs_dim = int(obs_mean.shape[0])
        self.register_buffer("obs_mean", torch.as_tensor(obs_mean, dtype=torch.float32))
        # A constant feature (std 0) would divide by zero: leave it unscaled.
        std = np.where(obs_std > 1e-6, obs_std, 1.0)
        self.register_buffer("obs_std", torch.as_tensor(std, dtype=torch.float32))
        if kind == "gail":
            self.net = mlp(obs_dim + act_dim, hidden)
        elif kind == "gaifo":
            self.net = mlp(2 * obs_dim, hidden)
        else:
            self.net = mlp(obs_dim if state_only else obs_dim + act_dim, hidden)  # g
            self.shaping = mlp(obs_dim, hidden)  # h

    obs_mean: Tensor
    obs_std: Tensor

    def _norm(self, obs: Tensor) -> Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def reward_g(self, obs: Tensor, actions: Tensor) -> Tensor:
        """AIRL's g(s) (or g(s, a)): (B,), the transferable reward."""
        x = self._norm(obs)
        if not self.state_only:
            x = torch.cat([x, actions], dim=1)
        return self.net(x).squeeze(1)

    def f(self, b: Batch) -> Tensor:
        """AIRL's f(s, a, s') = g + gamma (1 - done) h(s') - h(s): (B,)."""
        h_s = self.shaping(self._norm(b.obs)).squeeze(1)  # (B,)
        h_next = self.shaping(self._norm(b.next_obs)).squeeze(1)  # (B,)
        return self.reward_g(b.obs, b.actions) + self.gamma * (1 - b.dones) * h_next - h_s

    def logits(self, b: Batch) -> Tensor:
        """(B,) logit of "this transition is the expert's"."""
        if self.kind == "gail":
            return self.net(torch.cat([self._norm(b.obs), b.actions], dim=1)).squeeze(1)
        if self.kind == "gaifo":
            return self.net(torch.cat([self._norm(b.obs), self._norm(b.next_obs)], 1)).squeeze(1)
        if b.log_pi is None:
            raise ValueError("AIRL's logit needs the generator's log pi(a|s)")
        return self.f(b) - b.log_pi


def discriminator_loss(
    disc: Discriminator, expert: Batch, generator: Batch, grad_penalty: float = 0.0
) -> tuple[Tensor, dict[str, float]]:
    """Logistic loss (expert = 1, generator = 0), plus optionally a gradient penalty on the
    inputs interpolated between expert and generator (Gulrajani et al. 2017, as DAC uses it
    with a logistic loss) that keeps D smooth and its reward informative.

    Returns the loss and its stats: loss, acc_expert, acc_generator (fraction classified
    right), d_generator (mean D on generator data: its collapse to 0 is a starved generator).
    """
    le, lg = disc.logits(expert), disc.logits(generator)  # (B,), (B,)
    loss = F.binary_cross_entropy_with_logits(le, torch.ones_like(le))
    loss = loss + F.binary_cross_entropy_with_logits(lg, torch.zeros_like(lg))
    if grad_penalty > 0 and disc.kind != "airl":
        alpha = torch.rand(le.shape[0], 1)

        def mix(e: Tensor, g: Tensor) -> Tensor:
            return (alpha * e + (1 - alpha) * g).requires_grad_(True)

        mixed = Batch(
            obs=mix(expert.obs, generator.obs),
            # GAIfO's state-only demos have no actions (A = 0): it reads none.
            actions=mix(expert.actions, generator.actions)
            if disc.kind == "gail"
            else generator.actions,
            next_obs=mix(expert.next_obs, generator.next_obs),
            dones=generator.dones,
        )
        out = disc.logits(mixed)
        inputs = [mixed.obs, mixed.next_obs if disc.kind == "gaifo" else mixed.actions]
        g_obs, g_second = torch.autograd.grad(out.sum(), inputs, create_graph=True)
        # The penalty holds D 1-Lipschitz in the inputs its net reads, the normalized
        # observations: dD/d((x - mean) / std) = dD/dx * std. Taken on the raw x instead, a
        # feature the demos barely vary (std 2e-4: a gripper's orientation) would scale its
        # gradient by 1 / std and the penalty by 1 / std^2, and swamp the loss.
        g_obs = g_obs * disc.obs_std
        if disc.kind == "gaifo":
            g_second = g_second * disc.obs_std
        norm = torch.cat([g_obs, g_second], dim=1).norm(dim=1)  # (B,)
        loss = loss + grad_penalty * ((norm - 1) ** 2).mean()
    stats = {
        "disc_loss": float(loss.detach()),
        "acc_expert": float((le > 0).float().mean()),
        "acc_generator": float((lg < 0).float().mean()),
        "d_generator": float(torch.sigmoid(lg).mean().detach()),
    }
    return loss, stats


@torch.no_grad()
def generator_reward(disc: Discriminator, b: Batch, kind: str = "positive") -> Tensor:
    """The reward the generator maximizes, (B,).

    GAIL / GAIfO: "positive" = -log(1 - D) (= softplus(logit); always > 0, a survival bonus
    that suits tasks that end on failure, like a falling pendulum), or "logit" =
    log D - log(1 - D) (unbiased in sign, for tasks that end on success). AIRL: always
    log D - log(1 - D) = f - log pi, an entropy-regularized reward (Fu et al. 2018, sec. 5).
    """
    logit = disc.logits(b)
    if disc.kind == "airl" or kind == "logit":
        return logit
    return F.softplus(logit)


class LearnedReward:
    """A saved reward network (`reward.pt`), to re-optimize from scratch or to inspect:
    AIRL's g(s) (state-only, transferable) or GAIL's / GAIfO's discriminator reward."""

    def __init__(self, disc: Discriminator, obs_keys: list[str], reward_kind: str) -> None:
        self.disc = disc.eval()
        self.obs_keys = obs_keys
        self.reward_kind = reward_kind

    @torch.no_grad()
    def __call__(
        self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray, dones: np.ndarray
    ) -> np.ndarray:
        """(B, Ds), (B, Da), (B, Ds), (B,) -> (B,) reward.

        AIRL's state-only g is paid on arrival, g(s'): the same return as g(s) up to the first
        and last states, but credited to the action that reached the state, which a learner
        picks up in far fewer steps."""
        b = _to_batch(obs, actions, next_obs, dones)
        if self.disc.kind == "airl":
            if self.disc.state_only:
                return self.disc.reward_g(b.next_obs, b.actions).numpy()
            return self.disc.reward_g(b.obs, b.actions).numpy()
        return generator_reward(self.disc, b, self.reward_kind).numpy()


def _to_batch(
    obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray, dones: np.ndarray
) -> Batch:
    return Batch(
        obs=torch.as_tensor(obs, dtype=torch.float32),
        actions=torch.as_tensor(actions, dtype=torch.float32),
        next_obs=torch.as_tensor(next_obs, dtype=torch.float32),
        dones=torch.as_tensor(dones, dtype=torch.float32),
    )


def save_reward(path: Path, disc: Discriminator, obs_keys: list[str], reward_kind: str) -> None:
    """Write a self-describing reward checkpoint (what `load_reward` needs, nothing else)."""
    torch.save(
        {
            "kind": disc.kind,
            "obs_keys": obs_keys,
            "reward_kind": reward_kind,
            "act_dim": disc.act_dim,
            "hidden": list(disc.hidden),
            "gamma": disc.gamma,
            "state_only": disc.state_only,
            "state_dict": disc.state_dict(),
        },
        path,
    )


def load_reward(path: str | Path) -> LearnedReward:
    """The reward saved at `path` by an adversarial run (its `reward.pt`)."""
    path = Path(path)
    if not path.is_file():
        raise ApprenticeError(f"learned reward {path} does not exist")
    ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    sd = ckpt["state_dict"]
    disc = Discriminator(
        ckpt["kind"],
        sd["obs_mean"].numpy(),
        sd["obs_std"].numpy(),
        int(ckpt["act_dim"]),
        tuple(ckpt["hidden"]),
        float(ckpt["gamma"]),
        bool(ckpt["state_only"]),
    )
    disc.load_state_dict(sd)
    return LearnedReward(disc, list(ckpt["obs_keys"]), str(ckpt["reward_kind"]))
