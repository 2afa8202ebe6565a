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
