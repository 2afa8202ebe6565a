"""One contract over every registered policy: train, act, checkpoint, reset, batch."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from apprentice.algos.bc import batch_to_tensors
from apprentice.data.dataset import DemoDataset, WindowSampler
from apprentice.data.normalize import Normalizer
from apprentice.errors import ApprenticeError
from apprentice.policies import (
    CameraConfig,
    Policy,
    PolicyConfig,
    load_policy,
    policy_config_class,
    policy_config_from_dict,
    policy_names,
    save_checkpoint,
)
from apprentice.policies.base import config_field_docs, split_run_state, stack_run_states

# Every registered name runs at its tiny size (`PolicyConfig.tiny`), then variants on top.
VARIANTS = [(name, {}) for name in policy_names()] + [
    ("mlp", {"hidden_dims": (64,), "frame_stack": 3}),
    ("mlp", {"hidden_dims": (64, 64), "init": "pytorch"}),
    ("gmm", {"use_tanh": True}),
    ("gmm", {"hidden_dims": (64, 64), "init": "orthogonal"}),
    ("rnn", {"head": "gmm", "frame_stack": 2}),
    ("transformer", {"embed_dim": 32, "frame_stack": 3, "seq_len": 1, "head": "gmm"}),
    ("act", {"chunk_size": 6, "frame_stack": 2, "execute_horizon": 4}),
    (
        "diffusion",
        {
            "denoiser": "transformer",
            "embed_dim": 32,
            "num_layers": 2,
            "seq_len": 6,
            "action_horizon": 3,
            "inference_steps": 3,
            "prediction": "sample",
        },
    ),
    (
        "flow",
        {
            "denoiser": "unet",
            "unet_channels": (8, 16),
            "unet_groups": 4,
            "time_sampling": "uniform",
            "frame_stack": 1,
            "action_horizon": 3,
        },
    ),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for n, o in VARIANTS]


def _config(name: str, overrides: dict[str, Any]) -> PolicyConfig:
    return policy_config_class(name).tiny(**overrides)


@pytest.fixture(scope="module")
def data(demo_file: Path) -> tuple[DemoDataset, type[WindowSampler], dict[str, Any]]:
    dataset = DemoDataset.load(demo_file, with_images=False)
    return dataset, WindowSampler, Normalizer.fit(dataset).state_dict()


def _build(name: str, overrides: dict[str, Any], data: Any) -> tuple[Policy, Any]:
    dataset, sampler_cls, norm_state = data
    torch.manual_seed(0)
    config = _config(name, overrides)
    policy = config.build(dataset.spec, norm_state)
    sampler = sampler_cls.for_policy(dataset, config, batch_size=32, rng=np.random.default_rng(0))
    return policy, sampler


def _obs_stream(dataset: Any, steps: int, start: int = 0) -> list[dict[str, np.ndarray]]:
    return [{k: v[start + t] for k, v in dataset.obs.items()} for t in range(steps)]


@pytest.fixture(scope="module", params=VARIANTS, ids=IDS)
def trained(request: pytest.FixtureRequest, data: Any) -> tuple[Policy, Any]:
    """A policy overfit for a few hundred steps, and the losses seen on the way."""
    name, overrides = request.param
    policy, sampler = _build(name, overrides, data)
    optimizer = torch.optim.Adam(policy.parameters(), lr=2e-3)
    batch = batch_to_tensors(sampler.sample())  # one fixed batch: an overfit problem
    losses = []
    policy.train()
    for _ in range(150):
        loss, info = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        assert info and all(np.isfinite(v) for v in info.values())
    return policy, losses


def test_loss_decreases_on_an_overfit_problem(trained: tuple[Policy, list[float]]) -> None:
    _, losses = trained
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < first - 0.3 * abs(first), (first, last)


def test_act_returns_a_clipped_float32_action(trained: Any, data: Any) -> None:
    policy, _ = trained
    policy.reset()
    for obs in _obs_stream(data[0], 5):
        action = policy.act(obs)
        assert action.shape == (7,) and action.dtype == np.float32
        assert np.all(np.abs(action) <= 1.0)
    # Huge inputs must still give actions inside the box.
    wild = {k: v * 1e4 for k, v in _obs_stream(data[0], 1)[0].items()}
    assert np.all(np.abs(policy.act(wild)) <= 1.0)


def test_checkpoint_round_trip_acts_identically(trained: Any, data: Any, tmp_path: Path) -> None:
    policy, _ = trained
    path = tmp_path / "policy.pt"
    save_checkpoint(path, policy, env_args={"env_name": "lift"}, extra={"note": "x"})
    loaded = load_policy(path)
    assert loaded.config == policy.config and loaded.env_args["env_name"] == "lift"
    stream = _obs_stream(data[0], 12)
    policy.reset()
    loaded.reset()
    a = np.stack([policy.act(o) for o in stream])
    b = np.stack([loaded.act(o) for o in stream])
    np.testing.assert_array_equal(a, b)
    # reset() starts afresh: the same stream gives the same actions again.
    loaded.reset()
    np.testing.assert_array_equal(np.stack([loaded.act(o) for o in stream]), a)


def test_act_batch_matches_act_row_wise(trained: Any, data: Any) -> None:
    policy, _ = trained
    streams = [_obs_stream(data[0], 9, start=s) for s in (0, 40, 95)]
    single = []
    for stream in streams:
        policy.reset()
        single.append(np.stack([policy.act(o) for o in stream]))  # (T, A)
    policy.reset()
    batched = [
        policy.act_batch({k: np.stack([s[t][k] for s in streams]) for k in streams[0][0]})
        for t in range(9)
    ]  # T x (B, A)
    np.testing.assert_allclose(np.stack(batched, 1), np.stack(single), atol=1e-5)


def test_reset_of_one_row_restarts_only_that_row(trained: Any, data: Any) -> None:
    policy, _ = trained
    streams = [_obs_stream(data[0], 6, start=s) for s in (0, 50)]
    fresh = []
    for stream in streams:
        policy.reset()
        fresh.append(np.stack([policy.act(o) for o in stream]))
    policy.reset()
    for t in range(3):
        policy.act_batch({k: np.stack([streams[0][t][k], streams[1][t][k]]) for k in streams[0][0]})
    policy.reset(rows=[1])
    # Row 1 now replays stream 1 from its start and must match a fresh single stream.
    out = [
        policy.act_batch(
            {k: np.stack([streams[0][t][k], streams[1][t - 3][k]]) for k in streams[0][0]}
        )
        for t in range(3, 6)
    ]
    np.testing.assert_allclose(np.stack(out)[:, 1], fresh[1][:3], atol=1e-5)


@pytest.mark.parametrize(("name", "overrides"), VARIANTS, ids=IDS)
def test_streams_taking_turns_in_batches_act_as_each_stream_alone(
    name: str, overrides: dict[str, Any], data: Any
) -> None:
    """Streams that take turns in `act_batch` calls, each carrying its own row of the run
    state between them (`stack_run_states`, `split_run_state`), act as each stream alone,
    resets at different steps included: how the policy server batches its sessions."""
    policy, _ = _build(name, overrides, data)
    assert policy.batching_refusal() is None
    steps, resets = 8, {1: 3, 2: 5}  # stream -> the step before which it resets
    streams = [_obs_stream(data[0], steps, start=s) for s in (0, 30, 60, 90)]
    alone = []
    for i, stream in enumerate(streams):
        policy.reset()
        actions = []
        for t, obs in enumerate(stream):
            if resets.get(i) == t:
                policy.reset()
            actions.append(policy.act(obs))
        alone.append(np.stack(actions))  # (T, A)
    rng = np.random.default_rng(0)
    done, states = [0] * len(streams), [{} for _ in streams]
    turns: list[list[np.ndarray]] = [[] for _ in streams]
    while min(done) < steps:
        group = [i for i in range(len(streams)) if done[i] < steps and rng.random() < 0.6]
        group = group or [done.index(min(done))]
        for i in group:
            if resets.get(i) == done[i]:
                states[i] = {}
        policy.load_run_state(stack_run_states([states[i] for i in group]))
        obs = {k: np.stack([streams[i][done[i]][k] for i in group]) for k in streams[0][0]}
        actions = policy.act_batch(obs)  # (len(group), A)
        rows = split_run_state(policy.run_state(), len(group))
        for i, state, action in zip(group, rows, actions, strict=True):
            states[i] = state
            turns[i].append(action)
            done[i] += 1
    # Float tolerance, not bit equality: a product over several rows runs other CPU kernels.
    for i in range(len(streams)):
        np.testing.assert_allclose(np.stack(turns[i]), alone[i], atol=1e-5)


@pytest.mark.parametrize("name", ["gmm", "rnn", "transformer"])
def test_a_sampling_gmm_head_refuses_batching(name: str, data: Any) -> None:
    """A mixture head that samples draws all rows from one generator: its rows are not
    separate streams, and it says so; the most likely mode's mean is per row."""
    head = {} if name == "gmm" else {"head": "gmm"}
    policy, _ = _build(name, {**head, "deterministic_act": False}, data)
    refusal = policy.batching_refusal()
    assert refusal is not None and "deterministic_act=false" in refusal
    assert _build(name, head, data)[0].batching_refusal() is None


def test_padded_steps_do_not_change_the_loss(trained: Any, data: Any) -> None:
    policy, _ = trained
    name = policy.config.name
    _, sampler = _build(name, dataclasses.asdict(policy.config), data)
    batch = batch_to_tensors(sampler.sample())
    batch["mask"] = torch.ones_like(batch["mask"])
    batch["mask"][:, -1] = 0.0
    with torch.no_grad():
        base, _ = policy(batch)
        batch["actions"][:, -1] = 0.9  # change only masked steps
        moved, _ = policy(batch)
    assert float(base) == pytest.approx(float(moved), rel=1e-6)


def test_observation_errors_name_the_key(trained: Any, data: Any) -> None:
    policy, _ = trained
    obs = _obs_stream(data[0], 1)[0]
    key = policy.obs_keys[0]
    with pytest.raises(ApprenticeError, match=key):
        policy.act({k: v for k, v in obs.items() if k != key})
    with pytest.raises(ApprenticeError, match=rf"{key}.*shape"):
        policy.act({**obs, key: np.zeros(obs[key].shape[0] + 1, np.float32)})
    bad = obs[key].copy()
    bad[0] = np.nan
    with pytest.raises(ApprenticeError, match=rf"{key}.*NaN"):
        policy.act({**obs, key: bad})
    with pytest.raises(ApprenticeError, match=key):
        policy.act_batch({k: v[None] for k, v in obs.items()} | {key: obs[key]})


def test_normalizer_stats_are_buffers_of_the_policy(trained: Any, data: Any) -> None:
    policy, _ = trained
    dataset = data[0]
    mean = np.concatenate([dataset.obs[k].mean(0) for k in policy.obs_keys])
    np.testing.assert_allclose(policy.obs_mean.numpy(), mean, rtol=1e-3, atol=1e-3)
    assert "obs_mean" in policy.state_dict() and "obs_std" in policy.state_dict()


@pytest.mark.parametrize(("name", "overrides"), VARIANTS, ids=IDS)
def test_config_round_trips_through_a_dict(name: str, overrides: dict[str, Any]) -> None:
    config = _config(name, overrides)
    d = config.to_dict()
    assert d["name"] == name
    assert policy_config_from_dict(d) == config


def test_config_errors() -> None:
    with pytest.raises(ApprenticeError, match="unknown policy 'nope'"):
        policy_config_from_dict({"name": "nope"})
    with pytest.raises(ApprenticeError, match="hidden_size"):
        policy_config_from_dict({"name": "mlp", "hidden_size": 3})
    with pytest.raises(ApprenticeError, match="seq_len"):
        policy_config_class("mlp")(seq_len=0)
    for name in ("mlp", "gmm"):
        with pytest.raises(ApprenticeError, match=f"{name} policy: unknown init 'xavier'"):
            policy_config_class(name)(init="xavier")
    assert {"mlp", "gmm", "rnn"} <= set(policy_names())


def test_orthogonal_init_starts_the_mlp_near_a_constant_action(data: Any) -> None:
    policy = policy_config_class("mlp")(hidden_dims=(64, 64), init="orthogonal").build(
        data[0].spec, data[2]
    )
    w = policy.trunk[2].weight.detach()  # 64 x 64, gain sqrt(2)
    torch.testing.assert_close(w @ w.T, 2 * torch.eye(64), atol=1e-4, rtol=0)
    assert float(policy.trunk[0].bias.abs().max()) == 0.0
    actions = [policy.act(o) for o in _obs_stream(data[0], 20)]
    assert float(np.abs(actions).max()) < 0.1  # output gain 0.01


def test_unknown_obs_key_is_reported(data: Any) -> None:
    with pytest.raises(ApprenticeError, match="'joint_pos'"):
        policy_config_class("mlp")(obs_keys=("joint_pos",)).build(data[0].spec, data[2])


def _another_value(value: Any) -> Any:
    """A valid value other than `value` for a run-time setting of a tiny config."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return 1 if value != 1 else 2
    assert isinstance(value, float), value
    return value + 0.5


@pytest.mark.parametrize("name", policy_names())
def test_run_time_settings_change_on_a_checkpoint_and_the_rest_are_fixed(
    name: str, data: Any, tmp_path: Path
) -> None:
    """Each run-time setting a policy kind declares is one of its fields, and a checkpoint
    loads with it changed (its weights strictly) and acts; any other field is refused."""
    policy, _ = _build(name, {}, data)
    path = tmp_path / "policy.pt"
    save_checkpoint(path, policy, env_args={"env_name": "lift"})
    config = policy.config
    run_time = type(config).run_time_fields()
    assert run_time <= {f.name for f in dataclasses.fields(config)}
    obs = _obs_stream(data[0], 1)[0]
    for key in sorted(run_time):
        value = _another_value(getattr(config, key))
        loaded = load_policy(path, {key: value})
        assert loaded.config == dataclasses.replace(config, **{key: value})
        assert np.all(np.abs(loaded.act(obs)) <= 1.0)
    offered = ", ".join(sorted(run_time)) or "none"
    with pytest.raises(ApprenticeError) as refused:
        load_policy(path, {"seq_len": 3})
    assert str(refused.value) == (
        f"policy setting seq_len is fixed by training; run-time settings of {name}: {offered}"
    )


@pytest.mark.parametrize("name", policy_names())
def test_every_config_field_has_a_default_and_a_docstring(name: str) -> None:
    cls = policy_config_class(name)
    docs = config_field_docs(cls)
    for f in dataclasses.fields(cls):
        has_default = f.default is not dataclasses.MISSING
        assert has_default or f.default_factory is not dataclasses.MISSING, f.name
        assert docs.get(f.name), f"{name}.{f.name} has no docstring"
    camera_docs = config_field_docs(CameraConfig)
    for f in dataclasses.fields(CameraConfig):
        assert f.default is not dataclasses.MISSING and camera_docs.get(f.name), f.name
