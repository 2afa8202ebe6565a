"""`merge_demos`: several demo files in one, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from apprentice.data.merge import merge_demos
from apprentice.data.reader import DemoFile

ENV_ARGS = {"env_name": "lift", "env_type": "apprentice", "env_kwargs": {"perturb": {}}}


def _contents(path: Path) -> tuple[Any, ...]:
    with DemoFile(path) as f:
        demos = [(n, f.attrs(n), f.read_actions(n).tolist()) for n in f.demo_names]
        return f.env_args, f.masks, demos


def test_every_demo_is_kept_in_order_with_its_masks_and_origin(
    tmp_path: Path, synthetic: Any
) -> None:
    a = synthetic.write_demo_file(tmp_path / "a.hdf5", num_demos=3, masks={"train": ["demo_0"]})
    b = synthetic.write_demo_file(tmp_path / "b.hdf5", num_demos=2, seed=1)
    renames = merge_demos([a, b], tmp_path / "ab.hdf5", env_args=ENV_ARGS)
    assert renames == [
        {"demo_0": "demo_0", "demo_1": "demo_1", "demo_2": "demo_2"},
        {"demo_0": "demo_3", "demo_1": "demo_4"},
    ]
    env_args, masks, demos = _contents(tmp_path / "ab.hdf5")
    assert env_args == ENV_ARGS and masks == {"train": ["demo_0"]}
    assert [attrs["origin"] for _, attrs, _ in demos] == ["a.hdf5"] * 3 + ["b.hdf5"] * 2
    with DemoFile(b) as f:
        assert np.array_equal(f.read_actions("demo_1"), np.array(demos[4][2], dtype=np.float32))


def test_a_merge_cut_short_resumes_to_the_same_file(tmp_path: Path, synthetic: Any) -> None:
    a = synthetic.write_demo_file(tmp_path / "a.hdf5", num_demos=3)
    b = synthetic.write_demo_file(tmp_path / "b.hdf5", num_demos=2, seed=1)
    merge_demos([a, b], tmp_path / "whole.hdf5", env_args=ENV_ARGS)
    merge_demos([a], tmp_path / "resumed.hdf5", env_args=ENV_ARGS)  # as if killed after a
    merge_demos([a, b], tmp_path / "resumed.hdf5", env_args=ENV_ARGS)
    assert _contents(tmp_path / "resumed.hdf5") == _contents(tmp_path / "whole.hdf5")
