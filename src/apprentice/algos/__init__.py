"""Learning algorithms on one shared trainer (BC now; DAgger, GAIL, IRL reuse it)."""

from apprentice.algos.bc import batch_to_tensors, bc_step, bc_update, bc_validation_loss
from apprentice.algos.trainer import (
    Evaluate,
    TrainConfig,
    TrainResult,
    load_train_config,
    train,
)

__all__ = [
    "Evaluate",
    "TrainConfig",
    "TrainResult",
    "batch_to_tensors",
    "bc_step",
    "bc_update",
    "bc_validation_loss",
    "load_train_config",
    "train",
]
