"""Policies: networks and action heads, their configs, and self-describing checkpoints.

Importing this package registers the built-in policies ("mlp", "gmm", "rnn").
"""

from apprentice.policies import gmm, mlp, rnn  # noqa: F401  (registration)
from apprentice.policies.base import (
    Policy,
    PolicyConfig,
    policy_config_class,
    policy_config_from_dict,
    policy_names,
    register_policy,
)
from apprentice.policies.checkpoint import (
    check_task,
    load_checkpoint,
    load_policy,
    save_checkpoint,
    task_name,
)
from apprentice.policies.gmm import GMMConfig, GMMPolicy
from apprentice.policies.mlp import MLPConfig, MLPPolicy
from apprentice.policies.rnn import RNNConfig, RNNPolicy

__all__ = [
    "GMMConfig",
    "GMMPolicy",
    "MLPConfig",
    "MLPPolicy",
    "Policy",
    "PolicyConfig",
    "RNNConfig",
    "RNNPolicy",
    "check_task",
    "load_checkpoint",
    "load_policy",
    "policy_config_class",
    "policy_config_from_dict",
    "policy_names",
    "register_policy",
    "save_checkpoint",
    "task_name",
]
