"""The policy server under bad input and failures: nothing a client sends or does crashes it.

Malformed, oversized and invalid messages, a wrong token (test_server.py), a client that
vanishes mid-episode, an idle client, a server restart, SIGTERM with a session open and with a
request in flight, a port in use, and a short soak (the 10-minute one is
benchmarks/soak_serve.py).
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import ClientConnection, connect

from apprentice.deploy.batching import Inference
from apprentice.deploy.client import Client, ServerUnavailable
from apprentice.deploy.protocol import encode_array, pack, unpack
from apprentice.deploy.server import PolicyServer, ServeConfig
from apprentice.errors import ApprenticeError
from apprentice.policies import load_policy

ROOT = Path(__file__).resolve().parents[2]


def _helpers() -> ModuleType:
    # The checkpoint fixtures live in test_server.py; tests/ is not a package, so load by path.
    name = "apprentice_test_deploy_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("test_server.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


H = _helpers()
TOKEN = H.TOKEN


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return H.make_checkpoint(tmp_path_factory.mktemp("reliability") / "rnn.pt", "rnn")  # type: ignore[no-any-return]


@pytest.fixture
def served(checkpoint: Path) -> Iterator[tuple[PolicyServer, str]]:
    server, url = H.start(checkpoint, max_message_bytes=4096)
    yield server, url
    server.stop_background()


def raw(url: str) -> ClientConnection:
    """A bare WebSocket with the token, past the hello: sends whatever a test gives it."""
    ws = connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, legacy=True)
    assert unpack(ws.recv(timeout=5))["type"] == "hello"
    return ws


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def act_frame(obs: dict[str, Any], rid: int = 1) -> bytes:
    return pack({"type": "act", "id": rid, "obs": obs})


OBS = H.obs_stream(1, seed=11)[0]
GOOD = {k: encode_array(v) for k, v in OBS.items()}
NAN = {**GOOD, "object": encode_array(np.full(10, np.nan, np.float32))}
BAD_FRAMES: dict[str, tuple[bytes | str, str, str]] = {
    # name: (frame, error kind, words the message must contain)
    "not msgpack": (b"\xc1\xff\x00", "malformed", "not valid msgpack"),
    "text frame": ("hello", "malformed", "text frames"),
    "not a map": (msgpack.packb([1, 2, 3]), "malformed", "must be a map"),
    "no id": (pack({"type": "act", "obs": GOOD}), "invalid_request", "integer 'id'"),
    "unknown type": (pack({"type": "jump", "id": 1}), "invalid_request", "unknown message type"),
    "obs not a map": (act_frame([1, 2]), "invalid_obs", "obs must be a map"),  # type: ignore[dict-item]
    "missing key": (
        act_frame({k: v for k, v in GOOD.items() if k != "eef_pos"}),
        "invalid_obs",
        "lacks key(s) eef_pos",
    ),
    "extra key": (act_frame({**GOOD, "joint_pos": GOOD["eef_pos"]}), "invalid_obs", "joint_pos"),
    "wrong shape": (
        act_frame({**GOOD, "object": encode_array(np.zeros((2, 5), np.float32))}),
        "invalid_obs",
        "shape (2, 5), expected (10,)",
    ),
    "wrong dtype": (
        act_frame({**GOOD, "object": encode_array(np.zeros(10, np.int32))}),
        "invalid_obs",
        "dtype '<i4'",
    ),
    "short data": (
        act_frame({**GOOD, "object": {"dtype": "<f4", "shape": [10], "data": b"\x00" * 8}}),
        "invalid_obs",
        "8 data bytes",
    ),
    "not an array": (act_frame({**GOOD, "object": [0.0] * 10}), "invalid_obs", "encoded array"),
    "NaN": (act_frame(NAN), "invalid_obs", "NaN or inf"),
}


def test_bad_messages_are_answered_counted_and_harmless(
    served: tuple[PolicyServer, str], checkpoint: Path
) -> None:
    server, url = served
    reference = load_policy(checkpoint)
    ws = raw(url)
    try:
        for name, (frame, kind, words) in BAD_FRAMES.items():
            ws.send(frame)
            reply = unpack(ws.recv(timeout=5))
            assert reply["type"] == "error" and reply["kind"] == kind, name
            assert words in reply["message"], (name, reply["message"])
        # The session survived, and none of the refused requests advanced the policy's state.
        ws.send(act_frame(GOOD, rid=99))
        reply = unpack(ws.recv(timeout=5))
        assert reply["type"] == "action" and reply["id"] == 99 and reply["step"] == 1
        action = np.frombuffer(reply["action"]["data"], np.float32)
        np.testing.assert_array_equal(action, reference.act(OBS))
    finally:
        ws.close()
    kinds = [kind for _, kind, _ in BAD_FRAMES.values()]
    assert server.metrics.errors == {k: kinds.count(k) for k in set(kinds)}
    assert wait_until(lambda: server.metrics.sessions_closed["client_closed"] == 1)


def test_oversized_message_closes_only_that_session(served: tuple[PolicyServer, str]) -> None:
    server, url = served
    with Client(url, token=TOKEN) as bystander:
        ws = raw(url)
        huge = {**GOOD, "object": {"dtype": "<f4", "shape": [10], "data": b"\x00" * 8000}}
        ws.send(act_frame(huge))
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=5)
        assert info.value.sent is not None and info.value.sent.code == 1009
        assert wait_until(lambda: server.metrics.rejected["oversized"] == 1)
        assert server.metrics.sessions_closed["oversized"] == 1
        # The client refuses to send what the server would refuse, without losing its session.
        with pytest.raises(ApprenticeError, match="exceeds the server's limit of 4096 bytes"):
            bystander.act({**OBS, "object": np.zeros(2000, np.float32)})
        assert bystander.act(OBS).shape == (7,)


def test_client_vanishing_mid_episode_frees_its_session(served: tuple[PolicyServer, str]) -> None:
    server, url = served
    ws = raw(url)
    for rid in range(3):
        ws.send(act_frame(GOOD, rid))
        assert unpack(ws.recv(timeout=5))["type"] == "action"
    assert len(server.sessions) == 1
    # No close frame, no FIN handshake: as if the robot computer lost power or the cable.
    ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    ws.socket.close()
    assert wait_until(lambda: not server.sessions)
    assert server.metrics.sessions_closed["dropped"] == 1
    with Client(url, token=TOKEN) as client:  # the server carries on
        assert client.act(OBS).shape == (7,)


def test_idle_session_is_closed(checkpoint: Path) -> None:
    server, url = H.start(checkpoint, idle_timeout=0.3)
    try:
        client = Client(url, token=TOKEN)
        client.act(OBS)
        assert wait_until(lambda: not server.sessions, timeout=5)
        assert server.metrics.sessions_closed["idle"] == 1
        with pytest.raises(ServerUnavailable, match="idle timeout"):
            client.act(OBS)
    finally:
        server.stop_background()


def test_server_restart_gives_a_fresh_session(checkpoint: Path) -> None:
    first, url = H.start(checkpoint)
    port = first.port
    stream = H.obs_stream(4, seed=12)
    reference = load_policy(checkpoint)
    client = Client(url, token=TOKEN)
    try:
        for obs in stream:
            client.act(obs)
        old_session = client.session
        first.stop_background()
        with pytest.raises(ServerUnavailable, match="shutting down"):
            client.act(stream[0])
        with pytest.raises(ServerUnavailable, match="reconnect"):
            client.act(stream[0])
        with pytest.raises(ServerUnavailable, match="no policy server"):
            client.reconnect()  # nothing listens between the two servers
        second = PolicyServer(ServeConfig(checkpoint=str(checkpoint), port=port, token=TOKEN))
        second.start_background()
        try:
            client.reconnect()
            assert client.session != old_session
            # A fresh session: the recurrent state starts over.
            np.testing.assert_array_equal(client.act(stream[0]), reference.act(stream[0]))
        finally:
            second.stop_background()
    finally:
        client.close()


def test_shutdown_finishes_the_request_in_flight(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = H.hold_inference(monkeypatch)
    server, url = H.start(checkpoint)
    client = Client(url, token=TOKEN, timeout=10)
    result: list[np.ndarray] = []
    worker = threading.Thread(target=lambda: result.append(client.act(OBS)))
    worker.start()
    assert entered.wait(timeout=10)
    stopper = threading.Thread(target=server.stop_background)
    stopper.start()
    assert wait_until(lambda: server.health()["status"] == "draining")
    release.set()
    worker.join(timeout=10)
    stopper.join(timeout=10)
    assert result and result[0].shape == (7,)  # answered, not cut off
    assert server.metrics.sessions_closed["shutdown"] == 1
    with pytest.raises(ServerUnavailable, match="shutting down"):
        client.act(OBS)


def _serve_process(checkpoint: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apprentice.cli.main",
            "serve",
            str(checkpoint),
            "--port",
            str(port),
        ],
        env={**os.environ, "APPRENTICE_TOKEN": TOKEN, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_sigterm_exits_cleanly_and_port_in_use_is_one_clear_error(checkpoint: Path) -> None:
    port = H.free_port()
    proc = _serve_process(checkpoint, port)
    try:
        assert proc.stdout is not None
        assert "serving rnn policy for 'lift'" in proc.stdout.readline()
        client = Client(f"ws://127.0.0.1:{port}", token=TOKEN)
        assert client.act(OBS).shape == (7,)
        second = _serve_process(checkpoint, port)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2
        assert err.strip().splitlines() == [
            f"apprentice serve: error: port {port} on 127.0.0.1 is already in use; choose "
            "another --port or stop the process listening there"
        ]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "policy server stopped" in out and "act requests" in out
        with pytest.raises(ServerUnavailable, match="shutting down"):
            client.act(OBS)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_short_soak_drops_nothing(checkpoint: Path, tmp_path: Path) -> None:
    """The soak benchmark in small: clients connect, run episodes, disconnect, reconnect."""
    out = tmp_path / "soak.json"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "soak_serve.py"),
            *("--checkpoint", str(checkpoint), "--seconds", "6", "--clients", "4"),
            *("--sample-every", "1", "--out", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["client_errors"] == 0 and result["server_error_replies"] == 0
    assert result["dropped_sessions"] == 0
    assert result["sessions_opened"] == result["sessions_closed"] >= 8
    assert result["sessions_open_at_end"] == 0
    assert result["episodes"] > 0 and result["server_exit_code"] == 0
    assert len(result["rss_mb"]) >= 3


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_sessions_do_not_grow_memory(checkpoint: Path) -> None:
    """Opening and closing sessions returns their memory, batched or not (deepcopying the
    RNN's sampling generator leaked ~5 KB of native memory per session: 7 MB per 1500)."""
    for max_batch in (1, 32):  # a policy copy per session, or a row of the served one's state
        server = PolicyServer(ServeConfig(checkpoint=str(checkpoint), port=0, max_batch=max_batch))
        first = server.inference.new_session()
        if max_batch == 1:
            assert first.policy._generator is not server.policy._generator
            assert first.policy.lstm.weight_ih_l0 is server.policy.lstm.weight_ih_l0
        _open_act_close(server.inference, 200)
        gc.collect()
        before = _rss_mb()
        _open_act_close(server.inference, 1500)
        gc.collect()
        assert _rss_mb() - before < 2.0, max_batch


def _open_act_close(inference: Inference, sessions: int) -> None:
    """`sessions` sessions of 3 steps each, one after the other."""
    for _ in range(sessions):
        session = inference.new_session()
        for _ in range(3):
            inference.act([session], [OBS])
