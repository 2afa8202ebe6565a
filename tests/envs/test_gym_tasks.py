"""The gym/<id> control tasks register with the other tasks, in every process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from apprentice.data.normalize import Normalizer
from apprentice.data.spec import ObsActSpec
from apprentice.envs import make_task, task_names
from apprentice.envs.base import task_available
from apprentice.envs.gym_tasks import GYM_ENVS, PREFIX
from apprentice.envs.pool import make_pool
from apprentice.policies.base import policy_config_from_dict
from apprentice.policies.checkpoint import save_checkpoint

TASK = "gym/InvertedPendulum-v5"


def test_every_gym_env_is_a_registered_task() -> None:
    assert {PREFIX + env_id for env_id in GYM_ENVS} <= set(task_names())


def test_a_fresh_interpreter_builds_a_gym_task_and_evaluates_its_checkpoint(
    tmp_path: Path,
) -> None:
    """Nothing imports envs/gym_tasks.py first: `evaluate()` from Python on a gym checkpoint."""
    task = make_task(TASK)
    spec = ObsActSpec({"state": (4,)}, 1)
    policy = policy_config_from_dict({"name": "mlp", "hidden_dims": [8]}).build(
        spec, Normalizer.identity(spec).state_dict()
    )
    ckpt = tmp_path / "pendulum.pt"
    save_checkpoint(ckpt, policy, env_args=task.env_args)
    code = (
        "import sys, json\n"
        "from apprentice.evaluate.run import EvalConfig, evaluate\n"
        f"s = evaluate(EvalConfig(checkpoint={str(ckpt)!r}, episodes=2, workers=1))\n"
        "print(json.dumps([s['task'], s['episodes']]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == f'["{TASK}", 2]'


def test_a_pool_worker_knows_the_gym_tasks() -> None:
    with make_pool(1) as pool:
        assert pool.submit(task_available, TASK).result(timeout=300)
    np.testing.assert_equal(make_task(TASK).action_space.shape, (1,))
