"""The pose math of generation, checked against poses worked out by hand."""

from __future__ import annotations

import math

import numpy as np

from apprentice.generate.poses import interpolate_poses, pose_distance, pose_inv, transform_segment


def pose(x: float, y: float, z: float, yaw: float = 0.0) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    out = np.eye(4)
    out[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    out[:3, 3] = (x, y, z)
    return out


def test_pose_inv_undoes_the_pose() -> None:
    p = pose(0.3, -0.2, 0.1, yaw=1.1)
    np.testing.assert_allclose(p @ pose_inv(p), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(pose_inv(p) @ p, np.eye(4), atol=1e-12)


def test_segment_follows_a_moved_and_turned_object() -> None:
    # Source: the object at (1, 0, 0) unturned; the eef 10 cm along its x axis, 20 cm up.
    src_obj = pose(1.0, 0.0, 0.0)
    eef = np.stack([pose(1.1, 0.0, 0.2), pose(1.0, 0.0, 0.05, yaw=0.3)])
    # New scene: the object at (0, 1, 0), turned a quarter turn: its x axis is world +y.
    new_obj = pose(0.0, 1.0, 0.0, yaw=math.pi / 2)
    out = transform_segment(eef, src_obj, new_obj)
    # 10 cm along the object's x axis is now 10 cm along world y.
    np.testing.assert_allclose(out[0], pose(0.0, 1.1, 0.2, yaw=math.pi / 2), atol=1e-12)
    # Directly above the object stays directly above it; the eef's yaw turns with the object.
    np.testing.assert_allclose(out[1], pose(0.0, 1.0, 0.05, yaw=math.pi / 2 + 0.3), atol=1e-12)


def test_unmoved_object_leaves_the_segment_alone() -> None:
    obj = pose(0.2, 0.1, 0.0, yaw=0.4)
    eef = np.stack([pose(0.0, 0.0, 0.3, yaw=-0.2)])
    np.testing.assert_allclose(transform_segment(eef, obj, obj), eef, atol=1e-12)


def test_interpolation_is_evenly_spaced_and_excludes_the_ends() -> None:
    start, end = pose(0.0, 0.0, 0.0), pose(0.4, 0.0, 0.2, yaw=math.pi / 2)
    mid = interpolate_poses(start, end, 3)
    assert mid.shape == (3, 4, 4)
    np.testing.assert_allclose(mid[:, :3, 3], [[0.1, 0, 0.05], [0.2, 0, 0.1], [0.3, 0, 0.15]])
    for k, frac in enumerate((0.25, 0.5, 0.75)):
        np.testing.assert_allclose(mid[k], pose(*mid[k, :3, 3], yaw=frac * math.pi / 2), atol=1e-9)
    assert interpolate_poses(start, end, 0).shape == (0, 4, 4)


def test_pose_distance_adds_metres_and_weighted_radians() -> None:
    a, b = pose(0.0, 0.0, 0.0), pose(0.3, 0.4, 0.0, yaw=0.5)
    assert math.isclose(pose_distance(a, b), 0.5 + 0.5)
    assert math.isclose(pose_distance(a, b, rot_weight=0.0), 0.5)
    assert pose_distance(b, b) < 1e-6


def test_a_held_object_follows_the_source_path_despite_another_grasp() -> None:
    from types import SimpleNamespace

    from apprentice.data.episode import DatagenInfo
    from apprentice.envs import Subtask
    from apprentice.generate.attempt import GenerationSettings, SegmentPlayer
    from apprentice.generate.source import SourceDemo

    # Source: the nut hangs 1 cm ahead of the eef (x), 5 cm below it.
    eef_src = np.stack([pose(0.0, 0.0, 0.1), pose(0.2, 0.0, 0.1)])
    nut_src = np.stack([pose(0.01, 0.0, 0.05), pose(0.21, 0.0, 0.05)])
    peg = np.tile(np.eye(4), (2, 1, 1))
    info = DatagenInfo(eef_src, eef_src, np.ones((2, 1)), {"nut": nut_src, "peg": peg}, {})
    demo = SourceDemo("demo_0", info, ())
    sub = Subtask("peg", None, held="nut")
    # Now the nut is held 3 cm ahead of the eef, first straight, then also turned 0.2 rad.
    for yaw in (0.0, 0.2):
        now_eef, now_nut = pose(0.0, 0.0, 0.1), pose(0.03, 0.0, 0.05, yaw=yaw)
        task = SimpleNamespace(
            eef_pose=lambda e=now_eef: e, object_poses=lambda n=now_nut: {"nut": n}
        )
        player = SegmentPlayer(
            task,  # type: ignore[arg-type]
            [demo],
            (sub,),
            GenerationSettings(),
            np.random.default_rng(0),
        )
        moved = eef_src @ player._grasp_correction("nut", demo, 0)
        # The nut, carried as it is held now, retraces the source's nut path exactly.
        in_hand_now = pose_inv(now_eef) @ now_nut
        np.testing.assert_allclose(moved @ in_hand_now, nut_src, atol=1e-12)
        if yaw == 0.0:
            # Held 2 cm further ahead, the eef must stop 2 cm short: at x = 0.18, not 0.2.
            np.testing.assert_allclose(moved[-1], pose(0.18, 0.0, 0.1), atol=1e-12)
