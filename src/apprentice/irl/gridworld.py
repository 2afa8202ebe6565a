"""Tabular MDPs shipped with the project, and their exact solvers.

The tabular algorithms (apprenticeship learning, MaxEnt IRL) are checked against exact
answers, so their MDPs are small enough to hold whole: transitions P (S, A, S), a feature
matrix phi (S, K) and a true reward that is linear in it, r(s) = phi(s) . w_true. The
solvers below are the exact quantities the algorithms need:

- `value_iteration`: the optimal policy for a state reward (the RL inner loop of
  apprenticeship learning);
- `soft_value_iteration`: the MaxEnt backward pass, V(s) = log sum_a exp Q(s, a), whose
  policy exp(Q - V) is the maximum-causal-entropy policy (Ziebart 2010, eq. 6.8);
- `occupancy`: the forward pass, the discounted state visitation d = sum_t gamma^t p_t, by one
  linear solve (I - gamma P_pi^T) d = p0. It sums to 1 / (1 - gamma), and phi^T d is the
  feature expectation mu(pi) = E[sum_t gamma^t phi(s_t)] of Abbeel and Ng (2004).

Worlds (`make_gridworld(name)`, names in `GRIDWORLDS`):

- `gridworld/5x5`: 5 x 5 cells, one-hot features (K = 25), reward +1 on the far corner and
  -1 on two cells next to the straight path to it; 10% slip.
- `gridworld/16x16`: Abbeel and Ng's setting shrunk: 16 x 16 cells grouped into 4 x 4
  macrocells whose indicators are the features (K = 16), a sparse positive true reward on a
  few macrocells (seeded); 30% slip.
- `gridworld/objectworld-10`: Levine et al. (2011)'s objectworld, 10 x 10 with objects of two
  colours at seeded cells; features are "an object of colour c lies within distance d"
  (c in 2 colours, d = 1..5, K = 10). Levine's true reward is an AND of two such tests,
  which no linear reward represents; here it is linear in them so that exact checks exist:
  +1 within 2 of colour 0, -2 within 1 of colour 1. 30% slip.

Actions: 0 stay, 1 right, 2 up, 3 left, 4 down. A slip replaces the chosen move by a
uniformly random one of the five; a move off the grid stays put.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from apprentice.errors import ApprenticeError

PREFIX = "gridworld/"
MOVES = ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1))
"""(dx, dy) of actions 0 stay, 1 right, 2 up, 3 left, 4 down."""


@dataclass(frozen=True)
class TabularMDP:
    """A finite MDP with a state reward linear in features: r(s) = phi(s) . w_true."""

    name: str
    P: np.ndarray
    """(S, A, S) transition probabilities P[s, a, s']."""
    phi: np.ndarray
    """(S, K) features of each state."""
    w_true: np.ndarray
    """(K,) weights of the true reward."""
    p0: np.ndarray
    """(S,) initial state distribution."""
    gamma: float
    """Discount of the infinite-horizon objective every algorithm here optimizes."""
    horizon: int
    """Steps of a sampled demonstration (gamma^horizon is negligible)."""
    shape: tuple[int, int]
    """(width, height): state s is cell (s % width, s // width), for heatmaps."""

    @property
    def num_states(self) -> int:
        return int(self.P.shape[0])

    @property
    def num_actions(self) -> int:
        return int(self.P.shape[1])

    @property
    def num_features(self) -> int:
        return int(self.phi.shape[1])

    @property
    def reward(self) -> np.ndarray:
        """(S,) the true reward."""
        return self.phi @ self.w_true


# ---- exact solvers ---------------------------------------------------------------------------


def bellman_q(P: np.ndarray, r: np.ndarray, V: np.ndarray, gamma: float) -> np.ndarray:
    """Q(s, a) = r(s) + gamma sum_s' P(s' | s, a) V(s'); (S, A)."""
    return r[:, None] + gamma * (P @ V)  # (S, A, S) @ (S,) -> (S, A)


def value_iteration(
    P: np.ndarray, r: np.ndarray, gamma: float, tol: float = 1e-10, max_iters: int = 100_000
) -> tuple[np.ndarray, np.ndarray]:
    """Optimal values V (S,) and a deterministic optimal policy as (S, A) one-hot rows.

    Iterates until the sup-norm change is below tol (1 - gamma) / gamma, which bounds the
    distance to V* by tol.
    """
    V = np.zeros(P.shape[0])
    stop = tol * (1.0 - gamma) / max(gamma, 1e-12)
    for _ in range(max_iters):
        V_new = bellman_q(P, r, V, gamma).max(axis=1)
        done = np.max(np.abs(V_new - V)) < stop
        V = V_new
        if done:
            break
    Q = bellman_q(P, r, V, gamma)
    policy = np.zeros_like(Q)
    policy[np.arange(Q.shape[0]), Q.argmax(axis=1)] = 1.0
    return V, policy


def soft_value_iteration(
    P: np.ndarray,
    r: np.ndarray,
    gamma: float,
    tol: float = 1e-10,
    max_iters: int = 100_000,
    V0: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft values V (S,) and the maximum-causal-entropy policy exp(Q - V) (S, A).

    The MaxEnt IRL backward pass: V(s) = log sum_a exp Q(s, a) (Ziebart 2010), a gamma-
    contraction like the hard backup, so the same stopping rule bounds the error. `V0` warm-
    starts it (IRL's consecutive rewards differ little, so their values do too).
    """
    V = np.zeros(P.shape[0]) if V0 is None else np.array(V0, dtype=float)
    stop = tol * (1.0 - gamma) / max(gamma, 1e-12)
    for _ in range(max_iters):
        Q = bellman_q(P, r, V, gamma)
        top = Q.max(axis=1)
        V_new = top + np.log(np.exp(Q - top[:, None]).sum(axis=1))  # stable logsumexp
        done = np.max(np.abs(V_new - V)) < stop
        V = V_new
        if done:
            break
    Q = bellman_q(P, r, V, gamma)
    policy = np.exp(Q - V[:, None])
    return V, policy / policy.sum(axis=1, keepdims=True)


def policy_transitions(P: np.ndarray, policy: np.ndarray) -> np.ndarray:
    """P_pi (S, S): P_pi[s, s'] = sum_a pi(a | s) P(s' | s, a)."""
    return np.einsum("sa,sat->st", policy, P)


def occupancy(P: np.ndarray, policy: np.ndarray, p0: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted state occupancy d (S,) = sum_t gamma^t Pr(s_t = s), by one linear solve.

    d = p0 + gamma P_pi^T d, so (I - gamma P_pi^T) d = p0; sum(d) = 1 / (1 - gamma).
    """
    S = P.shape[0]
    return np.linalg.solve(np.eye(S) - gamma * policy_transitions(P, policy).T, p0)


def policy_value(mdp: TabularMDP, policy: np.ndarray, r: np.ndarray | None = None) -> float:
    """Expected discounted return E[sum_t gamma^t r(s_t)] from p0 (the true reward if r is None)."""
    reward = mdp.reward if r is None else r
    return float(occupancy(mdp.P, policy, mdp.p0, mdp.gamma) @ reward)


def feature_expectations(mdp: TabularMDP, policy: np.ndarray) -> np.ndarray:
    """mu(pi) (K,) = E[sum_t gamma^t phi(s_t)] = phi^T d_pi (Abbeel and Ng 2004, eq. 3)."""
    return mdp.phi.T @ occupancy(mdp.P, policy, mdp.p0, mdp.gamma)


def optimal_policy(mdp: TabularMDP) -> np.ndarray:
    """The expert: a deterministic optimal policy (S, A) for the true reward."""
    return value_iteration(mdp.P, mdp.reward, mdp.gamma)[1]


def sample_episode(
    mdp: TabularMDP, policy: np.ndarray, rng: np.random.Generator, steps: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Roll `policy` out from p0: state indices (T + 1,) and action indices (T,)."""
    steps = mdp.horizon if steps is None else steps
    states = np.empty(steps + 1, dtype=np.int64)
    actions = np.empty(steps, dtype=np.int64)
    states[0] = rng.choice(mdp.num_states, p=mdp.p0)
    for t in range(steps):
        actions[t] = rng.choice(mdp.num_actions, p=policy[states[t]])
        states[t + 1] = rng.choice(mdp.num_states, p=mdp.P[states[t], actions[t]])
    return states, actions


# ---- worlds ----------------------------------------------------------------------------------


def grid_transitions(width: int, height: int, slip: float) -> np.ndarray:
    """(S, A, S) for a grid: the chosen move with probability 1 - slip, else a uniform one."""
    S, A = width * height, len(MOVES)
    moved = np.zeros((S, A), dtype=np.int64)  # where each deterministic move leads
    for s in range(S):
        x, y = s % width, s // width
        for a, (dx, dy) in enumerate(MOVES):
            nx, ny = x + dx, y + dy
            inside = 0 <= nx < width and 0 <= ny < height
            moved[s, a] = ny * width + nx if inside else s
    P = np.zeros((S, A, S))
    for s in range(S):
        for a in range(A):
            P[s, a, moved[s, a]] += 1.0 - slip
            for b in range(A):
                P[s, a, moved[s, b]] += slip / A
    return P


def _cell(x: int, y: int, width: int) -> int:
    return y * width + x


def _gridworld_5x5() -> TabularMDP:
    width = height = 5
    S = width * height
    w = np.zeros(S)
    w[_cell(4, 4, width)] = 1.0
    w[_cell(2, 1, width)] = -1.0
    w[_cell(1, 3, width)] = -1.0
    p0 = np.zeros(S)
    p0[_cell(0, 0, width)] = 1.0
    return TabularMDP(
        name=PREFIX + "5x5",
        P=grid_transitions(width, height, slip=0.1),
        phi=np.eye(S),
        w_true=w,
        p0=p0,
        gamma=0.9,
        horizon=60,
        shape=(width, height),
    )


def _gridworld_16x16() -> TabularMDP:
    width = height = 16
    macro = 4
    S = width * height
    k_side = width // macro
    phi = np.zeros((S, k_side * k_side))
    for s in range(S):
        x, y = s % width, s // width
        phi[s, (y // macro) * k_side + x // macro] = 1.0
    # Abbeel and Ng: a sparse reward on a few macrocells, drawn once with a fixed seed.
    rng = np.random.default_rng(2004)
    w = np.zeros(k_side * k_side)
    chosen = rng.choice(k_side * k_side, size=3, replace=False)
    w[chosen] = rng.uniform(0.2, 1.0, size=3)
    return TabularMDP(
        name=PREFIX + "16x16",
        P=grid_transitions(width, height, slip=0.3),
        phi=phi,
        w_true=w,
        p0=np.full(S, 1.0 / S),
        gamma=0.9,
        horizon=60,
        shape=(width, height),
    )


def _objectworld(
    size: int, num_objects: int = 8, colours: int = 2, max_dist: int = 5
) -> TabularMDP:
    S = size * size
    rng = np.random.default_rng(2011)
    cells = rng.choice(S, size=num_objects, replace=False)
    colour = np.arange(num_objects) % colours  # alternate so every colour is present
    xy = np.stack([np.arange(S) % size, np.arange(S) // size], axis=1).astype(float)  # (S, 2)
    phi = np.zeros((S, colours * max_dist))
    for c in range(colours):
        objects = xy[cells[colour == c]]  # (M, 2)
        nearest = np.linalg.norm(xy[:, None, :] - objects[None], axis=2).min(axis=1)  # (S,)
        for d in range(1, max_dist + 1):
            phi[:, c * max_dist + d - 1] = nearest <= d
    w = np.zeros(colours * max_dist)
    w[0 * max_dist + 2 - 1] = 1.0  # within 2 of colour 0
    w[1 * max_dist + 1 - 1] = -2.0  # within 1 of colour 1
    return TabularMDP(
        name=f"{PREFIX}objectworld-{size}",
        P=grid_transitions(size, size, slip=0.3),
        phi=phi,
        w_true=w,
        p0=np.full(S, 1.0 / S),
        gamma=0.9,
        horizon=60,
        shape=(size, size),
    )


GRIDWORLDS: dict[str, Callable[[], TabularMDP]] = {
    PREFIX + "5x5": _gridworld_5x5,
    PREFIX + "16x16": _gridworld_16x16,
    PREFIX + "objectworld-10": lambda: _objectworld(10),
}
"""The shipped tabular MDPs by name (see the module docstring)."""


def is_gridworld(name: str) -> bool:
    """Whether `name` asks for a tabular MDP (it may still be an unknown one)."""
    return name.startswith(PREFIX)


def make_gridworld(name: str) -> TabularMDP:
    """The tabular MDP `name`; an unknown name is an error that lists the known ones."""
    factory = GRIDWORLDS.get(name)
    if factory is None:
        raise ApprenticeError(f"unknown gridworld {name!r}; known: {', '.join(GRIDWORLDS)}")
    return factory()
