"""`apprentice annotate`: datagen_info recomputed by replay equals what was recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from apprentice.cli.main import main
from apprentice.data import DemoFile
from apprentice.errors import ApprenticeError
from apprentice.generate.annotate import AnnotateConfig, annotate
from apprentice.generate.run import GenerateConfig, run_generate


def strip_datagen_info(src: Path, dst: Path) -> None:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        for name in f["data"]:
            del f[f"data/{name}/datagen_info"]


def test_replay_recomputes_the_recorded_datagen_info(lift_source: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.hdf5"
    strip_datagen_info(lift_source, bare)
    r = annotate(AnnotateConfig(source=str(bare), progress=False))
    assert (r.annotated, r.kept) == (4, 0)
    with DemoFile(lift_source) as a, DemoFile(bare) as b:
        for name in a.demo_names:
            x, y = a.read_datagen_info(name), b.read_datagen_info(name)
            assert x is not None and y is not None
            np.testing.assert_allclose(y.eef_pose, x.eef_pose, atol=1e-9)
            np.testing.assert_allclose(y.target_pose, x.target_pose, atol=1e-9)
            np.testing.assert_array_equal(y.gripper_action, x.gripper_action)
            assert set(y.object_poses) == set(x.object_poses)
            for k in x.object_poses:
                np.testing.assert_allclose(y.object_poses[k], x.object_poses[k], atol=1e-9)
            for k in x.subtask_term_signals:
                np.testing.assert_array_equal(y.subtask_term_signals[k], x.subtask_term_signals[k])
    # A second run leaves annotated demos alone; the annotated file seeds generation.
    assert annotate(AnnotateConfig(source=str(bare), progress=False)).kept == 4
    out = tmp_path / "gen.hdf5"
    assert run_generate(GenerateConfig(str(bare), n=2, out=str(out), progress=False)).successes


def test_manual_marks_set_the_subtask_boundaries(lift_source: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.hdf5"
    strip_datagen_info(lift_source, bare)
    marks = tmp_path / "marks.json"
    marks.write_text(json.dumps({"demo_0": [7], "demo_1": [9]}))
    annotate(AnnotateConfig(source=str(bare), marks=str(marks), progress=False))
    with DemoFile(bare) as f:
        info = f.read_datagen_info("demo_0")
        assert info is not None
        grasp = info.subtask_term_signals["grasp"]
        assert not grasp[:7].any() and grasp[7:].all()
        other = f.read_datagen_info("demo_2")
        assert other is not None and not other.subtask_term_signals["grasp"][:7].all()


@pytest.mark.parametrize(
    ("marks", "message"),
    [
        ({"demo_0": [3, 5]}, "2 marks, but the task has 1 subtask boundaries"),
        ({"demo_0": [0]}, "must increase strictly"),
        ({"demo_0": ["x"]}, "expected a list of step indices"),
        ({"demo_99": [3]}, "marks for demos not in"),
    ],
)
def test_bad_marks_are_named(
    lift_source: Path, tmp_path: Path, marks: dict[str, list[object]], message: str
) -> None:
    bare = tmp_path / "bare.hdf5"
    strip_datagen_info(lift_source, bare)
    path = tmp_path / "marks.json"
    path.write_text(json.dumps(marks))
    with pytest.raises(ApprenticeError, match=message):
        annotate(AnnotateConfig(source=str(bare), marks=str(path), progress=False))


def test_a_file_that_cannot_be_replayed_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], demo_file: Path
) -> None:
    # The synthetic demo file has no simulator states to replay.
    copy = tmp_path / "demos.hdf5"
    shutil.copy(demo_file, copy)
    assert main(["annotate", str(copy), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("apprentice annotate: error:") and "cannot be replayed" in err


def test_generate_cli_prints_the_rate(
    lift_source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "new" / "gen.hdf5"  # the missing folder is created
    argv = ["generate", "--source", str(lift_source), "--n", "2", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    assert "data generation rate" in capsys.readouterr().out
    assert main([*argv, "--no-progress", "--action-noise", "-1"]) == 2
    assert "--action-noise" in capsys.readouterr().err
    assert main([*argv, "--no-progress", "--workers", "0"]) == 2
    assert "--workers must be >= 1, got 0" in capsys.readouterr().err
