"""Atomic writes under a short temporary name, and the up-front check of an output location."""

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from apprentice.algos.run_folder import write_json
from apprentice.data.episode import Episode
from apprentice.data.reader import DemoFile
from apprentice.data.store import DemoWriter
from apprentice.errors import ApprenticeError
from apprentice.files import atomic_write, check_writable, temporary_name
from apprentice.policies.checkpoint import atomic_torch_save

LONG = "d" * 245  # + a 5-byte suffix: 250 bytes, a legal name (the limit is 255)


def _episode() -> Episode:
    t = 3
    return Episode(
        obs={"x": np.zeros((t, 2), np.float32)},
        next_obs={"x": np.zeros((t, 2), np.float32)},
        actions=np.zeros((t, 1), np.float32),
        rewards=np.zeros(t, np.float32),
        dones=np.zeros(t, bool),
        states=np.zeros((t, 1), np.float64),
    )


def test_a_250_byte_file_name_is_written_by_every_writer(tmp_path: Path) -> None:
    store = tmp_path / (LONG + ".hdf5")
    assert len(store.name.encode()) == 250
    with DemoWriter(store, env_args={"env_name": "lift"}) as w:
        w.append(_episode())
    with DemoFile(store) as f:
        assert f.demo_names == ["demo_0"]
    ckpt = tmp_path / (LONG + ".pt")
    atomic_torch_save({"w": torch.ones(2)}, ckpt)
    assert torch.equal(torch.load(ckpt)["w"], torch.ones(2))
    js = tmp_path / (LONG + ".json")
    write_json(js, {"a": 1})
    assert json.loads(js.read_text()) == {"a": 1}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_the_temporary_name_is_short_and_keeps_a_short_suffix(tmp_path: Path) -> None:
    tmp = temporary_name(tmp_path / ("x" * 250 + ".npz"))
    assert len(tmp.name) < 40 and tmp.suffix == ".npz" and tmp.parent == tmp_path
    assert temporary_name(tmp_path / "a.b") != temporary_name(tmp_path / "a.b")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_check_writable_accepts_missing_folders_and_creates_nothing(tmp_path: Path) -> None:
    assert check_writable(tmp_path / "a" / "b" / "out.hdf5") == tmp_path / "a" / "b" / "out.hdf5"
    check_writable(tmp_path / "run", folder=True)
    (tmp_path / "f.hdf5").write_bytes(b"x")
    check_writable(tmp_path / "f.hdf5")
    assert [p.name for p in tmp_path.iterdir()] == ["f.hdf5"]  # no folder made, no probe left


# A folder with mode 0o555 does not stop root, and these tests may run as root; a path whose
# parent is a regular file cannot be written by anyone, so the tests use that.
def test_check_writable_refuses_a_path_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ApprenticeError, match=r"--json .*file/sub/o\.json: cannot write there"):
        check_writable(blocker / "sub" / "o.json", flag="--json")
    with pytest.raises(ApprenticeError, match="is a file, not a folder"):
        check_writable(blocker, folder=True)
    with pytest.raises(ApprenticeError, match="Is a directory"):
        check_writable(tmp_path)


def test_check_writable_refuses_a_read_only_folder(
    tmp_path: Path, make_read_only: Callable[[Path], None]
) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    make_read_only(ro)
    with pytest.raises(ApprenticeError, match=r"Permission denied|Read-only file system"):
        check_writable(ro / "out.hdf5")
