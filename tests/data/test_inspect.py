"""summarize: file-level info, demo rows (truncated), per-key statistics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from apprentice.data import DemoWriter, Episode, split_train_valid, summarize
from conftest import ENV_ARGS


def test_summary_of_a_store(tmp_path: Path, make_episode: Callable[..., Episode]) -> None:
    path = tmp_path / "d.hdf5"
    with DemoWriter(path, env_args=ENV_ARGS) as w:
        for i in range(30):
            w.append(make_episode(3, seed=i))
    split_train_valid(path, valid_fraction=0.1)
    text = summarize(path)
    assert '"env_name": "Lift"' in text
    assert "demos: 30   samples: 90   successful: 20/30" in text
    assert "masks: train (27), valid (3)" in text
    assert "oracle (15)" in text and "teleop:spacemouse (15)" in text
    assert "... 10 more" in text and "demo_29" in text and "demo_15 " not in text
    eef = next(line for line in text.splitlines() if line.startswith("obs/eef_pos"))
    assert "(3,)" in eef and "float32" in eef


def test_summary_of_a_robomimic_file(robomimic_file: Path) -> None:
    text = summarize(robomimic_file)
    assert "demos: 3   samples: 16" in text
    assert "sources: unknown (3)" in text
    assert "obs/agentview_image  (6, 6, 3)" in text
