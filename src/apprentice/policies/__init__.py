"""Policies: networks and action heads, their configs, and self-describing checkpoints.

Importing this package registers the built-in policies ("mlp", "gmm", "rnn", "transformer",
"act", "diffusion", "flow").
"""

from apprentice.policies import gmm, mlp, rnn  # noqa: F401  (registration)
from apprentice.policies.act import ACTConfig, ACTPolicy
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
from apprentice.policies.diffusion import DiffusionConfig, DiffusionPolicy
from apprentice.policies.encoders import CameraConfig
from apprentice.policies.flow import FlowConfig, FlowPolicy
from apprentice.policies.gmm import GMMConfig, GMMPolicy
from apprentice.policies.mlp import MLPConfig, MLPPolicy
from apprentice.policies.rnn import RNNConfig, RNNPolicy
from apprentice.policies.transformer import TransformerConfig, TransformerPolicy

__all__ = [
    "ACTConfig",
    "ACTPolicy",
    "CameraConfig",
    "DiffusionConfig",
    "DiffusionPolicy",
    "FlowConfig",
    "FlowPolicy",
    "GMMConfig",
    "GMMPolicy",
    "MLPConfig",
    "MLPPolicy",
    "Policy",
    "PolicyConfig",
    "RNNConfig",
    "RNNPolicy",
    "TransformerConfig",
    "TransformerPolicy",
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
