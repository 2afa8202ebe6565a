#!/usr/bin/env bash
# Set up the peer imitation 1.0.1 (HumanCompatibleAI) in its own virtual environment.
#
#   bash benchmarks/peers/setup_imitation.sh        # from anywhere; idempotent
#
# imitation 1.0.1 pins gymnasium~=0.29 and stable-baselines3~=2.2.1, older than the project's
# (gymnasium 1.4, SB3 2.9), so it cannot share .venv. Creates <repo>/.venv-imitation and
# installs, in this order:
#   1. torch==2.13.0        (pinned first: on these machines a local CPU wheel; imitation's bare
#                            `torch>=1.4.0` would otherwise be free to pull a multi-GB CUDA build)
#   2. numpy<2              (gymnasium 0.29's passive env checker still calls np.bool8)
#   3. imitation==1.0.1 with its own dependencies (gymnasium 0.29.1, SB3 2.2.1, seals, sacred...)
#   4. mujoco>=2.3.3,<3.2, imageio + h5py: gymnasium 0.29 has the MuJoCo tasks only up to -v4 (its
#      `gymnasium[mujoco]` extra asks for mujoco>=2.3.3; the 3.1 line is the newest it was
#      released against; its MuJoCo envs import imageio at load), and h5py reads apprentice's demonstration files.
#   5. writes .venv-imitation/.gitignore containing "*".
# Prints the venv's python path on the last line.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/venv_common.sh"
peer_venv IMITATION_VENV .venv-imitation   # sets VENV, PY, pipi; torch==2.13.0 (CPU)
if ! "$PY" -m pip show imitation 2>/dev/null | grep -q '^Version: 1.0.1$'; then
    pipi "torch==2.13.0" "numpy<2" "imitation==1.0.1"
fi
pipi "torch==2.13.0" "numpy<2" "mujoco>=2.3.3,<3.2" h5py imageio

# smoke check: the pieces imitation_run.py uses import, the task exists, torch is the CPU build
"$PY" - <<'PYEOF'
import gymnasium as gym, imitation, stable_baselines3, torch
from imitation.algorithms.adversarial.gail import GAIL  # noqa: F401
from imitation.data.types import Trajectory  # noqa: F401
assert torch.version.cuda is None, "expected the CPU build of torch, got CUDA " + str(torch.version.cuda)
gym.make("InvertedPendulum-v4").reset(seed=0)
print("imitation", imitation.__version__, "gymnasium", gym.__version__, "sb3",
      stable_baselines3.__version__, "torch", torch.__version__, "ok")
PYEOF
echo "$PY"
