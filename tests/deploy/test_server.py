"""The policy server and client: actions equal in-process ones, sessions, auth, health, metrics.

The checkpoints are tiny random-weight policies with the lift task's spec, saved as a trainer
would save them; the server runs in this process on a free port (`start_background`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from apprentice.data.spec import ObsActSpec
from apprentice.deploy.batching import ActRequest, Inference
from apprentice.deploy.client import (
    AuthenticationError,
    Client,
    ServerBusy,
    ServerError,
)
from apprentice.deploy.control_loop import LoopConfig, run_episode
from apprentice.deploy.protocol import encode_array
from apprentice.deploy.server import PolicyServer, ServeConfig
from apprentice.deploy.shield import Shield, robot_config
from apprentice.envs import make_task
from apprentice.envs.seeds import held_out_seeds
from apprentice.errors import ApprenticeError
from apprentice.evaluate.run import EvalConfig, evaluate
from apprentice.policies import (
    CameraConfig,
    MLPConfig,
    PolicyConfig,
    RNNConfig,
    load_policy,
    save_checkpoint,
)

LIFT_SPEC = ObsActSpec(
    {"eef_pos": (3,), "eef_quat": (4,), "gripper_qpos": (2,), "object": (10,)}, 7
)
LIFT_ENV_ARGS = {"env_name": "lift", "env_type": "apprentice", "env_kwargs": {"camera": False}}
TOKEN = "test-token"
CONFIGS = {
    "mlp": MLPConfig.tiny(),
    # rnn_horizon 3 and frame_stack 2: the state a session must keep is more than a hidden state.
    "rnn": RNNConfig.tiny(num_layers=1, rnn_horizon=3, frame_stack=2),
}


def make_checkpoint(
    path: Path, kind: str, seed: int = 0, config: PolicyConfig | None = None
) -> Path:
    """A random-weight policy (`config`, default `CONFIGS[kind]`) with the lift spec and
    non-trivial normalization, saved."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    norm = {
        "obs": {
            k: {"mean": rng.normal(size=s).tolist(), "std": rng.uniform(0.5, 2.0, size=s).tolist()}
            for k, s in LIFT_SPEC.obs_shapes.items()
        },
        "actions": {"mean": [0.0] * 7, "std": [1.0] * 7},
    }
    policy = (config or CONFIGS[kind]).build(LIFT_SPEC, norm)
    save_checkpoint(path, policy, env_args=LIFT_ENV_ARGS)
    return path


def obs_stream(steps: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {k: rng.normal(size=s).astype(np.float32) for k, s in LIFT_SPEC.obs_shapes.items()}
        for _ in range(steps)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("serve")
    return {kind: make_checkpoint(folder / f"{kind}.pt", kind) for kind in CONFIGS}


def hold_inference(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make every batch on the inference thread set `entered`, then wait for `release` (at
    most 10 s)."""
    entered, release = threading.Event(), threading.Event()
    original = Inference.run

    def held_run(self: Inference, batch: Sequence[ActRequest]) -> None:
        entered.set()
        release.wait(timeout=10)
        original(self, batch)

    monkeypatch.setattr(Inference, "run", held_run)
    return entered, release


def start(checkpoint: Path, **overrides: object) -> tuple[PolicyServer, str]:
    cfg = ServeConfig(checkpoint=str(checkpoint), port=0, token=TOKEN, **overrides)  # type: ignore[arg-type]
    server = PolicyServer(cfg)
    port = server.start_background()
    return server, f"ws://127.0.0.1:{port}"


@pytest.fixture(params=sorted(CONFIGS))
def served(request: pytest.FixtureRequest, checkpoints: dict[str, Path]) -> Iterator[tuple]:
    server, url = start(checkpoints[request.param])
    yield request.param, server, url
    server.stop_background()


def test_normalizer_is_used(checkpoints: dict[str, Path]) -> None:
    # The fixture's normalization must reach the policy, or the round trips below test less.
    policy = load_policy(checkpoints["mlp"])
    assert not torch.allclose(policy.obs_mean, torch.zeros_like(policy.obs_mean))


def test_act_matches_in_process_policy(served: tuple, checkpoints: dict[str, Path]) -> None:
    kind, _, url = served
    reference = load_policy(checkpoints[kind])
    with Client(url, token=TOKEN) as client:
        assert client.hello["policy"] == kind and client.hello["task"] == "lift"
        assert client.obs_shapes == LIFT_SPEC.obs_shapes and client.action_dim == 7
        for obs in obs_stream(12, seed=1):
            action = client.act(obs)
            assert action.dtype == np.float32 and action.shape == (7,)
            np.testing.assert_array_equal(action, reference.act(obs))


def test_reset_restarts_the_episode(served: tuple, checkpoints: dict[str, Path]) -> None:
    kind, _, url = served
    reference = load_policy(checkpoints[kind])
    stream = obs_stream(5, seed=2)
    with Client(url, token=TOKEN) as client:
        first = [client.act(o) for o in stream]
        client.reset()
        again = [client.act(o) for o in stream]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    np.testing.assert_array_equal(np.stack(first), np.stack([reference.act(o) for o in stream]))


@pytest.mark.parametrize("max_batch", [32, 1])
def test_interleaved_sessions_keep_their_own_state(
    checkpoints: dict[str, Path], max_batch: int
) -> None:
    """Two robots on one server act as two separate in-process recurrent policies, batched
    (each session a row of the served policy's state) or not (a policy copy each)."""
    server, url = start(checkpoints["rnn"], max_batch=max_batch)
    try:
        ref_a, ref_b = load_policy(checkpoints["rnn"]), load_policy(checkpoints["rnn"])
        stream_a, stream_b = obs_stream(10, seed=3), obs_stream(10, seed=4)
        with Client(url, token=TOKEN) as a, Client(url, token=TOKEN) as b:
            assert a.session != b.session
            for t in range(10):
                np.testing.assert_array_equal(a.act(stream_a[t]), ref_a.act(stream_a[t]))
                np.testing.assert_array_equal(b.act(stream_b[t]), ref_b.act(stream_b[t]))
                if t == 6:  # a resets mid-stream, b is unaffected
                    a.reset()
                    ref_a.reset()
            sessions = list(server.sessions.values())
            assert len(sessions) == 2
            if max_batch > 1:  # one policy for all: a session holds its row of the state
                assert all(s.policy is None and s.run_state for s in sessions)
            else:  # a copy each, sharing the served weights instead of copying them
                served_weight = server.policy.lstm.weight_ih_l0
                assert all(s.policy.lstm.weight_ih_l0 is served_weight for s in sessions)
    finally:
        server.stop_background()


def test_health_and_metrics(checkpoints: dict[str, Path]) -> None:
    server, url = start(checkpoints["mlp"])
    try:
        with Client(url, token=TOKEN) as client:
            for obs in obs_stream(7, seed=5):
                client.act(obs)
            client.reset()
            health = client.health()
            assert health["status"] == "ok" and health["sessions"] == 1
            assert health["policy"] == "mlp" and health["task"] == "lift"
            assert health["max_batch"] == 32
            metrics = client.metrics()
        assert metrics["requests"] == {"act": 7, "reset": 1}
        assert metrics["batches"] == {"1": 7}  # a lone client's requests never wait for others
        assert metrics["sessions_opened"] == 1
        assert metrics["act_latency"]["count"] == 7
        assert metrics["act_latency"]["p99_ms"] >= metrics["act_latency"]["p50_ms"] > 0
        request = urllib.request.Request(
            url.replace("ws", "http") + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            text = response.read().decode()
        assert 'apprentice_serve_requests_total{type="act"} 7' in text
        assert 'apprentice_serve_act_seconds_bucket{le="+Inf"} 7' in text
        assert 'apprentice_serve_batches_total{size="1"} 7' in text
    finally:
        server.stop_background()


def test_wrong_or_missing_token_is_refused(checkpoints: dict[str, Path]) -> None:
    server, url = start(checkpoints["mlp"])
    try:
        with pytest.raises(AuthenticationError, match="refused the token"):
            Client(url, token="not-the-token")
        with pytest.raises(AuthenticationError):
            Client(url)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url.replace("ws", "http") + "/metrics", timeout=5)
        assert info.value.code == 401
        info.value.close()  # an open response would hold the server's shutdown for seconds
        # Health stays open for load balancers and probes.
        with urllib.request.urlopen(url.replace("ws", "http") + "/healthz", timeout=5) as r:
            assert r.status == 200
        assert server.metrics.rejected["auth"] == 3
        assert server.metrics.sessions_opened == 0
    finally:
        server.stop_background()


def test_full_queue_answers_busy(
    checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Back-pressure: with the inference thread held and the queue full, a request gets "busy"."""
    entered, release = hold_inference(monkeypatch)
    server, url = start(checkpoints["mlp"], queue_size=1)
    try:
        obs = obs_stream(1, seed=6)[0]
        with Client(url, token=TOKEN, timeout=10) as a, Client(url, token=TOKEN) as b:
            result: list[np.ndarray] = []
            worker = threading.Thread(target=lambda: result.append(a.act(obs)))
            worker.start()
            assert entered.wait(timeout=10)
            with pytest.raises(ServerBusy, match="queue is full"):
                b.act(obs)
            release.set()
            worker.join()
            assert result[0].shape == (7,)
            assert b.act(obs).shape == (7,)  # the refused session still works
        assert server.metrics.errors["busy"] == 1
    finally:
        release.set()
        server.stop_background()


def test_port_in_use_names_the_port(checkpoints: dict[str, Path]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = PolicyServer(ServeConfig(checkpoint=str(checkpoints["mlp"]), port=port))
        with pytest.raises(ApprenticeError, match=f"port {port} on 127.0.0.1 is already in use"):
            server.start_background()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ApprenticeError, match="truncated, corrupt or not an apprentice checkpoint"):
        PolicyServer(ServeConfig(checkpoint=str(bad), port=0))


def test_server_errors_are_typed(checkpoints: dict[str, Path]) -> None:
    server, url = start(checkpoints["mlp"])
    try:
        with Client(url, token=TOKEN) as client:
            obs = obs_stream(1, seed=7)[0]
            with pytest.raises(ServerError, match="invalid_obs") as info:
                client.act({**obs, "object": np.zeros(9, np.float32)})
            assert info.value.kind == "invalid_obs"
            with pytest.raises(ApprenticeError, match="observation lacks eef_pos"):
                client.act({k: v for k, v in obs.items() if k != "eef_pos"})
    finally:
        server.stop_background()


def _example() -> ModuleType:
    name = "apprentice_example_serve_control_loop"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[2] / "examples" / "serve_control_loop.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_control_loop_applies_the_in_process_policy_actions(checkpoints: dict[str, Path]) -> None:
    server, url = start(checkpoints["rnn"])
    try:
        seed = held_out_seeds(1)[0]
        with Client(url, token=TOKEN) as client:
            log = run_episode(
                client, make_task("lift"), seed, LoopConfig(max_steps=15, realtime=False)
            )
        assert log.length == 15 and log.late_replies == 0 and len(log.latencies_ms) == 15
        task, policy = make_task("lift"), load_policy(checkpoints["rnn"])
        obs, _ = task.reset(seed=seed)
        expected = []
        for _ in range(15):
            expected.append(policy.act(obs))
            obs, *_ = task.step(expected[-1])
        np.testing.assert_array_equal(np.stack(log.actions), np.stack(expected))
    finally:
        server.stop_background()


def test_late_replies_fall_back_to_the_shield_watchdog(
    checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Inference.run

    def slow_run(self: Inference, batch: Sequence[ActRequest]) -> None:
        time.sleep(0.2)  # four control periods at 20 Hz: every reply misses its deadline
        original(self, batch)

    monkeypatch.setattr(Inference, "run", slow_run)
    server, url = start(checkpoints["mlp"])
    try:
        shield = Shield(robot_config("sim_gripper"), 7)  # watchdog: 0.1 s
        with Client(url, token=TOKEN) as client:
            log = run_episode(client, make_task("lift"), 0, LoopConfig(max_steps=4), shield=shield)
        assert log.late_replies == 4 and not log.latencies_ms
        assert log.safe_actions >= 2 and shield.counts["watchdog"] == 1
        # Before and after the watchdog expires, the robot is sent the safe stop: zero motion.
        np.testing.assert_array_equal(np.stack(log.actions), np.zeros((4, 7), np.float32))
    finally:
        server.stop_background()


def test_control_loop_example_matches_apprentice_eval(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """The example on the same held-out seeds as `apprentice eval`: the same episodes."""
    eval_json = tmp_path / "eval.json"
    evaluate(EvalConfig(str(checkpoints["mlp"]), episodes=2, workers=1, out=str(eval_json)))
    server, url = start(checkpoints["mlp"])
    example = _example()
    try:
        result = example.run(
            example.ControlLoopConfig(
                url=url, token=TOKEN, episodes=2, rate_hz=400.0, compare=str(eval_json)
            )
        )
    finally:
        server.stop_background()
    reference = json.loads(eval_json.read_text())
    assert result["seeds"] == reference["seeds"]
    assert result["per_episode_success"] == reference["per_episode_success"]
    assert result["compare"]["seeds_compared"] == 2
    assert result["compare"]["seeds_disagreeing"] == []
    assert result["steps"] == sum(result["per_episode_length"]) > 0


def test_server_side_shield_filters_every_action(checkpoints: dict[str, Path]) -> None:
    server, url = start(checkpoints["mlp"], shield="sim_gripper")
    try:
        reference, shield = load_policy(checkpoints["mlp"]), Shield(robot_config("sim_gripper"), 7)
        with Client(url, token=TOKEN) as client:
            assert client.hello["shield"] is True
            for obs in obs_stream(10, seed=8):
                # The random policy's actions exceed the limits: the server must send them shielded.
                expected = shield.filter(reference.act(obs), obs)
                np.testing.assert_array_equal(client.act(obs), expected)
            metrics = client.metrics()
        assert sum(shield.counts.values()) > 0
        assert metrics["shield"] == {k: n for k, n in shield.counts.items() if n}
    finally:
        server.stop_background()


def test_client_needs_no_torch() -> None:
    """A robot computer runs the client with numpy, msgpack and websockets alone."""
    code = (
        "import sys; from apprentice.deploy import Client; "
        "from apprentice.deploy.control_loop import run_episode; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_an_image_policy_is_served_with_uint8_frames(tmp_path: Path) -> None:
    """Camera frames travel as uint8 (H, W, C) and act as the in-process policy does."""
    spec = ObsActSpec({**LIFT_SPEC.obs_shapes, "agentview_image": (24, 24, 3)}, 7)
    torch.manual_seed(0)
    config = MLPConfig(
        hidden_dims=(16,),
        image_keys=("agentview_image",),
        camera=CameraConfig(feature_dim=8, num_keypoints=4),
    )
    env_args = {**LIFT_ENV_ARGS, "env_kwargs": {"camera": True, "image_size": 24}}
    path = tmp_path / "img.pt"
    save_checkpoint(path, config.build(spec, {}), env_args=env_args)
    reference = load_policy(path)
    rng = np.random.default_rng(0)
    server, url = start(path)
    try:
        with Client(url, token=TOKEN) as client:
            assert client.hello["image_keys"] == ["agentview_image"]
            assert client.obs_shapes["agentview_image"] == (24, 24, 3)
            for _ in range(4):
                obs = {
                    k: rng.normal(size=s).astype(np.float32)
                    for k, s in LIFT_SPEC.obs_shapes.items()
                }
                obs["agentview_image"] = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
                np.testing.assert_array_equal(client.act(obs), reference.act(obs))
            # A float frame is refused, naming the key and the dtype it needs.
            bad = {**obs, "agentview_image": obs["agentview_image"].astype(np.float32)}
            with pytest.raises(ServerError, match=r"agentview_image.*\|u1"):
                client._request(
                    {"type": "act", "obs": {k: encode_array(v) for k, v in bad.items()}}, None
                )
    finally:
        server.stop_background()


def test_no_token_off_loopback_needs_insecure_and_then_warns(
    checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from apprentice.deploy.server import TOKEN_ENV, is_loopback

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    ckpt = str(checkpoints["mlp"])
    for host in ("0.0.0.0", "192.168.1.20", "::", "robot-pc.local", ""):
        assert not is_loopback(host)
        # Refused before the checkpoint is read (this one does not exist) or a port bound.
        with pytest.raises(ApprenticeError, match=r"without a token .* pass --insecure"):
            PolicyServer(ServeConfig(checkpoint="missing.pt", host=host))
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):
        assert is_loopback(host)
        assert not PolicyServer(ServeConfig(checkpoint=ckpt, host=host)).open_to_network
    assert not PolicyServer(ServeConfig(checkpoint=ckpt, host="0.0.0.0", token="t")).open_to_network
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert not PolicyServer(ServeConfig(checkpoint=ckpt, host="0.0.0.0")).open_to_network
    monkeypatch.delenv(TOKEN_ENV)

    server = PolicyServer(ServeConfig(checkpoint=ckpt, host="0.0.0.0", port=0, insecure=True))
    with caplog.at_level(logging.WARNING, logger="apprentice.deploy.server"):
        port = server.start_background()
    try:
        warning = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warning) == 1
        assert f"NO TOKEN on 0.0.0.0:{port}" in warning[0].getMessage()
        with Client(f"ws://127.0.0.1:{port}") as client:  # open, as asked
            assert client.act(obs_stream(1, seed=0)[0]).shape == (7,)
    finally:
        server.stop_background()
