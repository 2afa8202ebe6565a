"""`apprentice eval --sweep`: success along the perturbation axes, one evaluation per level.

The policies are untrained tiny MLPs saved for a task's observations: what is checked is the
sweep's bookkeeping (which evaluations run, what is written, what is refused), not skill.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import apprentice.evaluate.robustness as robustness
import apprentice.evaluate.run as run
from apprentice.cli.main import build_parser, main
from apprentice.data.normalize import Normalizer
from apprentice.envs import make_task
from apprentice.envs.base import task_spec
from apprentice.errors import ApprenticeError
from apprentice.evaluate.metrics import success_rate
from apprentice.evaluate.report import write_sweep_report
from apprentice.evaluate.robustness import parse_sweep, sweep_policy
from apprentice.evaluate.run import EvalConfig, results_name
from apprentice.policies.base import policy_config_from_dict
from apprentice.policies.checkpoint import save_checkpoint


def _checkpoint(root: Path, task: str) -> Path:
    """An untrained MLP for `task`'s observations, saved as root/<task>/best.pt."""
    env = make_task(task)
    spec = task_spec(env)
    policy = policy_config_from_dict({"name": "mlp", "hidden_dims": [8]}).build(
        spec, Normalizer.identity(spec).state_dict()
    )
    path = root / task / "best.pt"
    path.parent.mkdir()
    save_checkpoint(path, policy, env_args=env.env_args)
    env.close()
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("robustness")
    return {task: _checkpoint(root, task) for task in ("lift", "pick_place", "pusht")}


def test_sweep_items_give_each_axis_its_levels_ascending() -> None:
    assert parse_sweep(["light=0,0.25,0.5,0.75,1"]) == {"light": (0.0, 0.25, 0.5, 0.75, 1.0)}
    assert parse_sweep(["camera=1, 0", "friction=-0"]) == {"camera": (0.0, 1.0), "friction": (0.0,)}
    assert parse_sweep([]) == {}


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["light"], "--sweep 'light' is not of the form AXIS=LEVEL,LEVEL,..."),
        (["=0.5"], "--sweep '=0.5' is not of the form AXIS=LEVEL,LEVEL,..."),
        (["light="], "--sweep 'light=' is not of the form AXIS=LEVEL,LEVEL,..."),
        (["light=0,a"], "--sweep 'light=0,a': 'a' is not a level (a number in [0, 1])"),
        (["light=0,,1"], "--sweep 'light=0,,1': '' is not a level"),
        (["light=0,1.5"], "light=1.5: a level must lie in [0, 1]"),
        (["light=nan"], "a level must lie in [0, 1]"),
        (["light=0.5,0.5"], "--sweep 'light=0.5,0.5': level 0.5 is given twice"),
        (["light=0", "light=1"], "--sweep: axis 'light' is given twice"),
    ],
)
def test_malformed_sweep_items_are_refused(items: list[str], message: str) -> None:
    with pytest.raises(ApprenticeError) as e:
        parse_sweep(items)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_sweep_flags_gather_given_together_or_repeated() -> None:
    ns = build_parser().parse_args(
        ["eval", "run", "--sweep", "light=0,1", "friction=0,1", "--sweep", "camera=0,1"]
    )
    assert ns.sweep == ["light=0,1", "friction=0,1", "camera=0,1"]
    assert build_parser().parse_args(["eval", "run"]).sweep == []


def test_perturbed_results_get_file_names_of_their_levels() -> None:
    given = {"perturb": {"light": 0.5, "camera": [0, 1]}}
    assert results_name("lift", given, {}) == "eval_lift_perturb=camera=0-1,light=0.5.json"
    assert results_name("lift", {"perturb": {}}, {}) == "eval_lift_perturb=none.json"
    assert results_name("lift", {"light": "0:1"}, {}, "sweep") == "sweep_lift_light=0-1.json"


def test_a_sweep_evaluates_each_level_once_and_writes_its_json_and_plot(
    checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluated: list[tuple[str, ...]] = []
    real = robustness.evaluate

    def recording(cfg: EvalConfig, **kwargs: Any) -> dict[str, Any]:
        evaluated.append(cfg.task_args)
        return real(cfg, **kwargs)

    monkeypatch.setattr(robustness, "evaluate", recording)
    cfg = EvalConfig(str(checkpoints["lift"]), episodes=2, workers=1)
    out = tmp_path / "sweep.json"
    s = sweep_policy(cfg, {"light": (0.0, 1.0), "action_noise": (0.0, 1.0)}, out=out)

    # Level 0 is one nominal evaluation, every other axis nominal in each level's.
    assert evaluated == [
        ("perturb={}",),
        ('perturb={"light": 1.0}',),
        ('perturb={"action_noise": 1.0}',),
    ]
    saved = json.loads(out.read_text())
    assert saved == {k: v for k, v in s.items() if k not in ("results_path", "report_path")}
    assert saved["checkpoint"] == str(checkpoints["lift"]) and saved["task"] == "lift"
    assert (saved["episodes"], saved["seed_offset"]) == (2, 0)
    assert list(saved["axes"]) == ["light", "action_noise"]
    for axis, rows in saved["axes"].items():
        assert [r["level"] for r in rows] == [0.0, 1.0]
        for r in rows:
            sr = success_rate(r["successes"], r["episodes"])
            assert r["episodes"] == 2
            assert r["success_rate"] == sr.rate
            assert (r["ci_low"], r["ci_high"]) == (sr.ci_low, sr.ci_high)
        level_one = json.loads(Path(rows[1]["results"]).read_text())
        assert Path(rows[1]["results"]) == tmp_path / f"sweep_{axis}=1.json"
        assert level_one["perturb"] == {axis: 1.0}
    assert saved["axes"]["light"][0] == saved["axes"]["action_noise"][0]
    assert json.loads((tmp_path / "sweep_nominal.json").read_text())["perturb"] == {}

    report = Path(s["report_path"])
    assert report == tmp_path / "report.html"
    text = report.read_text()
    assert "<section data-sweep='sweep.json'>" in text and "data:image/png;base64," in text
    assert "<td>light</td><td>1</td>" in text

    # Run again, it reads the finished levels back and rolls nothing out.
    evaluated.clear()
    again = sweep_policy(cfg, {"light": (0.0, 1.0), "action_noise": (0.0, 1.0)}, out=out)
    assert evaluated == [] and again["axes"] == s["axes"]
    assert report.read_text().count("<section data-sweep=") == 1


def test_the_sweep_section_joins_a_report_and_replaces_its_earlier_self(tmp_path: Path) -> None:
    (tmp_path / "report.html").write_text("<html><body><h1>run</h1>\n</body></html>")
    row = {"level": 0.0, "successes": 1, "episodes": 2, "success_rate": 0.5}
    row.update(ci_low=0.09, ci_high=0.91)
    sweep = {"task": "lift", "episodes": 2, "seed_offset": 0, "axes": {"light": [row]}}
    write_sweep_report(tmp_path / "sweep_lift.json", sweep)
    row["successes"] = 2
    text = write_sweep_report(tmp_path / "sweep_lift.json", sweep).read_text()
    assert text.startswith("<html><body><h1>run</h1>") and text.endswith("</body></html>")
    assert text.count("<section data-sweep='sweep_lift.json'>") == 1 and "(2/2)" in text


@pytest.mark.parametrize(
    ("task", "sweep", "message"),
    [
        ("lift", "nope=0,1", "task 'lift' has no perturbation axis 'nope'; its axes are light,"),
        ("lift", "light=0,1.5", "light=1.5: a level must lie in [0, 1]"),
        (
            "pick_place",
            "object_scale=0,1",
            "task 'pick_place' does not support the perturbation axis 'object_scale'",
        ),
        ("pusht", "light=0,1", "task 'pusht' has no perturbation axes to sweep"),
    ],
)
def test_a_sweep_the_task_cannot_run_is_one_line_before_any_rollout(
    checkpoints: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    task: str,
    sweep: str,
    message: str,
) -> None:
    rolled: list[object] = []
    monkeypatch.setattr(run, "_rollout_chunk", lambda *args: rolled.append(args))
    out = tmp_path / "sweep.json"
    argv = ["eval", str(checkpoints[task]), "--episodes", "1", "--workers", "1"]
    assert main([*argv, "--sweep", sweep, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert rolled == [] and not out.exists()


def test_the_eval_command_sweeps_and_prints_each_level(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.json"
    argv = ["eval", str(checkpoints["lift"]), "--episodes", "1", "--workers", "1"]
    assert main([*argv, "--sweep", "light=0,1", "--sweep", "latency=1", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert {a: [r["level"] for r in rows] for a, rows in saved["axes"].items()} == {
        "light": [0.0, 1.0],
        "latency": [1.0],
    }
    printed = capsys.readouterr().out
    assert "light 1" in printed and "latency 1" in printed and "95% Wilson" in printed


def test_task_args_set_an_axis_of_a_plain_evaluation(
    checkpoints: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = checkpoints["lift"]
    argv = ["eval", str(ckpt), "--episodes", "1", "--workers", "1", "--task-args", "light=0.5"]
    assert main(argv) == 0
    saved = json.loads((ckpt.parent / "eval_lift_light=0.5.json").read_text())
    assert saved["task_args"] == {"light": 0.5} and saved["perturb"] == {"light": 0.5}
    capsys.readouterr()
    assert main([*argv[:-1], "light=2"]) == 2
    assert "light=2: a level must lie in [0, 1]" in capsys.readouterr().err
