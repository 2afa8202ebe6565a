"""Learning algorithms on one shared trainer (BC now; DAgger, GAIL, IRL reuse it)."""

from apprentice.algos.bc import batch_to_tensors, bc_validation_loss
from apprentice.algos.trainer import (
    Evaluate,
    TrainConfig,
    Trainer,
    TrainResult,
    load_train_config,
    train,
)

__all__ = [
    "Evaluate",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "batch_to_tensors",
    "bc_validation_loss",
    "load_train_config",
    "train",
]
