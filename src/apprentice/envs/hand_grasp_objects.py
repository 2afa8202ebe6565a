"""The objects of hand_grasp: four shapes, the ranges their sizes are drawn from, and their
MuJoCo geom sizes, masses and inertias.

An object is described by its shape and its half extents (x, y, z) in its body frame, which is
what the task keeps in MuJoCo's userdata and shows the policy.
"""

from __future__ import annotations

import math

import numpy as np

SHAPES = ("box", "cylinder", "sphere", "capsule")
HALF_EXTENT_RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "box": ((0.018, 0.03), (0.018, 0.03), (0.02, 0.035)),
    "cylinder": ((0.02, 0.03), (0.025, 0.04)),
    "sphere": ((0.022, 0.032),),
    "capsule": ((0.018, 0.024), (0.02, 0.035)),
}
"""Per shape, the ranges (m) its size parameters are drawn from: the box's half extents x, y,
z; the cylinder's radius and half height; the sphere's radius; the capsule's radius and the
half length of its straight part. The largest must match the geom sizes in hand_grasp.xml."""
DENSITY = 600.0
"""kg/m^3 of every object (hard wood): 27 to 145 g."""


def object_inertia(shape: str, half: np.ndarray) -> tuple[float, np.ndarray]:
    """Mass (kg) and principal inertia (3,) of a solid `shape` of half extents `half` (x, y, z)
    in its body frame, at DENSITY."""
    a, b, c = (float(v) for v in half)
    if shape == "box":
        m = DENSITY * 8 * a * b * c
        return m, m / 3 * np.array([b * b + c * c, a * a + c * c, a * a + b * b])
    if shape == "cylinder":
        m = DENSITY * math.pi * a * a * 2 * c
        side = m * (3 * a * a + 4 * c * c) / 12
        return m, np.array([side, side, m * a * a / 2])
    if shape == "sphere":
        m = DENSITY * 4 / 3 * math.pi * a**3
        return m, np.full(3, 0.4 * m * a * a)
    # Capsule along x: radius r = c, straight part 2 l; a cylinder plus two hemispheres.
    r, length = c, 2 * (a - c)
    m_cyl = DENSITY * math.pi * r * r * length
    m_caps = DENSITY * 4 / 3 * math.pi * r**3
    axial = m_cyl * r * r / 2 + m_caps * 0.4 * r * r
    side = m_cyl * (length**2 / 12 + r * r / 4) + m_caps * (
        0.4 * r * r + length**2 / 4 + 3 * length * r / 8
    )
    return m_cyl + m_caps, np.array([axial, side, side])


def geom_size(shape: str, half: np.ndarray) -> np.ndarray:
    """MuJoCo's size (3,) of the `shape` geom whose body-frame half extents are `half`."""
    a, _, c = (float(v) for v in half)
    return {
        "box": np.array(half, dtype=np.float64),
        "cylinder": np.array([a, c, 0.0]),
        "sphere": np.array([a, 0.0, 0.0]),
        "capsule": np.array([c, a - c, 0.0]),
    }[shape]


def draw_half_extents(shape: str, rng: np.random.Generator) -> np.ndarray:
    """Body-frame half extents (3,) of a `shape` drawn from HALF_EXTENT_RANGES."""
    p = [float(rng.uniform(lo, hi)) for lo, hi in HALF_EXTENT_RANGES[shape]]
    if shape == "box":
        return np.array(p)
    if shape == "cylinder":
        return np.array([p[0], p[0], p[1]])
    if shape == "sphere":
        return np.full(3, p[0])
    return np.array([p[0] + p[1], p[0], p[0]])  # capsule: lying along x
