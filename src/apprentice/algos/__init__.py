"""Learning algorithms on one shared trainer (BC now; DAgger, GAIL, IRL reuse it), in one
process or across torchrun's (`join_processes`)."""

from apprentice.algos.bc import batch_to_tensors, bc_validation_loss
from apprentice.algos.launch import join_processes
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
    "join_processes",
    "load_train_config",
    "train",
]
