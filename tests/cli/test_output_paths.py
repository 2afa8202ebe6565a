"""Output locations: a missing folder is created; one that cannot be written is one line, exit 2,
before any work.

The tests run as root in CI, and root writes into a folder of mode 0o555 or over a file of
mode 0o444. A path under a regular file cannot be written by anyone, so the tests that must
hold for root use that; the 0o555 cases run only for other users.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from apprentice.cli.main import main
from apprentice.data.reader import DemoFile


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A folder path that cannot exist: its parent is a regular file."""
    (tmp_path / "a-file").write_text("x")
    return tmp_path / "a-file" / "sub"


def _cases(demos: Path, blocked: Path) -> list[tuple[str, str, list[str]]]:
    """(cli module, its work function, argv) per command; each argv writes under `blocked`."""
    d, b = str(demos), blocked
    return [
        ("collect", "collect_demos", ["collect", "--out", str(b / "d.hdf5")]),
        ("generate", "run_generate", ["generate", "--source", d, "--out", str(b / "g.hdf5")]),
        ("label_actions", "label_actions", ["label-actions", "--demos", d, "--out", str(b)]),
        ("train", "run_train", ["train", "--dataset", d, "--out", str(b)]),
        (
            "pretrain_encoder",
            "pretrain_encoder",
            ["pretrain-encoder", "--dataset", d, "--image-key", "x", "--out", str(b / "e.pt")],
        ),
        ("dagger", "run_dagger", ["dagger", "--task", "lift", "--out", str(b)]),
        ("irl", "run_irl", ["irl", "--algo", "maxent", "--out", str(b)]),
        ("quickstart", "quickstart", ["quickstart", "--out", str(b)]),
        ("inspect", "summarize", ["inspect", d, "--json", str(b / "q.json")]),
        ("eval", "evaluate", ["eval", "ckpt.pt", "--out", str(b / "e.json")]),
        ("export", "export_checkpoint", ["export", "ckpt.pt", "--out", str(b / "p.onnx")]),
        ("replay", "replay", ["replay", d, "--demo", "0", "--video", str(b / "v.mp4")]),
        ("teleop", "run_teleop", ["teleop", "--out", str(b / "t.hdf5")]),
        ("harden", "harden", ["harden", "ckpt.pt", "--dataset", d, "--out", str(b)]),
    ]


COMMANDS = [
    "collect",
    "generate",
    "label_actions",
    "train",
    "pretrain_encoder",
    "dagger",
    "irl",
    "quickstart",
    "inspect",
    "eval",
    "export",
    "replay",
    "teleop",
    "harden",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unwritable_output_is_one_line_before_any_work(
    command: str,
    demo_file: Path,
    blocked: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    module_name, work, argv = next(c for c in _cases(demo_file, blocked) if c[0] == command)
    calls: list[Any] = []
    module = importlib.import_module(f"apprentice.cli.{module_name}")
    monkeypatch.setattr(module, work, lambda *a, **k: calls.append(a))
    assert main(argv) == 2
    err = capsys.readouterr().err
    name = argv[0]
    assert err.startswith(f"apprentice {name}: error: ") and err.count("\n") == 1, err
    assert str(blocked) in err and "cannot write there" in err
    assert "a part of the path is a file" in err
    assert calls == []  # refused before the command's work started


def test_collect_under_a_file_is_one_line_not_a_traceback(
    blocked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = blocked / "d.hdf5"
    assert main(["collect", "--n", "1", "--workers", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {out}: cannot write there" in err


def test_a_read_only_run_folder_is_refused_by_eval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make_read_only: Callable[[Path], None]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"x")
    make_read_only(run)
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint folder {run}: cannot write there (" in err  # Permission denied or
    assert err.count("\n") == 1  # Read-only file system
    assert "pass --out" in err


@pytest.mark.parametrize("command", ["filter", "annotate"])
def test_a_read_only_dataset_is_refused_by_in_place_commands(
    command: str,
    demo_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_read_only: Callable[[Path], None],
) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    data = ro / "demos.hdf5"
    data.write_bytes(demo_file.read_bytes())
    make_read_only(ro)
    argv = [command, str(data)] + (["--min-score", "0.5"] if command == "filter" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"dataset {data}: cannot write there" in err and err.count("\n") == 1


def test_label_actions_creates_the_output_folder(demo_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "states.hdf5"
    args = ["label-actions", "--demos", str(demo_file), "--strip", "--out", str(out)]
    assert main(args) == 0
    with DemoFile(out) as f:
        assert len(f.demo_names) == 6 and f.action_dim == 0


def test_collect_creates_the_output_folder(tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "lift.hdf5"
    args = ["collect", "--n", "1", "--workers", "1", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    with DemoFile(out) as f:
        assert len(f.demo_names) == 1 and f.env_args["env_name"] == "lift"
