"""Which OpenGL backend MuJoCo renders cameras with, chosen before mujoco is imported.

MuJoCo reads MUJOCO_GL once, when its rendering module loads: unset, it asks GLFW for a window
context, which needs a display. A shell with no display (a server, a container, CI) then
fails at the first camera frame. EGL renders offscreen without one (software rendering where
no GPU is attached), so it is the default there; a variable the user set is never changed.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping

OFFSCREEN_BACKENDS = ("egl", "osmesa")
"""MUJOCO_GL values that need no display; PyOpenGL's PYOPENGL_PLATFORM must match."""


def has_display(environ: MutableMapping[str, str]) -> bool:
    return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))


def default_gl_backend(
    environ: MutableMapping[str, str], platform: str = sys.platform
) -> str | None:
    """On Linux with no display and MUJOCO_GL unset, set MUJOCO_GL (and PYOPENGL_PLATFORM) to
    EGL, or to the offscreen platform PYOPENGL_PLATFORM already names. Returns the backend it
    set, None where it left the environment alone."""
    if not platform.startswith("linux") or "MUJOCO_GL" in environ or has_display(environ):
        return None
    pyopengl = environ.get("PYOPENGL_PLATFORM", "").lower()
    backend = pyopengl if pyopengl in OFFSCREEN_BACKENDS else "egl"
    environ["MUJOCO_GL"] = backend
    environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


def rendering_hint(environ: MutableMapping[str, str]) -> str:
    """What to do when a renderer cannot be made, naming the variable that decides."""
    now = environ.get("MUJOCO_GL")
    where = f"MUJOCO_GL={now}" if now else "MUJOCO_GL unset"
    display = "a display" if has_display(environ) else "no display"
    return (
        f"({where}, {display}); set MUJOCO_GL=egl (or osmesa) for offscreen rendering, "
        "or glfw with a display, before apprentice starts"
    )
