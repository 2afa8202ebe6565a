#!/usr/bin/env bash
# The policy zoo's grid (bench_zoo.py) on a lent GPU machine, in one call.
#
# The machine has PyTorch with CUDA, h5py and pytest but not mujoco or gymnasium, and it
# cannot reach a registry, so both travel as wheels in .whl/ (py3.12 builds), and the GL
# loaders for MuJoCo's EGL rendering as Debian packages in .gl/ (see the device notes).
# mujoco 4.0.0 is split in three wheels; with --no-deps each dependency is named:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#       mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 websockets glfw pyopengl \
#       gymnasium==1.4.0 farama-notifications
# The CUDA tests of every policy (tests/algos/test_device.py, skipped without a GPU) run
# beside the grid. The grid resumes from /tmp/zoo: a second call on the still-warm machine
# goes on where the first stopped.
#
#   [SHARE=1] [MPS=1] UNTIL_S=560 benchmarks/gpu_zoo.sh --tasks lift --obs images --jobs 14 --deadline 200
#   UNTIL_S=560 benchmarks/gpu_zoo.sh --cells lift/images/rnn/d200/s0 ... --jobs 14   # these, in order
#
# SHARE=1 first times the training step with 1 and 14 processes on the GPU, the step that
# waits for the device against the one that does not (bench_gpu_share.py, about 80 s):
# run it in the first call, to size --jobs from what it finds.
# --deadline counts from the grid's start, demo collection included: past it a free slot
# is filled only by what --stop-by allows, so leave it above the collection's time.
# Writes cells.jsonl, zoo.log, test_device.txt (and gpu_share.json) to $OUT (or /tmp/zoo_out).
set -u
OUT=${OUT:-/tmp/zoo_out}
mkdir -p "$OUT"
if [ -d .gl ]; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src:${PYTHONPATH:-} MUJOCO_GL=egl PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/gpu.txt" 2>&1
python3 -c "import torch, mujoco; print(torch.__version__, mujoco.__version__)" >>"$OUT/gpu.txt"
# SHARE=1: the step timing first, alone on the GPU (the CUDA tests wait for it).
if [ "${SHARE:-0}" = 1 ]; then
    timeout 150 python3 benchmarks/bench_gpu_share.py --procs 1 14 --policies mlp \
        --seconds "${SHARE_S:-6}" --warmup 10 --out "$OUT/gpu_share.json" 2>&1 | tee "$OUT/gpu_share.log"
fi
if [ ! -e /tmp/test_device.done ]; then
    (
        timeout 300 python3 -m pytest -q -p no:cacheprovider tests/algos/test_device.py \
            >"$OUT/test_device.txt" 2>&1
        echo "pytest rc=$?" >>"$OUT/test_device.txt"
        touch /tmp/test_device.done
    ) &
fi
# MPS=1: run the cells' CUDA contexts through one MPS server, so that their small kernels
# share the GPU instead of taking turns (untried on these machines; off by default).
if [ "${MPS:-0}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null; then
    nvidia-cuda-mps-control -d && echo "MPS server started" | tee -a "$OUT/gpu.txt"
fi
# The grid gets BENCH_S seconds, or what is left until UNTIL_S seconds into this script, and
# starts no cell that the slowest finished one says would not end by then (--stop-by).
BENCH_S=${BENCH_S:-$((${UNTIL_S:-520} - SECONDS))}
mkdir -p /tmp/zoo
(while sleep 10; do cp /tmp/zoo/cells.jsonl "$OUT/" 2>/dev/null; done) &
copier=$!
timeout "$BENCH_S" python3 benchmarks/bench_zoo.py --out /tmp/zoo --stop-by $((BENCH_S - 10)) "$@" \
    2>&1 | tee "$OUT/zoo.log"
kill $copier
cp /tmp/zoo/cells.jsonl "$OUT/" 2>/dev/null
wait
python3 benchmarks/bench_zoo.py --table /tmp/zoo
