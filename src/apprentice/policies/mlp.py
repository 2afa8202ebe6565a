"""BC with an MLP and a deterministic action head (robomimic's "BC": 2x1024 ReLU, L2 loss).

Shape legend: B batch, T time, Din = frame_stack * D input features, A action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from torch import Tensor, nn

from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError
from apprentice.policies.base import Policy, PolicyConfig, masked_mean, register_policy


@dataclass(frozen=True)
class MLPConfig(PolicyConfig):
    """Behaviour cloning with an MLP that outputs the action directly."""

    hidden_dims: tuple[int, ...] = (1024, 1024)
    """Widths of the hidden layers (robomimic BC: 1024, 1024)."""
    activation: str = "relu"
    """Hidden activation: relu, gelu, elu, tanh or mish."""
    init: str = "orthogonal"
    """Weights of the MLP: orthogonal (hidden layers gain sqrt(2), output layer gain 0.01,
    zero biases; the policy starts near a constant action) or pytorch (PyTorch's default, as
    robomimic's BC). On lift and stack from oracle demos orthogonal clones far better
    (benchmarks/results/policies-zoo.md, "The MLP's initialization"); pytorch reproduces MLP numbers
    recorded before that section."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "hidden_dims", tuple(int(h) for h in self.hidden_dims))
        check_activation(self.activation, self.name)
        check_init(self.init, self.name)

    def build(self, spec: ObsActSpec, normalizer_state: dict[str, Any]) -> MLPPolicy:
        return MLPPolicy(self, spec, normalizer_state)

    @classmethod
    def tiny(cls, **overrides: Any) -> Self:
        return cls(**{"hidden_dims": (32,), **overrides})


_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "mish": nn.Mish,
}


def check_activation(name: str, policy: str) -> None:
    if name not in _ACTIVATIONS:
        raise ApprenticeError(
            f"{policy} policy: unknown activation {name!r}; known: {', '.join(_ACTIVATIONS)}"
        )


INITS = ("orthogonal", "pytorch")


def check_init(name: str, policy: str) -> None:
    if name not in INITS:
        raise ApprenticeError(f"{policy} policy: unknown init {name!r}; known: {', '.join(INITS)}")


def orthogonal_init(trunk: nn.Sequential, *heads: nn.Linear, head_gain: float = 0.01) -> None:
    """Orthogonal weights (gain sqrt(2) in the trunk, `head_gain` in each output layer),
    zero biases."""
    for layer in trunk:
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight, gain=2**0.5)
            nn.init.zeros_(layer.bias)
    for head in heads:
        nn.init.orthogonal_(head.weight, gain=head_gain)
        nn.init.zeros_(head.bias)


def mlp_trunk(in_dim: int, hidden_dims: tuple[int, ...], activation: str) -> nn.Sequential:
    """Linear + activation per hidden width; the output size is hidden_dims[-1] (or in_dim)."""
    layers: list[nn.Module] = []
    for width in hidden_dims:
        layers += [nn.Linear(in_dim, width), _ACTIVATIONS[activation]()]
        in_dim = width
    return nn.Sequential(*layers)


class MLPPolicy(Policy):
    """obs (frame-stacked, normalized) -> MLP -> tanh -> action in [-1, 1]."""

    config: MLPConfig

    def __init__(self, config: MLPConfig, spec: ObsActSpec, normalizer_state: dict[str, Any]):
        super().__init__(config, spec, normalizer_state)
        self.trunk = mlp_trunk(self.input_dim, config.hidden_dims, config.activation)
        out_in = config.hidden_dims[-1] if config.hidden_dims else self.input_dim
        self.head = nn.Linear(out_in, self.action_dim)
        if config.init == "orthogonal":
            orthogonal_init(self.trunk, self.head)

    def predict(self, x: Tensor) -> Tensor:
        """x (..., Din) -> actions (..., A); tanh keeps them in the demos' [-1, 1] range."""
        return self.head(self.trunk(x)).tanh()

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x = self.obs_windows(batch)  # (B, T, Din)
        actions, mask = self.targets(batch, x.shape[1])  # (B, T, A), (B, T)
        pred = self.predict(x)  # (B, T, A)
        per_step = (pred - actions).pow(2).mean(-1)  # (B, T)
        loss = masked_mean(per_step, mask)
        return loss, {"mse": loss.detach()}

    def _act_step(self, x: Tensor, fresh: Tensor) -> Tensor:
        return self.predict(x)  # (B, A)

    def export_step(
        self, x: Tensor, step: Tensor | None, state: dict[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return self.predict(x), {}  # (B, A): no state of its own


register_policy("mlp")(MLPConfig)
