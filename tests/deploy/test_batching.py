"""Batched serving: act requests of different sessions share one `act_batch` call, and every
session acts as it would served alone, for every policy kind that keeps state and the MLP.

"Alone" is the in-process policy acting on the session's stream by itself, which is what an
unbatched server sends bit for bit (test_server.py). Batched actions agree to float tolerance
(atol 1e-5), not bit for bit: a matrix product over several rows runs other CPU kernels,
with another summation order, than over one row.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from apprentice.deploy.batching import ActQueue, ActRequest, Inference, Session
from apprentice.deploy.client import Client, ServerError
from apprentice.deploy.server import PolicyServer, ServeConfig
from apprentice.deploy.shield import Shield, robot_config
from apprentice.errors import ApprenticeError
from apprentice.policies import (
    ACTConfig,
    DiffusionConfig,
    FlowConfig,
    MLPConfig,
    MLPPolicy,
    PolicyConfig,
    RNNConfig,
    TransformerConfig,
    load_policy,
)


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
KINDS: dict[str, PolicyConfig] = {
    "mlp": MLPConfig.tiny(frame_stack=2),
    "rnn": RNNConfig.tiny(num_layers=1, rnn_horizon=3, frame_stack=2),
    "transformer": TransformerConfig.tiny(),  # its state: a frame history of 3
    "act": ACTConfig.tiny(),  # temporal ensembling: every row's recent chunks
    "act-queue": ACTConfig.tiny(temporal_ensemble=False, execute_horizon=3),
    "diffusion": DiffusionConfig.tiny(),  # queued actions and plan count per row
    "flow": FlowConfig.tiny(),
}
SESSIONS, STEPS = 4, 9
RESETS = {1: 3, 2: 5, 3: 7}
"""Session -> the step before which it resets (session 0 never does)."""


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("batching")
    sampling = RNNConfig.tiny(head="gmm", deterministic_act=False, low_noise_eval=False)
    return {
        **{k: H.make_checkpoint(folder / f"{k}.pt", k, config=c) for k, c in KINDS.items()},
        "rnn-sampling": H.make_checkpoint(folder / "s.pt", "rnn", config=sampling),
    }


def streams() -> list[list[dict[str, np.ndarray]]]:
    return [H.obs_stream(STEPS, seed=20 + i) for i in range(SESSIONS)]


def alone(
    checkpoint: Path, stream: Sequence[dict[str, np.ndarray]], reset_at: int | None
) -> np.ndarray:
    """Actions (T, A) of the in-process policy on one session's stream, with its reset,
    through the sim_gripper shield that the server runs per session."""
    policy = load_policy(checkpoint)
    shield = Shield(robot_config("sim_gripper"), policy.action_dim)
    actions = []
    for t, obs in enumerate(stream):
        if t == reset_at:
            policy.reset()
            shield.reset()
        actions.append(shield.filter(policy.act(obs), obs))
    return np.stack(actions)


def turns(seed: int) -> list[list[int]]:
    """Which sessions send a request together, turn by turn, until each has sent STEPS."""
    rng = np.random.default_rng(seed)
    sent, schedule = [0] * SESSIONS, []
    while min(sent) < STEPS:
        group = [i for i in range(SESSIONS) if sent[i] < STEPS and rng.random() < 0.7]
        group = group or [sent.index(min(sent))]
        schedule.append(group)
        for i in group:
            sent[i] += 1
    return schedule


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_batches_of_interleaved_sessions_act_as_each_session_alone(
    kind: str, checkpoints: dict[str, Path]
) -> None:
    """Sessions send in changing groups, each group queued together (so it runs as one
    act_batch call), and reset at different steps: each session's (shielded) actions are
    those of its stream acted on alone."""
    inference = Inference(load_policy(checkpoints[kind]), robot_config("sim_gripper"), max_batch=8)
    assert inference.batched
    obs, schedule, batches = streams(), turns(seed=0), Counter[int]()

    async def serve() -> list[list[np.ndarray]]:
        with ThreadPoolExecutor(1) as executor:
            queue = ActQueue(inference, executor, batches)
            sessions = [inference.new_session() for _ in range(SESSIONS)]
            sent: list[list[np.ndarray]] = [[] for _ in range(SESSIONS)]
            for group in schedule:
                for i in group:
                    if RESETS.get(i) == len(sent[i]):
                        sessions[i].reset()  # as a reset message does, between requests
                requests = [queue.act(sessions[i], obs[i][len(sent[i])]) for i in group]
                for i, action in zip(group, await asyncio.gather(*requests), strict=True):
                    sent[i].append(action)
            return sent

    served = asyncio.run(serve())
    for i in range(SESSIONS):
        expected = alone(checkpoints[kind], obs[i], RESETS.get(i))
        np.testing.assert_allclose(np.stack(served[i]), expected, atol=1e-5, err_msg=f"{i}")
    # Each group, queued while the inference thread was idle, ran as one batch.
    assert batches == Counter(len(group) for group in schedule)
    assert max(batches) == SESSIONS


@dataclass
class FirstBatch:
    """The first batch on the inference thread waits (at most 10 s) for `go`: what arrives
    meanwhile queues up, and all of it runs as the next batch."""

    go: threading.Event = field(default_factory=threading.Event)
    size: int = 0
    """Requests in the first batch (those queued before the inference thread took it)."""


@pytest.fixture
def first_batch(monkeypatch: pytest.MonkeyPatch) -> Iterator[FirstBatch]:
    gate, original = FirstBatch(), Inference.run

    def run(self: Inference, batch: Sequence[ActRequest]) -> None:
        if not gate.size:
            gate.size = len(batch)
            gate.go.wait(timeout=10)
        original(self, batch)

    monkeypatch.setattr(Inference, "run", run)
    yield gate
    gate.go.set()


def client_session(
    url: str, stream: Sequence[dict[str, np.ndarray]], reset_at: int | None, out: list
) -> None:
    """One robot: its stream in a closed loop, with its reset (run in its own thread)."""
    with Client(url, token=TOKEN, timeout=20) as client:
        for t, obs in enumerate(stream):
            if t == reset_at:
                client.reset()
            out.append(client.act(obs))


def queued(server: PolicyServer, count: int) -> threading.Event:
    """An event set (from the server's loop) once `count` act requests are queued."""
    ready, acts = threading.Event(), server._acts
    assert acts is not None
    original = acts.act

    async def counting(session: Session, obs: dict[str, np.ndarray]) -> np.ndarray:
        if server._queued >= count:  # this request counted: it is on its way into the queue
            ready.set()
        return await original(session, obs)

    acts.act = counting  # type: ignore[method-assign]
    return ready


def robots(url: str, count: int) -> tuple[list[threading.Thread], list[list[np.ndarray]]]:
    """`count` robot threads (not started) on the sessions' streams, and their actions."""
    obs = streams()
    got: list[list[np.ndarray]] = [[] for _ in range(count)]
    threads = [
        threading.Thread(target=client_session, args=(url, obs[i], RESETS.get(i), got[i]))
        for i in range(count)
    ]
    return threads, got


def run_robots(
    threads: list[threading.Thread], all_queued: threading.Event, go: threading.Event
) -> None:
    """Start the robots, let the first batch go once all have queued, wait for them."""
    for thread in threads:
        thread.start()
    assert all_queued.wait(timeout=20)
    go.set()
    for thread in threads:
        thread.join(timeout=60)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_concurrent_robots_on_a_server_act_as_each_alone(
    kind: str, checkpoints: dict[str, Path], first_batch: FirstBatch
) -> None:
    """End to end: robots in threads, each in a closed loop with its own reset step, on one
    server: requests batch as they arrive, and each robot gets its stream's actions."""
    server, url = H.start(checkpoints[kind], shield="sim_gripper")
    try:
        threads, got = robots(url, SESSIONS)
        run_robots(threads, queued(server, SESSIONS), first_batch.go)
        obs = streams()
        for i in range(SESSIONS):
            expected = alone(checkpoints[kind], obs[i], RESETS.get(i))
            np.testing.assert_allclose(np.stack(got[i]), expected, atol=1e-5, err_msg=f"{i}")
        batches = server.metrics.batches
        assert sum(size * n for size, n in batches.items()) == SESSIONS * STEPS
        # The requests that queued behind the first batch ran as one batch.
        assert max(batches) >= max(first_batch.size, SESSIONS - first_batch.size) > 1
        assert server.metrics.errors == {}
    finally:
        server.stop_background()


def test_a_failing_request_fails_alone_and_its_batch_neighbours_step_once(
    checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Errors stay per session: a request the policy raises on gets the error, the others of
    its batch their actions, and no session's state moves for the failed request."""
    policy = load_policy(checkpoints["rnn"])
    act_batch = policy.act_batch

    def picky(obs: dict[str, np.ndarray]) -> np.ndarray:
        if np.any(obs["object"] > 50):
            raise RuntimeError("the policy cannot act on this row")
        return act_batch(obs)

    monkeypatch.setattr(policy, "act_batch", picky)
    inference = Inference(policy, None, max_batch=8)
    obs = streams()[:3]
    bad = {**obs[1][1], "object": np.full(10, 99.0, np.float32)}

    async def serve() -> list[list[np.ndarray | BaseException]]:
        with ThreadPoolExecutor(1) as executor:
            queue = ActQueue(inference, executor, Counter())
            sessions = [inference.new_session() for _ in range(3)]
            sends = [[o[0] for o in obs], [obs[0][1], bad, obs[2][1]], [o[1] for o in obs]]
            return [
                await asyncio.gather(
                    *(queue.act(s, o) for s, o in zip(sessions, step, strict=True)),
                    return_exceptions=True,
                )
                for step in sends
            ]

    replies = asyncio.run(serve())  # [turn][session]
    assert isinstance(replies[1][1], RuntimeError) and "cannot act" in str(replies[1][1])
    reference = load_policy(checkpoints["rnn"])
    # The observation step each reply answers; None: the failed request.
    for i, steps in enumerate([[0, 1, 1], [0, None, 1], [0, 1, 1]]):
        reference.reset()
        for turn, step in enumerate(steps):
            if step is not None:
                np.testing.assert_allclose(replies[turn][i], reference.act(obs[i][step]), atol=1e-5)


def test_a_policy_that_cannot_batch_is_served_unbatched_and_says_so(
    checkpoints: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
    first_batch: FirstBatch,
) -> None:
    """A GMM head that samples draws every row from one generator: the server serves each
    session alone with its own policy copy (and sampler), and warns at start."""
    with caplog.at_level(logging.WARNING, logger="apprentice.deploy.server"):
        server, url = H.start(checkpoints["rnn-sampling"])
    try:
        assert not server.inference.batched and server.health()["max_batch"] == 1
        warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warning) == 1 and "batching off" in warning[0]
        assert "deterministic_act=false" in warning[0]
        threads, got = robots(url, 2)
        run_robots(threads, queued(server, 2), first_batch.go)
        obs = streams()
        for i in range(2):  # each session samples as its own in-process policy: bit for bit
            reference, expected = load_policy(checkpoints["rnn-sampling"]), []
            for t, o in enumerate(obs[i]):
                if t == RESETS.get(i):
                    reference.reset()
                expected.append(reference.act(o))
            np.testing.assert_array_equal(np.stack(got[i]), np.stack(expected))
        assert server.metrics.batches == Counter({1: 2 * STEPS})
    finally:
        server.stop_background()


def test_max_batch_1_serves_unbatched(checkpoints: dict[str, Path]) -> None:
    server, url = H.start(checkpoints["act"], max_batch=1)
    try:
        assert not server.inference.batched
        assert server.inference.description.startswith("batching off (--max-batch 1)")
        with Client(url, token=TOKEN) as client:
            stream = streams()[0]
            got = np.stack([client.act(o) for o in stream])
        reference = load_policy(checkpoints["act"])
        np.testing.assert_array_equal(got, np.stack([reference.act(o) for o in stream]))
    finally:
        server.stop_background()


def test_max_batch_must_be_positive(checkpoints: dict[str, Path]) -> None:
    with pytest.raises(ApprenticeError, match="--max-batch must be >= 1"):
        PolicyServer(ServeConfig(checkpoint=str(checkpoints["mlp"]), max_batch=0))


class CountingMLP(MLPPolicy):
    """An MLP kind that keeps run-time state of its own and does not hand it to run_state."""

    def _reset_rows(self, rows: torch.Tensor | None) -> None:
        self.resets = getattr(self, "resets", 0) + 1


def test_a_policy_kind_with_unshared_state_refuses_batching() -> None:
    policy = CountingMLP(MLPConfig.tiny(), H.LIFT_SPEC, {})
    refusal = policy.batching_refusal()
    assert refusal == "CountingMLP keeps run-time state that run_state does not hold"
    inference = Inference(policy, None, max_batch=8)
    assert not inference.batched and inference.max_batch == 1
    assert "CountingMLP keeps run-time state" in inference.description


def test_server_error_in_a_batch_is_answered_to_that_session_only(
    checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the wire: the failing request gets an `internal` error reply and its session
    goes on; the others are unaffected."""
    server, url = H.start(checkpoints["mlp"])
    act_batch = server.policy.act_batch

    def picky(obs: dict[str, np.ndarray]) -> np.ndarray:
        if np.any(obs["object"] > 50):
            raise RuntimeError("the policy cannot act on this row")
        return act_batch(obs)

    monkeypatch.setattr(server.policy, "act_batch", picky)
    try:
        obs = streams()[0][0]
        with Client(url, token=TOKEN) as a, Client(url, token=TOKEN) as b:
            with pytest.raises(ServerError, match="internal"):
                a.act({**obs, "object": np.full(10, 99.0, np.float32)})
            reference = load_policy(checkpoints["mlp"])
            np.testing.assert_array_equal(a.act(obs), reference.act(obs))
            assert b.act(obs).shape == (7,)
        assert server.metrics.errors == {"internal": 1}
    finally:
        server.stop_background()
