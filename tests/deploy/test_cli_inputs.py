"""What eval, export and serve take: a checkpoint or its run folder; any other file is named,
and a server open to the network without a token is refused unless asked for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from apprentice.cli.main import main
from apprentice.data.spec import ObsActSpec
from apprentice.deploy.export import export_policy
from apprentice.deploy.runtime import load_exported
from apprentice.deploy.server import TOKEN_ENV
from apprentice.policies import MLPConfig, save_checkpoint

SPEC = ObsActSpec({"eef_pos": (3,), "object": (10,)}, action_dim=7)
ENV_ARGS = {"env_name": "lift", "env_type": "apprentice", "env_kwargs": {"camera": False}}
COMMANDS = ("eval", "export", "serve")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, demo_file: Path) -> dict[str, Path]:
    """A run folder (final.pt only), the dataset, and the policy exported both ways."""
    folder = tmp_path_factory.mktemp("inputs")
    policy = MLPConfig.tiny().build(SPEC, {})
    policy.env_args = dict(ENV_ARGS)
    save_checkpoint(folder / "run" / "final.pt", policy, env_args=ENV_ARGS)
    return {
        "run": folder / "run",
        "hdf5": demo_file,
        "onnx": export_policy(policy, folder / "p.onnx", fmt="onnx", check_samples=4).path,
        "torchscript": export_policy(
            policy, folder / "p.torchscript.pt", fmt="torchscript", check_samples=4
        ).path,
    }


def _error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"apprentice {command}: error: "), err
    assert "weights_only" not in err and "arbitrary code" not in err
    return err


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("kind", "what"),
    [
        ("hdf5", "is an HDF5 file (a demo dataset), not a checkpoint"),
        ("onnx", "is an ONNX model (an exported policy), not a checkpoint"),
        ("torchscript", "is an exported TorchScript policy, not a checkpoint"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_is_named(
    command: str,
    kind: str,
    what: str,
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "t")
    assert main([command, str(files[kind])]) == 2
    err = _error_line(capsys, command)
    assert f"{files[kind]} {what}" in err
    assert "eval, export and serve take a checkpoint" in err


def test_export_takes_a_run_folder(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run = files["run"]
    assert main(["export", str(run), "--format", "torchscript", "--check-samples", "8"]) == 0
    assert "max abs diff vs PyTorch" in capsys.readouterr().out
    # Written beside the checkpoint the folder resolved to.
    assert load_exported(run / "final.torchscript.pt").meta.policy_kind == "mlp"


def test_serve_on_the_network_without_a_token_is_refused_before_binding(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert main(["serve", str(files["run"]), "--host", "0.0.0.0", "--port", "0"]) == 2
    err = _error_line(capsys, "serve")
    assert "--host 0.0.0.0 without a token" in err and "--insecure" in err
    assert f"{TOKEN_ENV} environment variable" in err


def test_serve_insecure_takes_a_run_folder_and_warns_loudly(files: dict[str, Path]) -> None:
    """The real command in a process: serving starts, the warning is on stderr, SIGTERM stops."""
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    argv = ["serve", str(files["run"]), "--host", "0.0.0.0", "--port", "0", "--insecure"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "apprentice.cli.main", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving mlp policy for 'lift' on ws://0.0.0.0:"), line
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "policy server stopped" in rest
    assert "INSECURE (--insecure): serving the policy with NO TOKEN on 0.0.0.0:" in err
