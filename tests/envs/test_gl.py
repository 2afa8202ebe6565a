"""Camera rendering picks an offscreen GL backend where no display is attached."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from apprentice.envs.gl import default_gl_backend

_RENDER = (
    "import json, os\n"
    "from apprentice.envs import make_task\n"
    "task = make_task('lift', camera=True)\n"
    "obs, _ = task.reset(seed=0)\n"
    "print(json.dumps([os.environ['MUJOCO_GL'], list(obs['agentview_image'].shape)]))\n"
)


def _fresh_shell(**env: str) -> dict[str, str]:
    """This process's environment without a display or GL choice, plus `env`."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MUJOCO_GL", "PYOPENGL_PLATFORM")
    }
    return {**base, **env}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the EGL default is Linux's")
def test_cameras_render_in_a_shell_with_no_display_and_no_mujoco_gl() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _RENDER],
        env=_fresh_shell(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == '["egl", [84, 84, 3]]'


def test_a_backend_that_cannot_render_is_one_error_naming_mujoco_gl() -> None:
    code = (
        "from apprentice.envs import make_task\n"
        "from apprentice.errors import ApprenticeError\n"
        "try:\n"
        "    make_task('lift', camera=True).reset(seed=0)\n"
        "except ApprenticeError as e:\n"
        "    print('ERROR', e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=_fresh_shell(MUJOCO_GL="glfw"),  # a window backend, no display
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("ERROR task lift: cannot render camera 'agentview'")
    assert "MUJOCO_GL=glfw, no display" in line and "set MUJOCO_GL=egl" in line


@pytest.mark.parametrize(
    ("env", "platform", "want"),
    [
        ({}, "linux", {"MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl"}),
        (
            {"PYOPENGL_PLATFORM": "osmesa"},
            "linux",
            {"MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"},
        ),
        ({"DISPLAY": ":0"}, "linux", {"DISPLAY": ":0"}),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", {"WAYLAND_DISPLAY": "wayland-0"}),
        ({"MUJOCO_GL": "glfw"}, "linux", {"MUJOCO_GL": "glfw"}),
        ({}, "darwin", {}),
    ],
)
def test_the_default_backend_leaves_a_display_or_a_choice_alone(
    env: dict[str, str], platform: str, want: dict[str, str]
) -> None:
    environ = dict(env)
    default_gl_backend(environ, platform)
    assert environ == want
