# Sourced by the setup_<peer>.sh scripts: the peer's own venv with the pinned CPU torch.
#
#   peer_venv ENV_VAR DEFAULT_DIR
#
# makes (or reuses) the venv at $ENV_VAR (default DEFAULT_DIR, relative to the repo root),
# writes its .gitignore ("*": the venv is never committed), installs torch==2.13.0 (the CPU
# wheel; an unpinned torch can pull a multi-GB CUDA build) unless it is there, and sets
# VENV, PY and the function pipi (a quiet `pip install` into that venv).

peer_venv() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    VENV="$(cd "$root" && realpath -m "${!1:-$2}")"
    PY="$VENV/bin/python"
    if [ ! -x "$PY" ]; then
        python3 -m venv "$VENV"
    fi
    printf '*\n' > "$VENV/.gitignore"
    if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null; then
        pipi "torch==2.13.0"
    fi
}

pipi() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }
