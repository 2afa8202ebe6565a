"""Apprenticeship learning (projection method) and maximum-causal-entropy IRL on tabular MDPs.

Both algorithms see the expert only through its feature expectations
mu_E = E[sum_t gamma^t phi(s_t)], estimated from the demonstrations (each demo is an episode
from the start distribution; its steps are discounted from t = 0), and both solve the MDP
exactly inside (`apprentice.irl.gridworld`), so their answers can be checked against exact
ones:

- **Apprenticeship learning** (Abbeel and Ng 2004, section 3.1, the projection method): from
  a first policy's mu_0, repeat: w = mu_E - mu_bar, pi_i = the optimal policy for r = phi . w
  (value iteration), mu_i = mu(pi_i), and mu_bar moves to the projection of mu_E onto the
  line through mu_bar and mu_i; stop when ||mu_E - mu_bar|| <= eps. mu_bar is a convex
  combination of the mu_i, so the mixed policy (draw pi_i with weight lambda_i at the start
  of each episode) has feature expectations exactly mu_bar, and for any true reward
  w* . phi its value is within ||w*|| eps of the expert's (their theorem 1).
- **MaxEnt IRL** (Ziebart et al. 2008; the causal, discounted form of Ziebart 2010):
  r_theta = phi . theta, the soft-optimal policy exp(Q - V) from soft value iteration, and
  gradient ascent (Adam) on the demos' log-likelihood, whose gradient is
  mu_E - mu(pi_theta). At convergence the policy's feature expectations match the expert's.

`run_tabular(cfg)` is what `apprentice irl --algo apprenticeship|maxent` calls. A gridworld
task (`gridworld/...`) runs the tabular algorithms; a continuous task with
`--algo apprenticeship` runs the linear-feature version
(`apprentice.irl.linear_apprenticeship`); MaxEnt IRL is discrete-only.

Demonstrations: `--demos` is a store file with `obs/state_index` (each step's state index,
as `record_gridworld_demos` writes it); without `--demos`, `num_demos` episodes of the
optimal policy are sampled (seeded by `--seed`) and written to the run folder's
`demos.hdf5`. `exact_expert=true` uses the expert's exact feature expectations instead
(the checks against exact solutions).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from apprentice.algos.run_folder import write_json, write_jsonl
from apprentice.data.episode import Episode
from apprentice.data.source import open_source
from apprentice.data.store import DemoWriter
from apprentice.errors import ApprenticeError
from apprentice.irl.common import IRLConfig, IRLResult
from apprentice.irl.gridworld import (
    TabularMDP,
    feature_expectations,
    is_gridworld,
    make_gridworld,
    optimal_policy,
    policy_value,
    sample_episode,
    soft_value_iteration,
    value_iteration,
)
from apprentice.overrides import parse_overrides
from apprentice.tracking import log_rows

log = logging.getLogger(__name__)

TABULAR_ALGOS = ("apprenticeship", "maxent")
STATE_KEY = "state_index"
"""The observation key tabular demos carry: each step's state index, shape (T, 1)."""
FEATURE_KEY = "features"
"""Also stored (phi(s_t), (T, K)) for readers that want features without the MDP."""


@dataclass(frozen=True)
class TabularConfig:
    """The tabular algorithms' own settings (`--algo-args key=value`)."""

    eps: float = 0.05
    """Apprenticeship: stop when ||mu_E - mu_bar|| <= eps (feature-expectation units)."""
    max_iters: int = 50
    """Apprenticeship: most projection iterations. MaxEnt: x20 gradient steps."""
    lr: float = 0.1
    """MaxEnt: Adam step size on theta."""
    tol: float = 5e-3
    """MaxEnt: stop when ||mu_E - mu(theta)|| <= tol ||mu_E||."""
    num_demos: int = 200
    """Episodes of the optimal policy sampled when --demos is not given."""
    exact_expert: bool = False
    """Use the expert's exact feature expectations instead of demos (exact checks)."""


def parse_algo_config(cls: type[Any], cfg: IRLConfig) -> Any:
    """`cfg.algo_args` onto the dataclass `cls`; unknown keys and bad values are errors."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in parse_overrides(cfg.algo_args, "--algo-args").items():
        if key not in fields:
            raise ApprenticeError(
                f"--algo-args {key!r} is not a setting of {cfg.algo}; known: {', '.join(fields)}"
            )
        default = getattr(cls(), key)
        try:
            if isinstance(default, bool):
                if str(raw).lower() not in ("true", "false", "1", "0"):
                    raise ValueError(raw)
                values[key] = str(raw).lower() in ("true", "1")
            elif isinstance(default, int | float | str):
                values[key] = type(default)(raw)
            else:
                values[key] = raw
        except (TypeError, ValueError):
            raise ApprenticeError(
                f"--algo-args {key}={raw!r}: expected a {type(default).__name__}"
            ) from None
    return cls(**values)


# ---- demonstrations ---------------------------------------------------------------------------


def gridworld_env_args(mdp: TabularMDP) -> dict[str, Any]:
    return {"env_name": mdp.name, "env_type": "tabular", "env_kwargs": {}}


def gridworld_episode(
    mdp: TabularMDP, states: np.ndarray, actions: np.ndarray, seed: int
) -> Episode:
    """One sampled episode in the store's layout: obs/state_index (T, 1), obs/features (T, K),
    actions one-hot (T, A), states (T, 1) the index again (enough to replay)."""
    T = len(actions)
    s, s_next = states[:-1], states[1:]
    one_hot = np.eye(mdp.num_actions, dtype=np.float32)[actions]  # (T, A)
    reward = mdp.reward

    def obs(idx: np.ndarray) -> dict[str, np.ndarray]:
        return {
            STATE_KEY: idx[:, None].astype(np.float32),
            FEATURE_KEY: mdp.phi[idx].astype(np.float32),
        }

    return Episode(
        obs=obs(s),
        next_obs=obs(s_next),
        actions=one_hot,
        rewards=reward[s].astype(np.float32),
        dones=(np.arange(T) == T - 1).astype(np.float32),
        states=s[:, None].astype(np.float64),
        seed=seed,
        success=True,
        source="optimal",
    )


def record_gridworld_demos(name: str, out: str | Path, n: int, seed: int = 0) -> Path:
    """Sample `n` episodes of gridworld `name`'s optimal policy into the store file `out`
    (created afresh). Episode i is drawn from `default_rng([seed, i])`."""
    mdp = make_gridworld(name)
    if n < 1:
        raise ApprenticeError(f"gridworld demos: n must be >= 1, got {n}")
    policy = optimal_policy(mdp)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with DemoWriter(out, env_args=gridworld_env_args(mdp), overwrite=True, durable=False) as w:
        for i in range(n):
            states, actions = sample_episode(mdp, policy, np.random.default_rng([seed, i]))
            w.append(gridworld_episode(mdp, states, actions, seed=i), masks=("train",))
    return out


def demo_feature_expectations(
    path: str | Path, mdp: TabularMDP, algo: str
) -> tuple[np.ndarray, int]:
    """mu_E (K,) = the mean over demos of sum_t gamma^t phi(s_t), and the number of demos."""
    path = Path(path)
    if not path.is_file():
        raise ApprenticeError(f"demos {path} do not exist")
    with open_source(path) as f:
        if STATE_KEY not in f.obs_keys:
            raise ApprenticeError(
                f"demos {path} have no obs/{STATE_KEY} (they have: {', '.join(f.obs_keys)}); "
                f"{algo} on {mdp.name} needs each step's state index to compute feature "
                "expectations: record demos with apprentice.irl.tabular.record_gridworld_demos "
                "or leave --demos empty to sample them"
            )
        env_name = f.env_args.get("env_name")
        if env_name != mdp.name:
            raise ApprenticeError(f"demos {path} are of task {env_name!r}, not {mdp.name!r}")
        total = np.zeros(mdp.num_features)
        names = f.demo_names
        for name in names:
            raw = f.read_obs(name, STATE_KEY).reshape(-1)
            idx = raw.astype(np.int64)
            if np.any(idx != raw) or idx.min() < 0 or idx.max() >= mdp.num_states:
                raise ApprenticeError(
                    f"demos {path}: data/{name}/obs/{STATE_KEY} holds values that are not "
                    f"state indices of {mdp.name} (0..{mdp.num_states - 1})"
                )
            discount = mdp.gamma ** np.arange(len(idx))  # (T,)
            total += discount @ mdp.phi[idx]
    if not names:
        raise ApprenticeError(f"demos {path} hold no demos")
    return total / len(names), len(names)


# ---- the algorithms ---------------------------------------------------------------------------


@dataclass
class ProjectionResult:
    """Apprenticeship learning's output: the policies found and their mixture weights."""

    policies: list[np.ndarray]
    """(S, A) each; policies[0] is the uniform policy that starts the method."""
    mus: list[np.ndarray]
    """(K,) feature expectations of each policy."""
    weights: np.ndarray
    """(n,) lambda_i: the mixture with feature expectations mu_bar."""
    mu_bar: np.ndarray
    w: np.ndarray
    """(K,) the last reward weights, mu_E - mu_bar (normalized when reported)."""
    distances: list[float]
    """||mu_E - mu_bar|| after each iteration (the margin t_i of the paper)."""
    weight_history: list[np.ndarray]
    """The mixture weights after each iteration (entry i has i + 1 weights)."""


def apprenticeship_projection(
    mdp: TabularMDP, mu_expert: np.ndarray, eps: float, max_iters: int
) -> ProjectionResult:
    """Abbeel and Ng's projection method with value iteration as the exact RL step."""
    uniform = np.full((mdp.num_states, mdp.num_actions), 1.0 / mdp.num_actions)
    policies = [uniform]
    mus = [feature_expectations(mdp, uniform)]
    weights = np.array([1.0])
    mu_bar = mus[0].copy()
    distances = [float(np.linalg.norm(mu_expert - mu_bar))]
    weight_history = [weights]
    w = mu_expert - mu_bar
    for _ in range(max_iters):
        if distances[-1] <= eps:
            break
        _, policy = value_iteration(mdp.P, mdp.phi @ w, mdp.gamma)
        mu = feature_expectations(mdp, policy)
        step = mu - mu_bar
        denom = float(step @ step)
        # alpha in [0, 1]: the projection of mu_E onto the segment mu_bar -> mu (eq. in 3.1).
        alpha = 0.0 if denom == 0.0 else float(np.clip(step @ (mu_expert - mu_bar) / denom, 0, 1))
        policies.append(policy)
        mus.append(mu)
        weights = np.append(weights * (1.0 - alpha), alpha)
        mu_bar = mu_bar + alpha * step
        w = mu_expert - mu_bar
        distances.append(float(np.linalg.norm(w)))
        weight_history.append(weights)
        if alpha == 0.0:
            break  # the best response cannot move mu_bar: mu_E is as close as the hull allows
    return ProjectionResult(policies, mus, weights, mu_bar, w, distances, weight_history)


def mixture_value(mdp: TabularMDP, result: ProjectionResult, r: np.ndarray | None = None) -> float:
    """Value of the mixed policy: sum_i lambda_i V(pi_i) (a policy is drawn per episode)."""
    return float(
        sum(
            lam * policy_value(mdp, p, r)
            for lam, p in zip(result.weights, result.policies, strict=True)
        )
    )


@dataclass
class MaxEntResult:
    theta: np.ndarray
    """(K,) recovered reward weights; the reward is phi . theta."""
    policy: np.ndarray
    """(S, A) the soft-optimal policy of the recovered reward."""
    distances: list[float]
    """||mu_E - mu(theta)|| per gradient step."""
    snapshots: list[tuple[int, np.ndarray]]
    """(step, policy) every `every` steps and at the last one, for the learning curve."""


def maxent_irl(
    mdp: TabularMDP,
    mu_expert: np.ndarray,
    lr: float,
    tol: float,
    max_steps: int,
    every: int = 25,
) -> MaxEntResult:
    """Maximum-causal-entropy IRL: Adam ascent on theta with gradient mu_E - mu(theta)."""
    theta = np.zeros(mdp.num_features)
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    b1, b2 = 0.9, 0.999
    scale = float(np.linalg.norm(mu_expert)) or 1.0
    distances: list[float] = []
    snapshots: list[tuple[int, np.ndarray]] = []
    policy = np.full((mdp.num_states, mdp.num_actions), 1.0 / mdp.num_actions)
    V = np.zeros(mdp.num_states)
    for step in range(1, max_steps + 1):
        V, policy = soft_value_iteration(mdp.P, mdp.phi @ theta, mdp.gamma, tol=1e-8, V0=V)
        grad = mu_expert - feature_expectations(mdp, policy)
        distances.append(float(np.linalg.norm(grad)))
        if distances[-1] <= tol * scale:
            break
        if (step - 1) % every == 0:
            snapshots.append((step - 1, policy))
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad * grad
        theta = theta + lr * (m / (1 - b1**step)) / (np.sqrt(v / (1 - b2**step)) + 1e-8)
    snapshots.append((len(distances) - 1, policy))
    return MaxEntResult(theta, policy, distances, snapshots)


# ---- the run ----------------------------------------------------------------------------------


def run_tabular(cfg: IRLConfig) -> IRLResult:
    """`apprentice irl --algo apprenticeship|maxent` (see the module docstring)."""
    if cfg.algo not in TABULAR_ALGOS:
        raise ApprenticeError(f"run_tabular runs {' and '.join(TABULAR_ALGOS)}, not {cfg.algo}")
    if not is_gridworld(cfg.task):
        if cfg.algo == "maxent":
            raise ApprenticeError(
                f"maxent is a tabular (discrete-state) algorithm and task {cfg.task!r} is not "
                "a gridworld; on continuous tasks use apprenticeship (its linear-feature "
                "version), gail, airl, gaifo, bco or bc-rl"
            )
        from apprentice.irl.linear_apprenticeship import run_linear_apprenticeship

        return run_linear_apprenticeship(cfg)
    mdp = make_gridworld(cfg.task)
    algo_cfg: TabularConfig = parse_algo_config(TabularConfig, cfg)
    from apprentice.algos.run_folder import prepare_run_dir

    record = {**dataclasses.asdict(cfg), "algo_config": dataclasses.asdict(algo_cfg)}
    if cfg.overwrite:
        clear_run_files(Path(cfg.out), RUN_OUTPUTS)
    run_dir, _ = prepare_run_dir(
        Path(cfg.out), record, resume=cfg.resume, overwrite=cfg.overwrite, free_fields=RESUME_FREE
    )
    # A rerun recomputes: the exact solvers take seconds and the same seed gives the same run.
    expert = optimal_policy(mdp)
    if algo_cfg.exact_expert:
        mu_expert, num_demos = feature_expectations(mdp, expert), 0
    else:
        demos = Path(cfg.demos) if cfg.demos else None
        if demos is None:
            demos = record_gridworld_demos(
                cfg.task, run_dir / "demos.hdf5", algo_cfg.num_demos, cfg.seed
            )
        mu_expert, num_demos = demo_feature_expectations(demos, mdp, cfg.algo)
    uniform = np.full((mdp.num_states, mdp.num_actions), 1.0 / mdp.num_actions)
    v_expert, v_random = policy_value(mdp, expert), policy_value(mdp, uniform)

    def row(i: int, distance: float, value: float) -> dict[str, Any]:
        return {
            "iteration": i,
            "env_steps": 0,  # the model is known: the exact solvers take no env steps
            "distance": distance,
            "mean_return": value,
            "normalized_return": (value - v_random) / (v_expert - v_random),
        }

    final: dict[str, Any] = {
        "algo": cfg.algo,
        "task": cfg.task,
        "num_demos": num_demos,
        "expert_value": v_expert,
        "random_value": v_random,
        "w_true_norm": float(np.linalg.norm(mdp.w_true)),
    }
    history: list[dict[str, Any]] = []
    if cfg.algo == "apprenticeship":
        proj = apprenticeship_projection(mdp, mu_expert, algo_cfg.eps, algo_cfg.max_iters)
        values = [policy_value(mdp, p) for p in proj.policies]
        for i, d in enumerate(proj.distances):
            mixed = float(proj.weight_history[i] @ values[: i + 1])
            history.append(
                {
                    **row(i, d, values[i]),  # pi_i, the last best response
                    "mixture_return": mixed,  # what the method outputs so far
                    "mixture_normalized_return": (mixed - v_random) / (v_expert - v_random),
                }
            )
        value = mixture_value(mdp, proj)
        norm = float(np.linalg.norm(proj.w)) or 1.0
        reward = mdp.phi @ (proj.w / norm)
        final.update(
            mixture_value=value,
            mixture_normalized_return=(value - v_random) / (v_expert - v_random),
            distance=proj.distances[-1],
            converged=proj.distances[-1] <= algo_cfg.eps,
            iterations=len(proj.distances) - 1,
            mixture_weights=proj.weights.tolist(),
        )
        np.save(run_dir / "policies.npy", np.stack(proj.policies))  # (n, S, A)
        weights = proj.w / norm
        curve = proj.distances
    else:
        res = maxent_irl(mdp, mu_expert, algo_cfg.lr, algo_cfg.tol, algo_cfg.max_iters * 20)
        for i, policy in res.snapshots:  # every 25 gradient steps: the table stays short
            history.append(row(i, res.distances[i], policy_value(mdp, policy)))
        value = history[-1]["mean_return"]
        reward = mdp.phi @ res.theta
        corr = float(np.corrcoef(reward, mdp.reward)[0, 1]) if np.std(reward) > 0 else 0.0
        final.update(
            policy_value=value,
            normalized_return=(value - v_random) / (v_expert - v_random),
            distance=res.distances[-1],
            relative_distance=res.distances[-1] / (float(np.linalg.norm(mu_expert)) or 1.0),
            converged=res.distances[-1] <= algo_cfg.tol * float(np.linalg.norm(mu_expert)),
            iterations=len(res.distances),
            reward_correlation=corr,
        )
        np.save(run_dir / "policy.npy", res.policy)
        weights = res.theta
        curve = res.distances
    final.update({k: v for k, v in history[-1].items() if k not in final})
    np.save(run_dir / "reward.npy", reward)
    write_json(
        run_dir / "reward.json",
        {
            "task": cfg.task,
            "weights": weights.tolist(),
            "reward": reward.tolist(),
            "true_reward": mdp.reward.tolist(),
            "shape": list(mdp.shape),
        },
    )
    write_jsonl(run_dir / "history.jsonl", history)
    write_json(run_dir / "summary.json", final)
    log_rows(cfg.wandb, run_dir, record, history, step_key="iteration", job_type=f"irl-{cfg.algo}")
    _plot_report(run_dir / "report.png", mdp, cfg.algo, curve, reward)
    log.info("%s on %s: %s", cfg.algo, cfg.task, json.dumps(final))
    return IRLResult(run_dir=run_dir, history=history, final=final)


RUN_OUTPUTS = (
    "history.jsonl",
    "summary.json",
    "reward.npy",
    "reward.json",
    "policy.npy",
    "policies.npy",
    "report.png",
    "demos.hdf5",
)
"""What a tabular run writes besides config.json (`overwrite` deletes them)."""
RESUME_FREE = frozenset({"wandb"})
"""Config fields a rerun of the run may change: they change no result."""


def clear_run_files(run_dir: Path, names: tuple[str, ...]) -> None:
    """Delete a previous run's outputs `names` (prepare_run_dir deletes only the trainer's)."""
    for name in names:
        (run_dir / name).unlink(missing_ok=True)


def _plot_report(
    path: Path, mdp: TabularMDP, algo: str, distances: list[float], reward: np.ndarray
) -> None:
    """||mu_E - mu|| per iteration; the true and recovered rewards as heatmaps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].semilogy(np.maximum(distances, 1e-12))
    axes[0].set_xlabel("iteration" if algo == "apprenticeship" else "gradient step")
    axes[0].set_ylabel("||mu_E - mu||")
    axes[0].set_title(f"{algo} on {mdp.name}")
    w, h = mdp.shape
    corr = float(np.corrcoef(reward, mdp.reward)[0, 1]) if np.std(reward) > 0 else 0.0
    for ax, r, title in (
        (axes[1], mdp.reward, "true reward"),
        (axes[2], reward, f"recovered reward (Pearson r = {corr:.2f})"),
    ):
        im = ax.imshow(r.reshape(h, w), origin="lower", cmap="viridis")
        ax.set_title(title)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
