"""Motion capture in: tracked wrist poses retargeted onto a task's actions and replayed.

`tracks` reads tracks (NPZ, CSV), `resample` and `smooth` bring them to the control rate,
`align` maps the mocap frame to the task's, `replay` follows them closed loop and says why a
replay failed, `run` is `apprentice retarget`, and `synthetic` makes mocap-like tracks from
oracle demos.
"""

from apprentice.retarget.run import RetargetConfig, RetargetResult, retarget_tracks
from apprentice.retarget.synthetic import make_tracks
from apprentice.retarget.tracks import Track, read_track, write_track

__all__ = [
    "RetargetConfig",
    "RetargetResult",
    "Track",
    "make_tracks",
    "read_track",
    "retarget_tracks",
    "write_track",
]
