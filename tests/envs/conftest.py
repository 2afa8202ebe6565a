import os

# mujoco picks its GL backend when it is first imported; headless rendering needs EGL.
os.environ.setdefault("MUJOCO_GL", "egl")
