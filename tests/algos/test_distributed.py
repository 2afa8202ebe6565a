"""Training under torchrun (algos/launch.py, algos/distributed.py): 2 processes with gloo
on the CPU.

The in-process checks run in one torchrun launch of tests/algos/ddp_worker.py (the `ddp`
fixture); the command line's run by `torchrun -m apprentice train` itself. Every launch uses
`--standalone` (a free port), so that runs beside each other do not meet.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from apprentice.algos import TrainConfig, Trainer, train
from apprentice.algos.distributed import Processes
from apprentice.algos.launch import Launch, main_process
from apprentice.algos.training_data import load_train_data
from apprentice.cli.main import main
from apprentice.data.normalize import Normalizer
from apprentice.errors import ApprenticeError
from apprentice.policies import ACTConfig, CameraConfig, MLPConfig, load_checkpoint

TORCHRUN = Path(sys.executable).with_name("torchrun")
WORKER = Path(__file__).with_name("ddp_worker.py")
BATCH = 8


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    return {**env, "OMP_NUM_THREADS": "1"}


def torchrun(*args: str, cwd: Path | None = None, timeout: float = 300) -> Any:
    return subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc_per_node=2", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        cwd=cwd,
    )


def _worker_module() -> Any:
    spec = importlib.util.spec_from_file_location("apprentice_test_ddp_worker", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train_config(dataset: Path, out: Path, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "dataset": str(dataset),
        "out": str(out),
        "policy": MLPConfig(hidden_dims=(16, 16)),
        "epochs": 3,
        "steps_per_epoch": 4,
        "batch_size": BATCH,
        "lr": 1e-3,
        "eval_every": 0,
        "progress": False,
        "threads": 1,
    }
    return TrainConfig(**{**base, **kw}).to_dict()


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory, synthetic: Any) -> dict[str, Any]:
    """What every rank of one torchrun launch of the worker found, by job and rank."""
    work = tmp_path_factory.mktemp("ddp")
    demos = synthetic.write_demo_file(work / "demos.hdf5")
    cameras = synthetic.write_camera_demos(work / "cameras.hdf5")
    act = ACTConfig.tiny()  # dropout and the CVAE's draws: torch's generator matters
    frozen = MLPConfig(
        hidden_dims=(16,),
        obs_keys=("eef_pos",),
        image_keys=("agentview_image",),
        camera=CameraConfig(feature_dim=8, num_keypoints=4, freeze_encoder=True),
    )
    # A single-process run's last.pt, resumed under torchrun below.
    single = _train_config(demos, work / "single", epochs=2)
    train(TrainConfig.from_dict(single))
    jobs = [
        {"kind": "steps", "name": "steps", "batch": BATCH, "steps": 4},
        {"kind": "kinds", "name": "kinds"},
        {
            "kind": "train",
            "name": "counted",
            "configs": [_train_config(demos, work / "counted", save_every=2, ema_decay=0.9)],
        },
        {
            "kind": "train",
            "name": "frozen_bf16",
            "configs": [
                _train_config(cameras, work / "frozen", policy=frozen, precision="bf16", epochs=2)
            ],
        },
        {
            "kind": "train",
            "name": "straight",
            "configs": [_train_config(demos, work / "a", policy=act)],
        },
        {
            "kind": "train",
            "name": "resumed",
            "configs": [
                _train_config(demos, work / "b", policy=act, epochs=2),
                _train_config(demos, work / "b", policy=act),
            ],
        },
        {"kind": "train", "name": "from_single", "configs": [{**single, "epochs": 3}]},
        {"kind": "mismatch", "name": "mismatch", "config": _train_config(demos, work / "m")},
        {"kind": "pipeline", "name": "pipeline", "config": _train_config(demos, work / "p")},
    ]
    (work / "jobs.json").write_text(json.dumps(jobs))
    r = torchrun(str(WORKER), str(work / "jobs.json"), str(work))
    assert r.returncode == 0, r.stderr[-4000:]
    found: dict[str, Any] = {"work": work, "stdout": r.stdout}
    for job in jobs:
        name = job["name"]
        for rank in (0, 1):
            path = work / f"{name}_rank{rank}"
            if path.with_suffix(".json").exists():
                found[f"{name}/{rank}"] = json.loads(path.with_suffix(".json").read_text())
            if path.with_suffix(".out").exists():
                found[f"{name}/{rank}.out"] = path.with_suffix(".out").read_text()
    return found


def test_two_processes_reach_the_weights_of_one_process_on_the_concatenated_batch(
    ddp: dict[str, Any],
) -> None:
    worker = _worker_module()
    ranks = [torch.load(ddp["work"] / f"steps_rank{r}.pt") for r in (0, 1)]
    # One process, the same init, on the whole global batches (each rank had half the rows).
    config = worker.step_config()
    dataset = worker.demos()
    policy_config = MLPConfig(hidden_dims=(32, 32))
    batches = worker.global_batches(policy_config, dataset, 2 * BATCH, 4)
    torch.manual_seed(0)
    policy = policy_config.build(dataset.spec, Normalizer.fit(dataset).state_dict())
    start = {k: v.clone() for k, v in policy.state_dict().items()}
    trainer = Trainer.for_policy(policy, config)
    for batch in batches:
        trainer.step(batch)
    assert trainer.ema is not None
    one = {"policy": policy.state_dict(), "ema": trainer.ema.policy.state_dict()}
    for part in ("policy", "ema"):
        for key, value in one[part].items():
            # DDP: the same weights on every process, to the bit.
            assert torch.equal(ranks[0][part][key], ranks[1][part][key]), (part, key)
            # The mean of the two half-batch means is the whole batch's mean, up to rounding.
            torch.testing.assert_close(ranks[0][part][key], value, rtol=1e-4, atol=1e-6)
    weights = [name for name, _ in policy.named_parameters()]
    assert all(not torch.allclose(one["policy"][k], start[k]) for k in weights)  # they trained


def test_every_policy_kind_trains_alike_on_both_processes(ddp: dict[str, Any]) -> None:
    kinds0, kinds1 = ddp["kinds/0"], ddp["kinds/1"]
    assert set(kinds0) >= {"mlp", "gmm", "rnn", "transformer", "act", "diffusion", "flow"}
    assert {"mlp-camera", "mlp-camera-batchnorm"} <= set(kinds0)
    for label, found in kinds0.items():
        assert found["weights"] == kinds1[label]["weights"], label
        # Each process's loss is its own half of the batch (and its own noise, dropout).
        assert found["losses"] != kinds1[label]["losses"], label
        assert all(np.isfinite(found["losses"])), label


def test_rank_0_alone_logs_and_writes_each_checkpoint_once(ddp: dict[str, Any]) -> None:
    rank0, rank1 = ddp["counted/0"], ddp["counted/1"]
    assert rank1["writes"] == [] and rank1["records"] == []
    assert rank0["records"] == [1, 2, 3]
    writes = rank0["writes"]
    assert writes.count("last.pt") == 3 and writes.count("final.pt") == 1
    assert writes.count("epoch_2.pt") == 1 and "epoch_1.pt" not in writes
    assert ddp["counted/1.out"] == ""  # rank 1 prints nothing
    assert ddp["counted/0.out"].splitlines() == [
        f"distributed: 2 processes (gloo), batch {BATCH} per process, global batch {2 * BATCH}"
    ]
    # The same weights, EMA and normalizer statistics everywhere; each rank its own windows.
    for key in ("weights", "ema", "normalizer"):
        assert rank0[key] == rank1[key], key
    assert rank0["first_window"] != rank1["first_window"]
    run = ddp["work"] / "counted"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 1
    assert len(load_checkpoint(run / "last.pt")["extra"]["process_generators"]) == 2


def test_frozen_encoders_cached_features_and_bf16_train_alike(ddp: dict[str, Any]) -> None:
    rank0, rank1 = ddp["frozen_bf16/0"], ddp["frozen_bf16/1"]
    assert rank0["records"] == [1, 2] and rank1["records"] == []
    assert rank0["weights"] == rank1["weights"]
    assert (ddp["work"] / "frozen" / "final.pt").exists()


def test_a_run_resumed_under_torchrun_goes_on_as_the_straight_one(ddp: dict[str, Any]) -> None:
    work = ddp["work"]
    assert ddp["resumed/0"]["weights"] == ddp["resumed/1"]["weights"]
    straight = load_checkpoint(work / "a" / "final.pt")["state_dict"]
    resumed = load_checkpoint(work / "b" / "final.pt")["state_dict"]
    # Every process's generators came back from last.pt: the same dropout, draws, windows.
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    losses = [
        [json.loads(line)["train_loss"] for line in (work / d / "metrics.jsonl").open()]
        for d in ("a", "b")
    ]
    assert losses[0] == losses[1]


def test_a_single_process_run_resumes_under_torchrun(ddp: dict[str, Any]) -> None:
    assert ddp["from_single/0"]["records"] == [3]
    assert "each process draws afresh from (seed, rank, epoch 2)" in ddp["from_single/0.out"]
    assert ddp["from_single/0"]["weights"] == ddp["from_single/1"]["weights"]


def test_processes_given_different_configs_stop_at_the_start(ddp: dict[str, Any]) -> None:
    assert ddp["mismatch/0"]["error"] == "ApprenticeError"
    assert "the train config of rank 1 differ from rank 0's" in ddp["mismatch/0"]["message"]
    # Rank 1 stops on the same error without printing it again (ReportedError).
    assert ddp["mismatch/1"]["error"] == "ReportedError"
    assert not (ddp["work"] / "m" / "last.pt").exists()


def test_a_recipes_stages_run_once_on_rank_0_and_every_process_trains_their_config(
    ddp: dict[str, Any],
) -> None:
    work = ddp["work"]
    assert (work / "pipeline_stages.txt").read_text() == "0\n"
    assert ddp["pipeline/0"] == ddp["pipeline/1"] == {"seeds": [1], "epochs": 3}
    assert json.loads((work / "p" / "config.json").read_text())["seed"] == 1


# ---- the command line ------------------------------------------------------------------------


def _train_args(demo_file: Path, run: Path, *extra: str) -> list[str]:
    return [
        "-m",
        "apprentice",
        "train",
        "--dataset",
        str(demo_file),
        "--out",
        str(run),
        "--policy",
        "mlp",
        "--policy-args",
        "hidden_dims=16,16",
        "--batch-size",
        str(BATCH),
        "--eval-every",
        "0",
        "--no-progress",
        *extra,
    ]


def test_torchrun_trains_one_run_folder(demo_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = _train_args(demo_file, run, "--steps-per-epoch", "3", "--save-every", "1")
    r = torchrun(*args, "--epochs", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    line = f"distributed: 2 processes (gloo), batch {BATCH} per process, global batch {2 * BATCH}"
    assert r.stdout.startswith(line + "\n"), r.stdout
    assert r.stdout.count(line) == 1 and r.stdout.count("trained mlp on") == 1
    assert re.search(r"resumed from epoch\s*│\s*0\s", r.stdout), r.stdout
    assert r.stderr == ""  # rank 1 prints nothing, and rank 0 only its stdout
    names = sorted(p.name for p in run.iterdir())
    checkpoints = ["last.pt", "best.pt", "final.pt", "epoch_1.pt", "epoch_2.pt"]
    assert names == sorted(["config.json", "metrics.jsonl", "tb", *checkpoints])
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 1
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").open()]
    assert epochs == [1, 2]


def _rank_pid(launcher: subprocess.Popen[str], rank: int) -> int | None:
    """The pid of torchrun's worker process of `rank` (its environment says RANK)."""
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
    for pid in children.read_text().split() if children.exists() else []:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    return None


class _Run:
    """`torchrun -m apprentice train` for many epochs in the background, until it has run
    two, with its stderr in a file to read while it runs."""

    def __init__(
        self, args: list[str], tmp_path: Path, *, epochs: int = 1000, restarts: int = 0
    ) -> None:
        self.err = tmp_path / "stderr.txt"
        self.metrics = Path(args[args.index("--out") + 1]) / "metrics.jsonl"
        launch = ["--standalone", "--nproc_per_node=2", f"--max-restarts={restarts}"]
        with self.err.open("w") as err:
            self.launcher = subprocess.Popen(
                [str(TORCHRUN), *launch, *args, "--epochs", str(epochs)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=_env(),
            )
        deadline = time.monotonic() + 120
        while self.launcher.poll() is None and time.monotonic() < deadline:
            if self.metrics.exists() and self.metrics.read_text().count("\n") >= 2:
                break
            time.sleep(0.05)
        rank1 = _rank_pid(self.launcher, 1)
        assert rank1 is not None and self.launcher.poll() is None, self.err.read_text()
        self.rank1 = rank1

    def our_lines(self, timeout: float = 120) -> list[str]:
        """The lines of ours on stderr ("apprentice train: error ..."), once there is one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.err.read_text().splitlines()
            ours = [line for line in lines if line.startswith("apprentice train: error")]
            if ours:
                return ours
            time.sleep(0.05)
        raise AssertionError(self.err.read_text()[-3000:])

    def epochs_done(self) -> int:
        return len(self.metrics.read_text().splitlines())


def test_a_killed_rank_ends_the_run_with_one_line_and_it_resumes(
    demo_file: Path, tmp_path: Path
) -> None:
    args = _train_args(demo_file, tmp_path / "run", "--steps-per-epoch", "20")
    run = _Run(args, tmp_path)
    os.kill(run.rank1, signal.SIGKILL)
    assert run.launcher.wait(timeout=120) != 0
    (ours,) = run.our_lines()  # torchrun reports the failure below it, in its own words
    # Rank 0 finds the dead peer at its next exchange, unless torchrun's SIGTERM comes first.
    lost = "rank 0 of 2 lost contact with the other training processes (one died or closed"
    stopped = "rank 0 of 2 was stopped (SIGTERM: torchrun stops every process when one fails"
    assert lost in ours or stopped in ours, ours
    assert "the same torchrun command resumes" in ours
    done = run.epochs_done()
    assert 2 <= done < 1000
    r = torchrun(*args, "--epochs", str(done + 1))
    assert r.returncode == 0, r.stderr[-3000:]
    epochs = [json.loads(line)["epoch"] for line in run.metrics.open()]
    assert epochs == list(range(1, done + 2))


def test_torchrun_restarts_the_processes_after_a_failure_and_they_resume(
    demo_file: Path, tmp_path: Path
) -> None:
    args = _train_args(demo_file, tmp_path / "run", "--steps-per-epoch", "5")
    run = _Run(args, tmp_path, epochs=100, restarts=1)
    os.kill(run.rank1, signal.SIGKILL)
    assert run.launcher.wait(timeout=300) == 0, run.err.read_text()[-3000:]
    assert run.our_lines(timeout=1)  # rank 0 said it failed, and torchrun restarted them
    epochs = [json.loads(line)["epoch"] for line in run.metrics.open()]
    assert epochs == list(range(1, 101))  # the restarted processes went on from last.pt


def test_a_rank_that_hangs_ends_the_run_after_the_dist_timeout(
    demo_file: Path, tmp_path: Path
) -> None:
    args = _train_args(
        demo_file, tmp_path / "run", "--steps-per-epoch", "20", "--dist-timeout", "2"
    )
    run = _Run(args, tmp_path)
    os.kill(run.rank1, signal.SIGSTOP)  # alive, connections open, answering nothing
    t0 = time.monotonic()
    try:
        (ours,) = run.our_lines()
        waited = time.monotonic() - t0
    finally:
        os.kill(run.rank1, signal.SIGCONT)
    assert run.launcher.wait(timeout=120) != 0
    assert "rank 0 of 2 lost contact with the other training processes" in ours
    assert "one stopped answering for --dist-timeout 2 s" in ours
    assert 1.5 < waited < 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_rank_that_cannot_reach_the_master_exits_2_with_one_line(
    demo_file: Path, tmp_path: Path
) -> None:
    env = {
        **_env(),
        "WORLD_SIZE": "2",
        "RANK": "1",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),  # nobody listens there
    }
    run = tmp_path / "run"
    args = _train_args(demo_file, run, "--dist-timeout", "1")
    r = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, env=env
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1, r.stderr
    assert "rank 1 of 2 could not reach the other training processes at 127.0.0.1:" in r.stderr
    assert "MASTER_ADDR" in r.stderr
    assert not run.exists()


# ---- without a launch -------------------------------------------------------------------------


def test_launch_is_read_from_torchruns_variables() -> None:
    full = {
        "WORLD_SIZE": "4",
        "RANK": "3",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "node0",
        "MASTER_PORT": "29500",
    }
    assert Launch.from_environ({}) is None
    assert Launch.from_environ({**full, "WORLD_SIZE": "1"}) is None
    assert Launch.from_environ(full) == Launch(4, 3, 1, "node0:29500")
    restarted = Launch.from_environ({**full, "TORCHELASTIC_RESTART_COUNT": "2"})
    assert restarted is not None and restarted.restarts == 2
    assert main_process({}) and not main_process(full)
    with pytest.raises(ApprenticeError, match="RANK, MASTER_PORT not: start the processes"):
        Launch.from_environ({**full, "RANK": "", "MASTER_PORT": ""})
    with pytest.raises(ApprenticeError, match="RANK='x' is not an integer"):
        Launch.from_environ({**full, "RANK": "x"})
    with pytest.raises(ApprenticeError, match="do not fit WORLD_SIZE=4"):
        Launch.from_environ({**full, "RANK": "4"})


def test_one_process_alone_changes_nothing() -> None:
    alone = Processes()
    assert alone.is_main and alone.world_size == 1
    assert alone.pass_steps(250, 100) == 3  # ceil: the last batch is a short one
    assert alone.sampler_rng(5).integers(1 << 30) == np.random.default_rng(5).integers(1 << 30)
    assert alone.gather_epoch([1.0, 2.0], {}) == (1.5, None)
    assert alone.on_main(lambda: 7) == 7


def test_only_train_runs_under_torchrun(
    demo_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert main(["inspect", str(demo_file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "only `apprentice train` runs under torchrun" in err


def test_python_m_apprentice_is_the_command() -> None:
    # Exit 0 is the torchrun tests' (`torchrun -m apprentice train`); here a user error's 2.
    bad = subprocess.run(
        [sys.executable, "-m", "apprentice", "inspect", "/no/such/demos.hdf5"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_training_data_identity_tells_datasets_apart(synthetic: Any, tmp_path: Path) -> None:
    one = synthetic.write_demo_file(tmp_path / "one.hdf5", seed=0)
    other = synthetic.write_demo_file(tmp_path / "other.hdf5", seed=1)
    config = TrainConfig.from_dict(_train_config(one, tmp_path / "run"))
    first = load_train_data(config).identity()
    assert first == load_train_data(config).identity()
    assert json.dumps(first) != json.dumps(
        load_train_data(
            TrainConfig.from_dict({**config.to_dict(), "dataset": str(other)})
        ).identity()
    )
