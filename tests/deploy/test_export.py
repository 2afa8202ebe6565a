"""Export every exportable policy kind to ONNX and TorchScript; the export acts as the policy."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from apprentice.cli.main import main
from apprentice.data.dataset import DemoDataset
from apprentice.data.normalize import Normalizer
from apprentice.deploy.export import (
    EXPORT_FORMATS,
    ExportConfig,
    ExportResult,
    InferenceStep,
    check_equivalence,
    export_policy,
    exportable_kinds,
)
from apprentice.deploy.runtime import ExportedPolicy, import_onnxruntime, load_exported
from apprentice.errors import ApprenticeError
from apprentice.policies import (
    Policy,
    PolicyConfig,
    load_policy,
    policy_config_class,
    policy_names,
    save_checkpoint,
)

# Every exportable kind at its tiny size, plus the stateful variants (frame history, LSTM with
# a restart horizon, the GMM head's deterministic action, the flow policy's action queue).
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("mlp", {"hidden_dims": (32, 32)}),
    ("gmm", {}),
    ("rnn", {"rnn_horizon": 4}),
    ("rnn", {"head": "gmm", "frame_stack": 2, "rnn_horizon": 0}),
    ("mlp", {"frame_stack": 3}),
    ("transformer", {"embed_dim": 32, "num_layers": 2, "frame_stack": 4}),
    ("transformer", {"head": "gmm"}),
    ("flow", {}),
    ("flow", {"denoiser": "unet", "frame_stack": 1, "action_horizon": 3}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for n, o in VARIANTS]


@pytest.fixture(scope="module")
def dataset(demo_file: Path) -> DemoDataset:
    return DemoDataset.load(demo_file, with_images=False)


def build(name: str, overrides: dict[str, Any], dataset: DemoDataset, seed: int = 0) -> Policy:
    torch.manual_seed(seed)
    config = policy_config_class(name).tiny(**overrides)
    policy = config.build(dataset.spec, Normalizer.fit(dataset).state_dict())
    policy.env_args = {"env_name": "lift", "env_type": 0, "env_kwargs": {}}
    return policy.eval()


def obs_stream(dataset: DemoDataset, steps: int, start: int = 0) -> list[dict[str, np.ndarray]]:
    return [{k: v[start + t] for k, v in dataset.obs.items()} for t in range(steps)]


@pytest.fixture(scope="module")
def export_of(
    dataset: DemoDataset, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[int, str], tuple[Policy, ExportResult]]:
    """(VARIANTS index, format) -> the policy and its export, made once per module."""
    made: dict[tuple[int, str], tuple[Policy, ExportResult]] = {}

    def get(index: int, fmt: str) -> tuple[Policy, ExportResult]:
        if (index, fmt) not in made:
            name, overrides = VARIANTS[index]
            policy = build(name, overrides, dataset)
            out = tmp_path_factory.mktemp("export") / f"{name}.{fmt}"
            made[index, fmt] = policy, export_policy(policy, out, fmt=fmt, check_samples=60)
        return made[index, fmt]

    return get


CASES = [(i, f) for i in range(len(VARIANTS)) for f in EXPORT_FORMATS]


@pytest.fixture(params=CASES, ids=[f"{IDS[i]}-{f}" for i, f in CASES])
def exported(
    request: pytest.FixtureRequest, export_of: Callable[[int, str], tuple[Policy, ExportResult]]
) -> tuple[Policy, ExportResult]:
    return export_of(*request.param)


def test_exportable_kinds_are_registered_and_tested() -> None:
    assert set(exportable_kinds()) <= set(policy_names())
    assert {name for name, _ in VARIANTS} == set(exportable_kinds())


def test_export_passes_its_own_check(exported: tuple[Policy, ExportResult]) -> None:
    _, result = exported
    assert result.path.is_file() and result.max_abs_diff <= 1e-4
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["check"]["max_abs_diff"] == result.max_abs_diff
    assert sidecar["check"]["samples"] == 60


def test_export_acts_as_the_policy_over_episodes(
    exported: tuple[Policy, ExportResult], dataset: DemoDataset
) -> None:
    """Two episodes of real observations: state carried over steps, reset between them."""
    policy, result = exported
    runtime = load_exported(result.path)
    for start in (0, 37):
        stream = obs_stream(dataset, 11, start)
        policy.reset()
        runtime.reset()
        want = np.stack([policy.act(o) for o in stream])
        got = np.stack([runtime.act(o) for o in stream])
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)
    if result.meta.state:
        # The state is carried: step 11 without a reset (no rnn restart at 11) differs.
        assert not np.allclose(runtime.act(stream[0]), want[0], atol=1e-6)


def test_export_describes_itself(exported: tuple[Policy, ExportResult]) -> None:
    policy, result = exported
    meta = load_exported(result.path).meta
    assert meta == result.meta
    assert list(meta.obs_keys) == policy.obs_keys and list(meta.obs_dims) == policy.obs_dims
    assert meta.action_dim == policy.action_dim and meta.env_args["env_name"] == "lift"
    assert meta.policy_config == policy.config.to_dict() and meta.apprentice_version
    names = [s.name for s in meta.state]
    fs, own = policy.config.frame_stack, {"rnn": ["h", "c"], "flow": ["chunk"]}
    kind = own.get(policy.config.name, [])
    assert names == ["history"] * (fs > 1) + kind + ["step"] * (fs > 1 or bool(kind))
    if result.meta.format == "onnx":
        import onnx

        model = onnx.load(str(result.path))
        onnx.checker.check_model(model)
        assert [i.name for i in model.graph.input] == meta.input_names
        assert [o.name for o in model.graph.output] == meta.output_names
        props = {p.key: p.value for p in model.metadata_props}
        assert json.loads(props["apprentice_export"])["obs_keys"] == policy.obs_keys


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_exported_rnn_takes_and_returns_its_state_explicitly(
    fmt: str, export_of: Callable[[int, str], tuple[Policy, ExportResult]], dataset: DemoDataset
) -> None:
    policy, result = export_of(2, fmt)
    runtime = load_exported(result.path)
    stream = obs_stream(dataset, 3)
    flat = runtime.flat_obs(stream[0])
    state = [s.zeros() for s in runtime.meta.state]
    outs = runtime.backend.run([flat, *state])
    names = runtime.meta.output_names
    h = outs[names.index("next_h")]
    assert h.shape == (policy.config.num_layers, 1, policy.config.hidden_dim)
    assert np.abs(h).max() > 0 and outs[names.index("next_step")].tolist() == [1]


def test_check_detects_a_different_policy(dataset: DemoDataset, tmp_path: Path) -> None:
    a = build("rnn", {}, dataset, seed=0)
    b = build("rnn", {}, dataset, seed=1)
    result = export_policy(b, tmp_path / "b.pt", fmt="torchscript", check_samples=10)
    diff = check_equivalence(
        a, load_exported(result.path), samples=20, rng=np.random.default_rng(0)
    )
    assert diff > 1e-3


def test_failed_check_writes_nothing(
    dataset: DemoDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import apprentice.deploy.export as export_module

    monkeypatch.setattr(export_module, "check_equivalence", lambda *a, **k: 0.5)
    policy = build("mlp", {}, dataset)
    out = tmp_path / "p.pt"
    with pytest.raises(ApprenticeError, match=r"differs .* by up to 0\.5 \(tolerance 0\.0001\)"):
        export_policy(policy, out, fmt="torchscript", check_samples=10)
    assert list(tmp_path.iterdir()) == []


def test_a_250_byte_export_name_is_written(dataset: DemoDataset, tmp_path: Path) -> None:
    out = tmp_path / ("e" * 247 + ".pt")  # 250 bytes; its description .pt.json is 255
    result = export_policy(build("mlp", {}, dataset), out, fmt="torchscript", check_samples=10)
    assert result.path == out and out.is_file() and result.sidecar.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, result.sidecar.name])


def test_cli_exports_a_checkpoint(
    dataset: DemoDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = build("rnn", {}, dataset)
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, policy, env_args=policy.env_args)
    assert main(["export", str(ckpt), "--format", "torchscript", "--check-samples", "20"]) == 0
    printed = capsys.readouterr().out
    assert "max abs diff vs PyTorch" in printed and "20 observations" in printed
    runtime = load_exported(tmp_path / "best.torchscript.pt")
    loaded = load_policy(ckpt)
    stream = obs_stream(dataset, 5)
    np.testing.assert_allclose(
        [runtime.act(o) for o in stream], [loaded.act(o) for o in stream], atol=1e-5
    )


def test_cli_rejects_corrupt_and_foreign_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02garbage" * 10)
    assert main(["export", str(corrupt), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "corrupt.pt" in capsys.readouterr().err
    foreign = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(3)}, foreign)
    assert main(["export", str(foreign)]) == 2
    assert "not an apprentice checkpoint" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ApprenticeError, match="unknown export format 'tflite'"):
        ExportConfig(checkpoint="x.pt", format="tflite")
    with pytest.raises(ApprenticeError, match="check_samples"):
        ExportConfig(checkpoint="x.pt", check_samples=1)
    with pytest.raises(ApprenticeError, match="tolerance"):
        ExportConfig(checkpoint="x.pt", tolerance=0.0)


def test_sampling_policies_cannot_be_exported(dataset: DemoDataset) -> None:
    for name, overrides in [
        ("gmm", {"deterministic_act": False}),
        ("rnn", {"head": "gmm", "deterministic_act": False}),
    ]:
        with pytest.raises(ApprenticeError, match=rf"{name} policy samples its actions"):
            InferenceStep(build(name, overrides, dataset))


def test_an_unexportable_kind_is_named(dataset: DemoDataset) -> None:
    class OddConfig(PolicyConfig):
        name = "odd"

    class OddPolicy(Policy):
        pass

    odd = OddPolicy(OddConfig(), dataset.spec, {})
    with pytest.raises(
        ApprenticeError,
        match=r"policy kind 'odd' \(OddPolicy\) cannot be exported; exportable kinds: "
        r"flow, gmm, mlp",
    ):
        InferenceStep(odd)


def test_a_kind_exports_through_its_own_hooks_alone(dataset: DemoDataset, tmp_path: Path) -> None:
    """A policy that export.py knows nothing of: its export_state and export_step suffice."""

    class DecayConfig(PolicyConfig):
        name = "decay"

    class DecayPolicy(Policy):
        """Acts tanh(W x + m), where m is a running mean of W x since reset (state "m")."""

        def __init__(self, spec: Any) -> None:
            super().__init__(DecayConfig(), spec, Normalizer.fit(dataset).state_dict())
            self.w = torch.nn.Linear(self.obs_dim, self.action_dim)
            self._m: torch.Tensor | None = None

        def _act_step(self, x: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
            m = torch.zeros(x.shape[0], self.action_dim) if self._m is None else self._m
            self._m = 0.5 * m + 0.5 * self.w(x)
            return (self.w(x) + m).tanh()

        def _reset_rows(self, rows: torch.Tensor | None) -> None:
            self._m = None

        def export_state(self) -> dict[str, tuple[int, ...]]:
            return {"m": (1, self.action_dim)}

        def export_step(
            self, x: torch.Tensor, step: torch.Tensor | None, state: dict[str, torch.Tensor]
        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            m = state["m"]
            return (self.w(x) + m).tanh(), {"m": 0.5 * m + 0.5 * self.w(x)}

    torch.manual_seed(0)
    policy = DecayPolicy(dataset.spec).eval()
    result = export_policy(policy, tmp_path / "decay.pt", fmt="torchscript", check_samples=30)
    assert [s.name for s in result.meta.state] == ["m", "step"]
    assert result.max_abs_diff <= 1e-5


def test_runtime_rejects_bad_observations_and_files(
    export_of: Callable[[int, str], tuple[Policy, ExportResult]],
    dataset: DemoDataset,
    tmp_path: Path,
) -> None:
    _, result = export_of(0, "torchscript")
    runtime: ExportedPolicy = load_exported(result.path)
    obs = obs_stream(dataset, 1)[0]
    key = runtime.obs_keys[0]
    with pytest.raises(ApprenticeError, match=rf"no key {key!r}"):
        runtime.act({k: v for k, v in obs.items() if k != key})
    with pytest.raises(ApprenticeError, match=rf"{key!r} has shape \(2,\)"):
        runtime.act({**obs, key: np.zeros(2)})
    with pytest.raises(ApprenticeError, match=rf"{key!r} contains NaN"):
        runtime.act({**obs, key: np.full_like(obs[key], np.nan)})
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ApprenticeError, match=r"junk\.onnx is not a loadable ONNX model"):
        load_exported(junk)
    plain = tmp_path / "plain.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript
        torch.jit.save(torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2)), str(plain))
    with pytest.raises(ApprenticeError, match="no apprentice metadata"):
        load_exported(plain)


def test_missing_onnxruntime_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ApprenticeError, match=r"pip install 'apprentice\[export\]'"):
        import_onnxruntime()


def test_importing_deploy_loads_neither_torch_nor_onnxruntime() -> None:
    code = (
        "import sys, apprentice.deploy, apprentice.deploy.shield, apprentice.deploy.runtime; "
        "assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('torch', 'onnx')))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_latency_benchmark_runs(tmp_path: Path) -> None:
    """A small version of benchmarks/bench_deploy_latency.py (the full run is outside CI)."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_deploy_latency.py"
    out = tmp_path / "latency.json"
    r = subprocess.run(
        [sys.executable, str(script), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| MLP 2x1024 (BC default) | onnxruntime, 1 thread |" in r.stdout
    result = json.loads(out.read_text())
    for policy in result["policies"].values():
        assert len(policy["methods"]) == 4
        assert all(
            m["actions"] == 40 and m["p99_ms"] >= m["p50_ms"] > 0
            for m in policy["methods"].values()
        )
