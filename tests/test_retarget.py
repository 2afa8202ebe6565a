"""apprentice.retarget: resampling, alignment and smoothing on synthetic tracks, and end to end
on lift: oracle demos -> mocap-like tracks -> retargeted demos that train, with the reason for
each track dropped and one line for each kind of bad input."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from apprentice.cli.main import main
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.data.reader import DemoFile
from apprentice.errors import ApprenticeError
from apprentice.retarget.align import (
    ObjectMatch,
    apply,
    estimate_transforms,
    kabsch,
    pose_markers,
    read_frame,
)
from apprentice.retarget.replay import gripper_commands
from apprentice.retarget.resample import (
    control_times,
    matrix_to_quat,
    poses_from,
    quat_to_matrix,
    resample,
    slerp,
)
from apprentice.retarget.smooth import savgol, smooth_poses
from apprentice.retarget.synthetic import FRAME_FILE, make_tracks, random_frame, rotvec_to_matrix
from apprentice.retarget.tracks import Track, read_track, write_track


def _yaw_quat(angle: np.ndarray) -> np.ndarray:
    """Quaternions (N, 4) w x y z of turns `angle` (N,) about z."""
    return np.stack([np.cos(angle / 2), 0 * angle, 0 * angle, np.sin(angle / 2)], axis=1)


def _jittered_times(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    return 3.0 + np.arange(n) / rate + rng.uniform(-0.3, 0.3, n) / rate


# ---- resampling ------------------------------------------------------------------------------


def test_resampling_is_exact_on_linear_motion_and_uniform_turning() -> None:
    rng = np.random.default_rng(0)
    t = _jittered_times(61, 30.0, rng)  # 2 s at ~30 Hz
    velocity, spin = np.array([0.1, -0.05, 0.2]), 1.3  # m/s, rad/s
    pos = (t - t[0])[:, None] * velocity
    quat = _yaw_quat(spin * (t - t[0]))
    quat[1::2] *= -1  # q and -q are one rotation: the slerp must not take the long way
    grip = np.clip((t - t[0]) - 0.5, 0.0, 1.0)
    times = control_times(t, 20.0)
    assert np.allclose(np.diff(times), 0.05) and times[0] == t[0] and times[-1] <= t[-1]
    pos_k, quat_k, _ = resample(t, pos, quat, grip, times)
    assert np.allclose(pos_k, (times - t[0])[:, None] * velocity, atol=1e-12)
    # A constant-rate turn is linear in angle, which is what slerp interpolates.
    want = quat_to_matrix(_yaw_quat(spin * (times - t[0])))
    assert np.allclose(quat_to_matrix(quat_k), want, atol=1e-9)
    assert np.all(np.sum(quat_k[1:] * quat_k[:-1], axis=1) > 0)  # one hemisphere


def test_slerp_turns_at_constant_rate_along_the_shorter_arc() -> None:
    q0, q1 = _yaw_quat(np.array([0.0])), _yaw_quat(np.array([2.0]))
    for u in (0.0, 0.25, 0.5, 1.0):
        got = slerp(q0, -q1, np.array([u]))  # -q1: the same rotation as q1
        assert np.allclose(quat_to_matrix(got), quat_to_matrix(_yaw_quat(np.array([2.0 * u]))))
    rng = np.random.default_rng(1)
    q = rng.standard_normal((50, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    back = matrix_to_quat(quat_to_matrix(q))
    assert np.allclose(np.abs(np.sum(back * q, axis=1)), 1.0)  # the same rotations


# ---- alignment -------------------------------------------------------------------------------


def test_kabsch_on_object_markers_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(2)
    truth = random_frame(rng)
    world = poses_from(
        rng.uniform(-0.1, 0.1, (3, 3)), matrix_to_quat(quat_to_matrix(rng.standard_normal((3, 4))))
    )
    mocap = apply(np.linalg.inv(truth), world)
    assert np.allclose(kabsch(pose_markers(mocap), pose_markers(world)), truth, atol=1e-9)
    # One object pose alone fixes the frame: its origin and its three axis tips.
    assert np.allclose(kabsch(pose_markers(mocap[:1]), pose_markers(world[:1])), truth, atol=1e-9)


def test_pooled_alignment_leaves_out_a_scene_that_does_not_match() -> None:
    rng = np.random.default_rng(3)
    truth = random_frame(rng)
    matches = []
    for _ in range(30):
        scene = poses_from(rng.uniform(-0.1, 0.1, (1, 3)), _yaw_quat(rng.uniform(-1, 1, 1)))
        tracked = apply(np.linalg.inv(truth), scene)
        tracked[:, :3, 3] += 0.003 * rng.standard_normal(3)  # mm of tracking noise
        matches.append(ObjectMatch(tracked, scene))
    moved = replace(matches[0], scene=matches[0].scene.copy())
    moved.scene[:, :3, 3] += [0.3, 0.0, 0.0]  # this scene is not the one that was tracked
    probe = poses_from(rng.uniform(-0.2, 0.2, (20, 3)), _yaw_quat(np.zeros(20)))

    def error(transform: np.ndarray) -> float:
        """The largest error (m) the transform makes over the workspace."""
        mocap = apply(np.linalg.inv(truth), probe)
        return float(np.abs(apply(transform, mocap) - probe)[:, :3, 3].max())

    robust = estimate_transforms([moved, *matches[1:]], pooled=True, outlier=0.02)
    tilted = estimate_transforms([moved, *matches[1:]], pooled=True)
    assert error(robust[0]) < 0.005 and error(tilted[0]) > 0.02
    assert all(np.array_equal(t, robust[0]) for t in robust)  # one frame for the session


def test_frame_file_is_a_matrix_or_an_object_and_must_be_rigid(tmp_path: Path) -> None:
    m = random_frame(np.random.default_rng(4))
    (tmp_path / "m.json").write_text(json.dumps(m.tolist()))
    assert np.allclose(read_frame(tmp_path / "m.json").mocap_to_world, m)
    offset = np.eye(4)
    offset[2, 3] = 0.1
    both = {"mocap_to_world": m.tolist(), "wrist_to_eef": offset.tolist()}
    (tmp_path / "o.json").write_text(json.dumps(both))
    frame = read_frame(tmp_path / "o.json")
    assert np.allclose(frame.to_world(np.eye(4)[None])[0], m @ offset)
    (tmp_path / "s.json").write_text(json.dumps((2 * np.eye(4)).tolist()))
    with pytest.raises(ApprenticeError, match="not a rigid transform"):
        read_frame(tmp_path / "s.json")


# ---- smoothing -------------------------------------------------------------------------------


def test_savgol_keeps_polynomials_and_reduces_noise() -> None:
    t = np.linspace(0.0, 3.0, 60)
    quadratic = np.stack([1 + 2 * t - t**2, 0.5 * t], axis=1)
    assert np.allclose(savgol(quadratic, 7, 2), quadratic)  # ends included
    rng = np.random.default_rng(5)
    clean = np.stack([0.1 * np.sin(2 * t), 0.05 * t, 0.2 + 0.02 * np.cos(3 * t)], axis=1)
    noisy_pos = clean + 0.003 * rng.standard_normal(clean.shape)
    angle = 0.8 * np.sin(t)
    turns = quat_to_matrix(_yaw_quat(angle))
    tilt = 0.03 * rng.standard_normal((len(t), 3))  # ~1.7 deg of tracking noise
    noisy_quat = matrix_to_quat(rotvec_to_matrix(tilt) @ turns)
    pos, quat = smooth_poses(noisy_pos, noisy_quat, 7, 2)

    def rms(x: np.ndarray) -> float:
        return float(np.sqrt(np.mean(x**2)))

    assert rms(pos - clean) < 0.7 * rms(noisy_pos - clean)
    before = _angles(quat_to_matrix(noisy_quat), turns)
    after = _angles(quat_to_matrix(quat), turns)
    assert rms(after) < 0.7 * rms(before)
    assert np.allclose(np.linalg.norm(quat, axis=1), 1.0)


def _angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = (np.einsum("nij,nij->n", a, b) - 1.0) / 2.0
    return np.arccos(np.clip(cos, -1.0, 1.0))


def test_grip_hysteresis_ignores_noise_around_the_threshold() -> None:
    grip = np.array([0.0, 0.55, 0.45, 0.7, 0.5, 0.45, 0.3, 0.5, 0.9])
    assert gripper_commands(grip).tolist() == [-1, -1, -1, 1, 1, 1, -1, -1, 1]


# ---- tracks on disk --------------------------------------------------------------------------


def _track(n: int = 40, **kw: object) -> Track:
    rng = np.random.default_rng(6)
    t = _jittered_times(n, 30.0, rng)
    base = {
        "name": "x.npz",
        "t": t,
        "pos": np.tile([0.0, 0.0, 0.2], (n, 1)),
        "quat": np.tile([0.0, 1.0, 0.0, 0.0], (n, 1)),
        "grip": np.zeros(n),
        "seed": 3,
    }
    base.update(kw)
    return Track(**base)  # type: ignore[arg-type]


def test_csv_with_a_json_sidecar_reads_as_the_npz(tmp_path: Path) -> None:
    track = _track(object_pos=np.array([[0.0, 0.0, 0.02]]), object_quat=np.array([[1.0, 0, 0, 0]]))
    npz = read_track(write_track(track, tmp_path / "a.npz"))
    rows = np.column_stack([track.t, track.pos, track.quat, track.grip])
    header = "qx,t,x,y,z,qw,qy,qz,grip,extra"  # any column order; more columns are ignored
    order = [5, 0, 1, 2, 3, 4, 6, 7, 8]
    with (tmp_path / "b.csv").open("w") as f:
        f.write(header + "\n")
        for row in rows:
            f.write(",".join(str(row[i]) for i in order) + ",7\n")
    sidecar = {"seed": 3, "object_pos": [0.0, 0.0, 0.02], "object_quat": [1.0, 0, 0, 0]}
    (tmp_path / "b.json").write_text(json.dumps(sidecar))
    csv = read_track(tmp_path / "b.csv")
    for a, b in ((npz, csv), (npz, track)):
        assert np.allclose(a.t, b.t) and np.allclose(a.pos, b.pos) and np.allclose(a.quat, b.quat)
        assert a.seed == b.seed == 3 and a.object_pos is not None and b.object_pos is not None
        assert np.allclose(a.object_pos, b.object_pos)


# ---- end to end on lift ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def lift_tracks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tracks (default noise) of 3 lift oracle demos, with their true frame beside them."""
    work = tmp_path_factory.mktemp("retarget")
    demos = work / "demos.hdf5"
    collect_demos(CollectConfig(task="lift", n=3, out=str(demos), workers=1, progress=False))
    made = make_tracks(demos, work / "tracks", seed=0)
    assert len(made.paths) == 3 and made.frame_path.name == FRAME_FILE
    return work / "tracks"


def test_make_tracks_is_deterministic_and_looks_like_mocap(
    lift_tracks: Path, tmp_path: Path
) -> None:
    again = make_tracks(lift_tracks.parent / "demos.hdf5", tmp_path / "again", seed=0)
    for path in again.paths:
        a, b = read_track(path), read_track(lift_tracks / path.name)
        assert np.array_equal(a.t, b.t) and np.array_equal(a.pos, b.pos)
        dt = np.diff(a.t)
        assert abs(np.median(dt) - 1 / 30) < 2e-3 and dt.std() > 1e-4  # 30 Hz, jittered
        assert a.seed is not None and a.object_names == ("cube",)
        assert a.grip.min() >= 0 and a.grip.max() <= 1 and (a.grip > 0.6).any()


def test_lift_tracks_retarget_into_demos_that_train(
    lift_tracks: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mocap.hdf5"
    assert main(["retarget", str(lift_tracks), "--task", "lift", "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "mocap.report.json").read_text())
    assert report["kept"] >= 2 and report["total"] == 3, report["per_track"]
    assert "kept as demo_0" in printed
    with DemoFile(out) as f:
        assert len(f.demo_names) == report["kept"]
        assert set(f.masks) >= {"train", "valid", "success"}
        ep = f.read(f.demo_names[0])
        assert ep.success and ep.source == "mocap" and ep.states.shape[0] == ep.num_samples
        assert ep.attrs["track"].endswith(".npz") and np.abs(ep.actions).max() <= 1.0
    # The true frame given instead of the estimated one works as well.
    given = tmp_path / "given.hdf5"
    frame = str(lift_tracks / FRAME_FILE)
    assert main(["retarget", str(lift_tracks), "--out", str(given), "--frame", frame,
                 "--no-progress"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "given.report.json").read_text())["kept"] >= 2
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(out), "--out", str(run), "--epochs", "1",
                 "--steps-per-epoch", "2", "--eval-every", "0", "--policy", "mlp",
                 "--batch-size", "4", "--threads", "1"]) == 0  # fmt: skip
    assert (run / "last.pt").exists() or (run / "best.pt").exists()


def test_dropped_tracks_say_why(
    lift_tracks: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tracks = tmp_path / "tracks"
    shutil.copytree(lift_tracks, tracks)
    good = read_track(tracks / "demo_0.npz")
    write_track(replace(good, grip=np.zeros_like(good.grip)), tracks / "open_hand.npz")
    keep = np.r_[0:10, 25 : len(good.t)]  # half a second lost: a tracker dropout
    gap = replace(good, t=good.t[keep], pos=good.pos[keep], quat=good.quat[keep],
                  grip=good.grip[keep])  # fmt: skip
    write_track(gap, tracks / "dropout.npz")
    assert good.seed is not None  # the person's scene is not the one this seed draws
    write_track(replace(good, seed=good.seed + 100), tracks / "other_scene.npz")
    out = tmp_path / "out.hdf5"
    assert main(["retarget", str(tracks), "--out", str(out), "--skip-bad", "--no-progress"]) == 0
    report = json.loads((tmp_path / "out.report.json").read_text())
    why = {Path(r["track"]).name: r["reason"] for r in report["per_track"]}
    assert why["open_hand.npz"] == "grip never closed"
    assert (
        why["dropout.npz"].startswith("bad track: gap of ")
        and "index 9 and 10" in why["dropout.npz"]
    )
    assert why["other_scene.npz"].startswith("misaligned: the tracked objects lie ")
    assert report["kept"] >= 2 and why["demo_0.npz"] == ""
    assert "grip never closed" in capsys.readouterr().out


# ---- bad input: one line, exit 2 -------------------------------------------------------------


def _write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def _bad_inputs(tmp: Path) -> list[tuple[list[str], str]]:
    n = 30
    t = np.arange(n) / 30.0
    ok = {"t": t, "wrist_pos": np.zeros((n, 3)), "wrist_quat": np.tile([1.0, 0, 0, 0], (n, 1)),
          "grip": np.zeros(n), "seed": np.asarray(1)}  # fmt: skip
    gap_t = t.copy()
    gap_t[12:] += 0.5
    back_t = t.copy()
    back_t[7] = back_t[6]
    nan_pos = ok["wrist_pos"].copy()
    nan_pos[4, 1] = np.nan
    cases = {
        "gap.npz": ({**ok, "t": gap_t}, "gap.npz: gap of 0.533 s between index 11 and 12"),
        "back.npz": ({**ok, "t": back_t}, "back.npz: t does not increase at index 7"),
        "nan.npz": ({**ok, "wrist_pos": nan_pos}, "nan.npz: wrist_pos is NaN or inf at index 4"),
        "shape.npz": (
            {**ok, "wrist_pos": np.zeros((n, 2))},
            "shape.npz: wrist_pos has shape (30, 2), expected (T, 3)",
        ),
        "empty.npz": ({"labels": np.zeros(3)}, "empty.npz: holds neither poses"),
        "video.npz": ({"frames": np.zeros((2, 8, 8, 3), np.uint8)}, "holds images but no poses"),
    }
    out = []
    for name, (arrays, message) in cases.items():
        path = _write_npz(tmp / name, **arrays)
        out.append((["retarget", str(path), "--frame", str(tmp / "eye.json")], message))
    (tmp / "eye.json").write_text(json.dumps(np.eye(4).tolist()))
    (tmp / "cols.csv").write_text("t,x,y,z,qw,qx,qy,grip\n0,0,0,0,1,0,0,0\n")
    out.append((["retarget", str(tmp / "cols.csv")], "header lacks column(s) qz"))
    good = str(_write_npz(tmp / "good.npz", **ok))
    out.append((["retarget", good, "--task", "lfit"], "unknown task 'lfit'"))
    out.append((["retarget", good], "gives no object_pos/object_quat to align"))
    return out


def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, message in _bad_inputs(tmp_path):
        argv = [*argv, "--out", str(tmp_path / "never.hdf5"), "--no-progress"]
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("apprentice retarget: error: "), err
        assert message in err, (message, err)
    assert not (tmp_path / "never.hdf5").exists()


def test_a_track_shorter_than_the_smoothing_window_still_resamples() -> None:
    track = _track(n=4)
    times = control_times(track.t, 20.0)
    pos, quat, _ = resample(track.t, track.pos, track.quat, track.grip, times)
    smoothed, _ = smooth_poses(pos, quat, 7, 2)
    assert smoothed.shape == pos.shape and np.allclose(smoothed, pos)
    assert math.isclose(times[1] - times[0], 0.05)
