#!/usr/bin/env bash
# Set up the peer robomimic 0.3.0 in its own virtual environment, outside the project's .venv.
#
#   bash benchmarks/peers/setup_robomimic.sh        # from anywhere; idempotent
#   ROBOMIMIC_VENV=.venv-robomimic-rs WITH_ROBOSUITE=1 bash benchmarks/peers/setup_robomimic.sh
#                                   # the same, plus robosuite 1.5.2 (benchmarks/robomimic_h2h/)
#
# Creates <repo>/.venv-robomimic and installs, in this order:
#   1. torch==2.13.0           (pinned: on these machines it is a local CPU wheel; an unpinned
#                               torch, or torchvision from PyPI, pulls a multi-GB CUDA build)
#   2. robomimic==0.3.0 --no-deps  (its setup.py asks for torch, torchvision, tensorboard,
#                               egl_probe, imageio-ffmpeg, ... which we do not want)
#   3. the dependencies robomimic's low-dim training path really imports:
#        numpy h5py psutil tqdm termcolor six imageio matplotlib tensorboardX
#      (six is imported by robomimic/config/base_config.py but is missing from its setup.py;
#       matplotlib by robomimic/utils/vis_utils.py via models/obs_core.py; imageio by
#       utils/train_utils.py; tensorboardX by utils/log_utils.py when config.experiment.logging.log_tb.)
#      Not installed: torchvision, tensorboard, egl_probe, imageio-ffmpeg, robosuite, gym
#      (only for image models, videos and robomimic's own env rollouts).
#   3b. mujoco==4.0.0 gymnasium==1.4.0 (the project venv's versions), for robomimic_rollout.py,
#      which runs a robomimic checkpoint on apprentice's own tasks.
#   4. a minimal STUB `torchvision` package in the venv's site-packages (NOT the real one).
#      robomimic/models/base_nets.py and robomimic/models/obs_core.py import torchvision at
#      module level (transforms, transforms.functional, models) for image encoders and
#      image randomizers only. Low-dim BC / BC-RNN never instantiates them, so the stub only has
#      to make those imports succeed; anything that actually calls into it raises
#      NotImplementedError. Do not use this venv for image-observation training.
#   5. writes .venv-robomimic/.gitignore containing "*" so the venv is never committed
#      (the repo's .gitignore only ignores .venv/).
# Prints the venv's python path on the last line.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/venv_common.sh"
# 1. the venv and torch (CPU wheel; pinned on purpose)
peer_venv ROBOMIMIC_VENV .venv-robomimic   # sets VENV, PY, pipi

# 2. robomimic itself, without its declared dependencies
if ! "$PY" -m pip show robomimic 2>/dev/null | grep -q '^Version: 0.3.0$'; then
    pipi --no-deps "robomimic==0.3.0"
fi

# 3. what the low-dim path imports (torch is already satisfied, so nothing here pulls CUDA)
pipi numpy h5py psutil tqdm termcolor six imageio matplotlib tensorboardX

# 3b. for benchmarks/peers/robomimic_rollout.py only: apprentice's MuJoCo tasks (imported from
#     src/ on sys.path) need mujoco + gymnasium. Pinned to the project venv's versions
#     (mujoco 4.0.0 >= 3.3.7, gymnasium 1.4.0) so both sides simulate the very same task.
#     Override with MUJOCO_PIN / GYMNASIUM_PIN if the project pins change.
#     With WITH_ROBOSUITE=1, robosuite 1.5.2 instead, which needs mujoco>=3.3.7,<3.10 (the
#     project's robosuite extra), so that apprentice's robosuite tasks run in this venv too.
if [ "${WITH_ROBOSUITE:-0}" = 1 ]; then
    pipi "robosuite==1.5.2" "mujoco>=3.3.7,<3.10" "gymnasium==${GYMNASIUM_PIN:-1.4.0}"
else
    pipi "mujoco==${MUJOCO_PIN:-4.0.0}" "gymnasium==${GYMNASIUM_PIN:-1.4.0}"
fi

# 4. torchvision stub (only if no real torchvision is installed)
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if "$PY" -m pip show torchvision >/dev/null 2>&1; then
    echo "note: a real torchvision is installed in $VENV; not writing the stub" >&2
else
    TV="$SITE/torchvision"
    mkdir -p "$TV/transforms"
    cat > "$TV/__init__.py" <<'PYEOF'
"""STUB torchvision for robomimic's low-dim path (written by benchmarks/peers/setup_robomimic.sh).

robomimic 0.3.0 imports torchvision at module level in robomimic/models/base_nets.py
(`from torchvision import transforms`, `from torchvision import models as vision_models`) and
robomimic/models/obs_core.py (`from torchvision.transforms import Lambda, Compose`,
`import torchvision.transforms.functional as TVF`). These serve image encoders
(ResNet18Conv, R3M, MVP, crop/color randomizers) only. Low-dim BC / BC-RNN never calls them.
Everything here raises NotImplementedError when actually used.
"""
__version__ = "0.0.0+robomimic-lowdim-stub"
IS_STUB = True
from . import transforms, models  # noqa: E402,F401
PYEOF
    cat > "$TV/_stub.py" <<'PYEOF'
def _unavailable(name):
    class _Unavailable:
        def __init__(self, *args, **kwargs):
            raise NotImplementedError(
                "torchvision.%s: this is a stub torchvision (low-dim only); install the real "
                "torchvision to use robomimic image models" % name)
    _Unavailable.__name__ = name.split(".")[-1]
    return _Unavailable


def _unavailable_fn(name):
    def f(*args, **kwargs):
        raise NotImplementedError(
            "torchvision.%s: this is a stub torchvision (low-dim only)" % name)
    f.__name__ = name.split(".")[-1]
    return f
PYEOF
    cat > "$TV/transforms/__init__.py" <<'PYEOF'
"""Stub of torchvision.transforms (see torchvision/__init__.py)."""
from torchvision._stub import _unavailable
from . import functional  # noqa: F401

Lambda = _unavailable("transforms.Lambda")
Compose = _unavailable("transforms.Compose")
Resize = _unavailable("transforms.Resize")
CenterCrop = _unavailable("transforms.CenterCrop")
Normalize = _unavailable("transforms.Normalize")
PYEOF
    cat > "$TV/transforms/functional.py" <<'PYEOF'
"""Stub of torchvision.transforms.functional (see torchvision/__init__.py)."""
from torchvision._stub import _unavailable_fn

adjust_brightness = _unavailable_fn("transforms.functional.adjust_brightness")
adjust_contrast = _unavailable_fn("transforms.functional.adjust_contrast")
adjust_saturation = _unavailable_fn("transforms.functional.adjust_saturation")
adjust_hue = _unavailable_fn("transforms.functional.adjust_hue")
PYEOF
    cat > "$TV/models.py" <<'PYEOF'
"""Stub of torchvision.models (see torchvision/__init__.py)."""
from torchvision._stub import _unavailable_fn

resnet18 = _unavailable_fn("models.resnet18")
PYEOF
fi

# smoke check: the modules the benchmarks use import cleanly, torch is the CPU build
"$PY" - <<'PYEOF'
import torch, robomimic
import robomimic.utils.dataset, robomimic.utils.train_utils, robomimic.utils.obs_utils
import robomimic.algo, robomimic.config, robomimic.scripts.train
assert robomimic.__version__ == "0.3.0", robomimic.__version__
assert torch.version.cuda is None, "expected the CPU build of torch, got CUDA " + str(torch.version.cuda)
print("robomimic", robomimic.__version__, "torch", torch.__version__, "ok")
PYEOF
echo "$PY"
