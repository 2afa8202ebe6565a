"""The scene axes of `envs.perturb` on the built-in MuJoCo tasks: what each level changes in
the model, and the extra assets (textures, distractors) a perturbed model is built with.

Every reset restores the nominal values first, so a level applies to the episode alone.
A model built without a scene axis is the task's file unchanged; distractors and spare
textures are added to the XML only when their axis is on, so nominal states and renders are
exactly those of the unperturbed task.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import mujoco
import numpy as np

from apprentice.envs.perturb import Perturbations, random_unit, rotate, signed
from apprentice.errors import ApprenticeError

N_DISTRACTORS = 4
"""Distractors at level 1."""
TABLE_HALF = 0.25
"""Distractors stand in [-TABLE_HALF, TABLE_HALF]^2 around the table centre."""
DISTRACTOR_CLEARANCE = 0.09
"""Minimum xy distance (m) from a distractor to an object or fixture of the task."""
N_TEXTURES = 4
"""Spare table textures the colors axis picks from."""
HIDDEN = np.array([0.0, 0.0, -5.0])
"""Where an unused distractor waits: below the table, out of every camera's view."""

_SPARE_TEXTURES = (
    '<texture name="spare_0" type="2d" builtin="checker" width="64" height="64" '
    'rgb1="0.35 0.3 0.25" rgb2="0.55 0.5 0.42"/>',
    '<texture name="spare_1" type="2d" builtin="gradient" width="64" height="64" '
    'rgb1="0.9 0.9 0.95" rgb2="0.3 0.35 0.45"/>',
    '<texture name="spare_2" type="2d" builtin="flat" mark="random" random="0.3" width="64" '
    'height="64" rgb1="0.5 0.45 0.4" markrgb="0.9 0.9 0.9"/>',
    '<texture name="spare_3" type="2d" builtin="checker" width="64" height="64" '
    'rgb1="0.15 0.2 0.3" rgb2="0.8 0.8 0.75"/>',
)


SCENE = "scene.xml"
"""The scene file a task's MJCF includes (the floating gripper's)."""


def build_model(xml_path: Path, perturbations: Perturbations, scene: str = SCENE) -> mujoco.MjModel:
    """The task's model, with its `<include file="scene.xml"/>` swapped for `scene` (another
    body's scene, in the same folder), and spare table materials (colors) and hidden
    distractor bodies (distractors) added when those axes are on."""
    extras = "colors" in perturbations.levels or "distractors" in perturbations.levels
    if scene == SCENE and not extras:
        return mujoco.MjModel.from_xml_path(str(xml_path))
    text = xml_path.read_text()
    if scene != SCENE:
        include = f'<include file="{SCENE}"/>'
        if include not in text:
            raise ApprenticeError(f"{xml_path} has no {include} to swap for {scene}")
        text = text.replace(include, f'<include file="{scene}"/>')
    extra_assets, extra_bodies = [], []
    if "colors" in perturbations.levels:
        for i, texture in enumerate(_SPARE_TEXTURES):
            extra_assets.append(texture)
            extra_assets.append(f'<material name="spare_{i}" texture="spare_{i}" texrepeat="8 8"/>')
    if "distractors" in perturbations.levels:
        for i in range(N_DISTRACTORS):
            extra_bodies.append(
                f'<body name="distractor_{i}" pos="{HIDDEN[0]} {HIDDEN[1]} {HIDDEN[2]}">'
                f'<geom name="distractor_{i}" type="box" size="0.02 0.02 0.02" '
                'rgba="0.5 0.5 0.5 1"/></body>'
            )
    head, sep, tail = text.rpartition("</worldbody>")
    text = head + "".join(extra_bodies) + sep + tail
    if extra_assets:
        head, sep, tail = text.rpartition("</mujoco>")
        text = head + "<asset>" + "".join(extra_assets) + "</asset>" + sep + tail
    assets = {p.name: p.read_bytes() for p in xml_path.parent.glob("*.xml")}
    return mujoco.MjModel.from_xml_string(text, assets)


class SceneRandomizer:
    """Applies the scene axes (light, colors, camera, object_scale, object_mass, friction,
    distractors) to a built-in task's model at each reset."""

    def __init__(
        self,
        model: mujoco.MjModel,
        perturbations: Perturbations,
        object_bodies: Sequence[int] | np.ndarray,
        object_names: Sequence[str],
    ) -> None:
        self.model = model
        self.p = perturbations
        m = model
        self.object_bodies = np.asarray(object_bodies, dtype=int)
        self.object_geoms = np.flatnonzero(np.isin(m.geom_bodyid, self.object_bodies))
        self.scales = {name: 1.0 for name in object_names}
        """Each object's size factor this episode (1 without object_scale)."""
        self._names = tuple(object_names)
        self._nominal = {
            "light_diffuse": m.light_diffuse.copy(),
            "light_dir": m.light_dir.copy(),
            "geom_rgba": m.geom_rgba.copy(),
            "geom_matid": m.geom_matid.copy(),
            "mat_rgba": m.mat_rgba.copy(),
            "cam_pos": m.cam_pos.copy(),
            "cam_quat": m.cam_quat.copy(),
            "geom_size": m.geom_size.copy(),
            "geom_rbound": m.geom_rbound.copy(),
            "geom_aabb": m.geom_aabb.copy(),
            "body_mass": m.body_mass.copy(),
            "body_inertia": m.body_inertia.copy(),
            "geom_friction": m.geom_friction.copy(),
            "body_pos": m.body_pos.copy(),
        }
        self._table = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "table")
        self._spare_materials = [
            i for i in range(m.nmat) if (m.material(i).name or "").startswith("spare_")
        ]
        self._distractors = [
            m.body(f"distractor_{i}").id
            for i in range(N_DISTRACTORS)
            if "distractors" in perturbations.levels
        ]

    def reset(self, rngs: Mapping[str, np.random.Generator]) -> bool:
        """Restore the nominal model, then draw this episode's light, colours, cameras and
        objects. Distractors are placed later (`place_distractors`), once the objects are.
        Returns whether masses or sizes may have changed (then the model's derived constants
        need `mj_setConst`)."""
        m = self.model
        for field, value in self._nominal.items():
            getattr(m, field)[:] = value
        self.scales = dict.fromkeys(self._names, 1.0)
        if "light" in rngs:
            self._light(rngs["light"])
        if "colors" in rngs:
            self._colors(rngs["colors"])
        if "camera" in rngs:
            self._cameras(rngs["camera"])
        if "object_scale" in rngs:
            self._scale(rngs["object_scale"])
        if "object_mass" in rngs:
            rng = rngs["object_mass"]
            level = self.p.draw("object_mass", rng)
            for body in self.object_bodies:
                factor = 5.0 ** (signed(rng) * level)
                m.body_mass[body] *= factor
                m.body_inertia[body] *= factor
        if "friction" in rngs:
            # MuJoCo gives a contact the larger friction of its two geoms: lowering the objects'
            # alone would leave every contact with the pads (1.5) or the table (1) unchanged.
            # One factor on every geom scales every contact by it.
            rng = rngs["friction"]
            level = self.p.draw("friction", rng)
            m.geom_friction[:, 0] *= 4.0 ** (signed(rng) * level)
        return bool({"object_scale", "object_mass"} & set(rngs))

    def _light(self, rng: np.random.Generator) -> None:
        m = self.model
        level = self.p.draw("light", rng)
        for i in range(m.nlight):
            intensity = 1.0 + signed(rng) * 0.6 * level
            tint = 1.0 - 0.5 * level * rng.uniform(0.0, 1.0, 3)
            m.light_diffuse[i] = np.clip(m.light_diffuse[i] * intensity * tint, 0.0, 1.0)
            direction = m.light_dir[i] / max(float(np.linalg.norm(m.light_dir[i])), 1e-12)
            # Tilt by 60 L degrees about a horizontal axis drawn at random.
            azimuth = rng.uniform(0.0, 2.0 * math.pi)
            axis = np.cross(direction, [math.cos(azimuth), math.sin(azimuth), 0.0])
            axis /= max(float(np.linalg.norm(axis)), 1e-12)
            m.light_dir[i] = rotate(direction, axis, math.radians(60.0) * level)

    def _colors(self, rng: np.random.Generator) -> None:
        m = self.model
        level = self.p.draw("colors", rng)
        for geom in self.object_geoms:
            target = rng.uniform(0.0, 1.0, 3)
            m.geom_rgba[geom, :3] += level * (target - m.geom_rgba[geom, :3])
        if self._table >= 0:
            swap = rng.random() < level
            choice = int(rng.integers(len(self._spare_materials))) if self._spare_materials else -1
            if swap and choice >= 0:
                m.geom_matid[self._table] = self._spare_materials[choice]
            mat = m.geom_matid[self._table]
            if mat >= 0:
                target = rng.uniform(0.3, 1.0, 3)
                m.mat_rgba[mat, :3] += 0.5 * level * (target - m.mat_rgba[mat, :3])

    def _cameras(self, rng: np.random.Generator) -> None:
        m = self.model
        level = self.p.draw("camera", rng)
        for cam in range(m.ncam):
            on_world = m.cam_bodyid[cam] == 0
            shift = (0.05 if on_world else 0.01) * level
            m.cam_pos[cam] += shift * random_unit(rng)
            turn = np.zeros(4)
            mujoco.mju_axisAngle2Quat(turn, random_unit(rng), math.radians(8.0) * level)
            quat = np.zeros(4)
            mujoco.mju_mulQuat(quat, turn, m.cam_quat[cam])
            m.cam_quat[cam] = quat

    def _scale(self, rng: np.random.Generator) -> None:
        m = self.model
        level = self.p.draw("object_scale", rng)
        for name, body in zip(self._names, self.object_bodies, strict=True):
            s = 1.0 + signed(rng) * 0.25 * level
            self.scales[name] = s
            geoms = self.object_geoms[m.geom_bodyid[self.object_geoms] == body]
            m.geom_size[geoms] *= s
            m.geom_rbound[geoms] *= s
            m.geom_aabb[geoms] *= s
            m.body_mass[body] *= s**3  # same density
            m.body_inertia[body] *= s**5

    def place_distractors(
        self, rng: np.random.Generator | None, occupied: Sequence[np.ndarray]
    ) -> None:
        """Put this episode's distractors on the table, clear of the `occupied` xy points (the
        objects' and fixtures' positions); the rest wait hidden."""
        if rng is None or not self._distractors:
            return
        m = self.model
        count = round(N_DISTRACTORS * self.p.draw("distractors", rng))
        taken = [np.asarray(p[:2], dtype=np.float64) for p in occupied]
        for i, body in enumerate(self._distractors):
            half = rng.uniform(0.012, 0.03, 3)
            half[2] = rng.uniform(0.01, 0.04)
            colour = rng.uniform(0.1, 0.95, 3)
            spot = None
            for _ in range(50):
                xy = rng.uniform(-TABLE_HALF, TABLE_HALF, 2)
                if all(np.linalg.norm(xy - t) > DISTRACTOR_CLEARANCE for t in taken):
                    spot = xy
                    break
            geom = m.body_geomadr[body]
            m.geom_size[geom] = half
            m.geom_rbound[geom] = float(np.linalg.norm(half))
            m.geom_aabb[geom, 3:] = half
            m.geom_rgba[geom, :3] = colour
            if i < count and spot is not None:
                m.body_pos[body] = (spot[0], spot[1], half[2])
                taken.append(spot)
            else:
                m.body_pos[body] = HIDDEN
