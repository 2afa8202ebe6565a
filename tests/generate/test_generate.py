"""End-to-end generation on the built-in tasks: output, determinism, resume, diagnosis."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from apprentice.data import DemoFile
from apprentice.envs import make_task
from apprentice.errors import ApprenticeError
from apprentice.generate.run import GenerateConfig, run_generate


def gen(source: Path, out: Path, **kw: object) -> GenerateConfig:
    return GenerateConfig(source=str(source), out=str(out), progress=False, **kw)  # type: ignore[arg-type]


def actions_of(path: Path) -> list[np.ndarray]:
    with DemoFile(path) as f:
        return [f.read_field(n, "actions") for n in f.demo_names]


def test_generated_demos_succeed_replay_and_record_provenance(
    lift_source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "gen.hdf5"
    r = run_generate(gen(lift_source, out, n=4, valid_fraction=0.25))
    assert r.successes == 4 and r.attempts >= 4 and 0 < r.dgr <= 1
    with DemoFile(lift_source) as f:
        source_demos = set(f.demo_names)
    with DemoFile(out) as f:
        assert f.env_args == make_task("lift").env_args
        names = f.demo_names
        assert len(names) == 4
        assert sorted(f.masks["generated"]) == sorted(names)
        assert sorted(f.masks["train"] + f.masks["valid"]) == sorted(names)
        record = json.loads(f.data_attrs["generation"])
        assert record["successes"] == 4 and record["attempts"] == r.attempts
        episodes = [f.read(n) for n in names]
    task = make_task("lift")
    for ep in episodes:
        assert ep.source == "generated" and ep.success
        assert len(ep.attrs["src_demos"]) == len(task.subtasks)
        assert set(ep.attrs["src_demos"]) <= source_demos
        assert ep.datagen_info is not None  # generated demos can seed generation in turn
        # The stored states and actions replay to success: the label is not taken on trust.
        task.reset(seed=ep.seed)
        task.set_state(ep.states[0])
        for action in ep.actions:
            task.step(action)
        assert task.is_success()
        # Each demo comes from its own new scene, away from held-out evaluation seeds.
        assert ep.seed is not None and ep.seed < 1_000_000_000


def test_multi_stage_generation_on_stack(stack_source: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen.hdf5"
    r = run_generate(gen(stack_source, out, n=3))
    assert r.successes == 3
    with DemoFile(out) as f:
        attrs = [f.attrs(n) for n in f.demo_names]
    assert all(len(a["src_demos"]) == 2 for a in attrs)


def test_same_seed_same_demos_whatever_the_workers(lift_source: Path, tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.hdf5", tmp_path / "b.hdf5", tmp_path / "c.hdf5"
    run_generate(gen(lift_source, a, n=4))
    run_generate(gen(lift_source, b, n=4, workers=2, chunk=1))
    run_generate(gen(lift_source, c, n=4, seed=1))
    for x, y in zip(actions_of(a), actions_of(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(actions_of(a)[0], actions_of(c)[0])


def test_resume_continues_where_it_stopped(lift_source: Path, tmp_path: Path) -> None:
    full, part = tmp_path / "full.hdf5", tmp_path / "part.hdf5"
    run_generate(gen(lift_source, full, n=5))
    run_generate(gen(lift_source, part, n=2))
    r = run_generate(gen(lift_source, part, n=5))
    assert (r.successes, r.new_successes) == (5, 3)
    for x, y in zip(actions_of(full), actions_of(part), strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ApprenticeError, match="another seed"):
        run_generate(gen(lift_source, part, n=6, seed=7))


def test_wider_variant_generates_into_d1(lift_source: Path, tmp_path: Path) -> None:
    out = tmp_path / "d1.hdf5"
    run_generate(gen(lift_source, out, n=2, task_args=("variant=D1",)))
    with DemoFile(out) as f:
        assert f.env_args["env_kwargs"]["variant"] == "D1"


def test_hopeless_attempts_stop_with_a_diagnosis(lift_source: Path, tmp_path: Path) -> None:
    failed = tmp_path / "failed.hdf5"
    # Noise this large drowns every motion: the grasp can never happen.
    cfg = gen(
        lift_source,
        tmp_path / "gen.hdf5",
        n=2,
        action_noise=3.0,
        give_up_after=4,
        failed_out=str(failed),
    )
    with pytest.raises(ApprenticeError) as err:
        run_generate(cfg)
    message = str(err.value)
    assert "no success in the last 4 attempts" in message
    assert "subtask 0 (relative to 'cube', ends on 'grasp'): 4 failures" in message
    with DemoFile(failed) as f:
        assert len(f.demo_names) == 4 and f.masks["failed"]
        assert not any(f.attrs(n)["success"] for n in f.demo_names)


def test_bad_sources_get_one_clear_error(lift_source: Path, tmp_path: Path) -> None:
    with pytest.raises(ApprenticeError, match="is the source file"):
        run_generate(gen(lift_source, lift_source, n=1))
    bare = tmp_path / "bare.hdf5"
    shutil.copy(lift_source, bare)
    with h5py.File(bare, "r+") as f:
        for name in f["data"]:
            del f[f"data/{name}/datagen_info"]
    with pytest.raises(ApprenticeError, match=r"no demo has datagen_info.*apprentice annotate"):
        run_generate(gen(bare, tmp_path / "out.hdf5", n=1))
    no_cube = tmp_path / "no_cube.hdf5"
    shutil.copy(lift_source, no_cube)
    with h5py.File(no_cube, "r+") as f:
        del f["data/demo_0/datagen_info/object_poses/cube"]
    with pytest.raises(ApprenticeError, match=r"demo_0/datagen_info: no pose of object 'cube'"):
        run_generate(gen(no_cube, tmp_path / "out.hdf5", n=1))
    with pytest.raises(ApprenticeError, match="no variant 'D9'"):
        run_generate(gen(lift_source, tmp_path / "out.hdf5", n=1, task_args=("variant=D9",)))
    with pytest.raises(ApprenticeError, match="holds demos of task 'lift', not 'stack'"):
        run_generate(gen(lift_source, tmp_path / "out.hdf5", n=1, task="stack"))
    with pytest.raises(ApprenticeError, match="unknown selection"):
        run_generate(gen(lift_source, tmp_path / "out.hdf5", n=1, selection="best"))


def test_source_of_another_task_is_refused(lift_source: Path) -> None:
    from apprentice.generate.source import load_sources

    with pytest.raises(ApprenticeError, match="holds demos of task 'lift', not 'stack'"):
        load_sources(lift_source, make_task("stack"))


def test_ray_backend_writes_what_the_process_backend_writes(
    lift_source: Path, tmp_path: Path
) -> None:
    ray = pytest.importorskip("ray")
    a, b = tmp_path / "a.hdf5", tmp_path / "b.hdf5"
    run_generate(gen(lift_source, a, n=3))
    try:
        run_generate(gen(lift_source, b, n=3, backend="ray", workers=2))
    finally:
        ray.shutdown()
    for x, y in zip(actions_of(a), actions_of(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_killed_run_resumes_to_the_uninterrupted_output(
    lift_source: Path, tmp_path: Path
) -> None:
    killed, straight = tmp_path / "killed.hdf5", tmp_path / "straight.hdf5"
    argv = ["generate", "--source", str(lift_source), "--n", "40", "--no-progress"]
    code = "import sys; from apprentice.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv, "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    # Each lift demo adds ~50 kB: kill once a few demos are in, mid-run.
    while time.monotonic() < deadline and proc.poll() is None:
        if killed.exists() and killed.stat().st_size > 250_000:
            break
        time.sleep(0.002)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with DemoFile(killed) as f:  # rolls back a half-written demo, if any
        kept = len(f.demo_names)
    assert 0 < kept < 40
    r = run_generate(gen(lift_source, killed, n=40))
    assert r.new_successes == 40 - kept
    run_generate(gen(lift_source, straight, n=40))
    for x, y in zip(actions_of(killed), actions_of(straight), strict=True):
        np.testing.assert_array_equal(x, y)
