"""`apprentice convert` between the three formats, and the commands that read any of them
(`inspect`, `train --dataset`, `--hub`), on demos the oracle records with both cameras."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from apprentice.cli.main import main
from apprentice.data.convert import psnr
from apprentice.data.source import open_source, source_format

TRAIN_TINY = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4", "--eval-every", "0"]


@pytest.fixture(scope="module")
def camera_demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("convert") / "lift.hdf5"
    argv = ["collect", "--task", "lift", "--n", "2", "--camera", "--workers", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    return out


def _assert_same_demos(a: Path, b: Path, *, images_exact: bool) -> float:
    """Low-dim observations and actions equal; returns the frames' lowest PSNR (dB)."""
    worst = float("inf")
    with open_source(a) as x, open_source(b) as y:
        assert x.demo_names == y.demo_names
        assert x.obs_keys == y.obs_keys and x.image_keys == y.image_keys
        for name in x.demo_names:
            np.testing.assert_array_equal(x.read_actions(name), y.read_actions(name))
            for key in x.obs_keys:
                u, v = x.read_obs(name, key), y.read_obs(name, key)
                if key in x.image_keys and not images_exact:
                    assert u.shape == v.shape
                    worst = min(worst, psnr(u, v))
                else:
                    np.testing.assert_array_equal(u, v, err_msg=f"{name} {key}")
    return worst


def test_to_lerobot_and_back_keeps_every_array(
    camera_demos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "lift_lerobot"
    assert main(["convert", str(camera_demos), str(folder)]) == 0
    out = capsys.readouterr().out
    assert "not kept: states" in out  # LeRobot has no field for simulator states: said
    with open_source(folder) as source:
        assert source_format(source) == "lerobot"
        assert source.env_args["env_name"] == "lift"
        assert sorted(source.masks) == sorted(open_source(camera_demos).masks)
    back = tmp_path / "back.hdf5"
    assert main(["convert", str(folder), str(back)]) == 0
    assert _assert_same_demos(camera_demos, back, images_exact=False) > 30.0

    exact = tmp_path / "lift_lossless"
    assert main(["convert", str(camera_demos), str(exact), "--lossless"]) == 0
    back_exact = tmp_path / "back_exact.hdf5"
    assert main(["convert", str(exact), str(back_exact)]) == 0
    _assert_same_demos(camera_demos, back_exact, images_exact=True)


def test_inspect_and_train_read_a_lerobot_folder(
    camera_demos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "lift_lerobot"
    assert main(["convert", str(camera_demos), str(folder)]) == 0
    assert main(["inspect", str(folder)]) == 0
    assert "agentview_image" in capsys.readouterr().out
    run = tmp_path / "run"
    argv = ["train", "--dataset", str(folder), "--out", str(run), "--policy", "mlp", *TRAIN_TINY]
    assert main([*argv, "--policy-args", "obs_keys=eef_pos,gripper_qpos"]) == 0
    assert (run / "final.pt").is_file()
    assert json.loads((run / "config.json").read_text())["dataset"] == str(folder)


def test_to_isaac_lab_and_back(camera_demos: Path, tmp_path: Path) -> None:
    isaac = tmp_path / "isaac.hdf5"
    assert main(["convert", str(camera_demos), str(isaac), "--to", "isaaclab"]) == 0
    with open_source(isaac) as source:
        assert source_format(source) == "isaaclab"
    assert main(["inspect", str(isaac)]) == 0
    back = tmp_path / "back.hdf5"
    assert main(["convert", str(isaac), str(back)]) == 0
    _assert_same_demos(camera_demos, back, images_exact=True)


def test_hub_reads_a_dataset_from_the_hub_cache_offline(
    camera_demos: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import huggingface_hub.constants as hub

    # The cache as huggingface_hub lays it out: refs/main names the snapshot folder.
    repo = tmp_path / "hub" / "datasets--someone--lift"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    assert main(["convert", str(camera_demos), str(snapshot)]) == 0
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    capsys.readouterr()
    assert main(["inspect", "--hub", "someone/lift"]) == 0
    assert "agentview_image" in capsys.readouterr().out
    back = tmp_path / "from_hub.hdf5"
    assert main(["convert", "--hub", "someone/lift", str(back)]) == 0
    assert back.is_file()
    # Not in the cache, and offline: one line naming it.
    assert main(["inspect", "--hub", "someone/other"]) == 2
    err = capsys.readouterr().err
    assert "--hub someone/other: could not fetch it" in err and err.count("\n") == 1
    assert main(["inspect", "--hub", "no-slash"]) == 2
    assert "expected a dataset id OWNER/NAME" in capsys.readouterr().err


def test_bad_conversions_are_one_line_and_write_nothing(
    camera_demos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "taken.hdf5"
    taken.write_bytes(b"keep me")
    assert main(["convert", str(camera_demos), str(taken)]) == 2
    err = capsys.readouterr().err
    assert f"{taken}: exists; give --overwrite" in err and err.count("\n") == 1
    assert taken.read_bytes() == b"keep me"
    assert main(["convert", str(tmp_path / "missing.hdf5"), str(tmp_path / "x.hdf5")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["convert", str(tmp_path), str(tmp_path / "x.hdf5")]) == 2
    assert "is a folder with no meta/info.json" in capsys.readouterr().err
    assert main(["convert", str(camera_demos)]) == 2
    assert "give SRC and DST" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["convert", str(camera_demos), str(tmp_path / "y"), "--to", "zarr"])
    assert e.value.code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.hdf5"]


def test_a_broken_source_is_one_line_naming_the_file_and_writes_nothing(
    camera_demos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import h5py

    folder = tmp_path / "lift_lerobot"
    assert main(["convert", str(camera_demos), str(folder)]) == 0
    parquet = next((folder / "data").rglob("*.parquet"))
    parquet.unlink()
    capsys.readouterr()
    dst = tmp_path / "out.hdf5"
    assert main(["convert", str(folder), str(dst)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and parquet.name in err and "Traceback" not in err
    isaac = tmp_path / "isaac.hdf5"
    assert main(["convert", str(camera_demos), str(isaac), "--to", "isaaclab"]) == 0
    with h5py.File(isaac, "r+") as f:
        del f["data/demo_1/actions"]
    capsys.readouterr()
    assert main(["convert", str(isaac), str(dst)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(isaac) in err and "demo_1" in err and "actions" in err
    assert not dst.exists() and not list(tmp_path.glob(".out.hdf5*"))
