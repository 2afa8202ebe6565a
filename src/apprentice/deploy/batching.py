"""Dynamic batching for the policy server: the act requests of different sessions that wait
when the inference thread frees up run as one `act_batch` call, each session keeping its own
run-time state.

**When a batch runs.** There is no timer. A request that finds the inference thread idle runs
at once, alone: a lone robot never waits for company. Requests that arrive while a batch runs
wait, and the moment it ends they all (up to `max_batch`) become the next batch. Under load a
batch holds what arrived during the one before it, so the wait and the batch size follow the
load (the dynamic batching of inference servers).

**Sessions are rows.** A batched server holds one policy and no copy of it per session. A
session holds its row of the policy's run state (`Policy.run_state`): the frame history and
what its kind keeps (an RNN's hidden state and step count; ACT's ensembled chunks or action
queue; a diffusion or flow policy's queued actions and plan count). A batch stacks the rows of
its sessions (`stack_run_states`), acts, and gives each session its row back
(`split_run_state`). A session after a reset holds no row; it joins a batch as a fresh row,
which the policy starts afresh as `Policy.reset(rows)` would. So row i acts as its session
served alone. Up to float rounding, not bit for bit: a matrix product over B > 1 rows runs
other CPU kernels, with another summation order, than over one row (about 1e-7 on an MLP's
action, 1e-6 after a diffusion policy's denoising steps).

**Unbatched.** With `max_batch` 1, or a policy whose rows are not separate streams
(`Policy.batching_refusal`, e.g. a GMM head that samples from one generator that all rows
share), each session gets its own copy of the policy that shares the weights, and requests
run one at a time.

**Errors stay per session.** If a batch raises, no session's state has changed; its requests
then run one at a time, so only the request at fault gets the error.

Shape legend: B requests in a batch, A action.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import secrets
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from apprentice.deploy.shield import Shield, ShieldConfig
from apprentice.policies.base import Policy, RunState, split_run_state, stack_run_states

log = logging.getLogger(__name__)


class Session:
    """One connection's run-time state: its policy state and its shield."""

    def __init__(self, policy: Policy | None, shield: Shield | None) -> None:
        self.id = secrets.token_hex(8)
        self.policy = policy
        """Its own copy of the policy (sharing the served weights) when serving unbatched;
        None when batched."""
        self.run_state: RunState = {}
        """When batched, its row of the served policy's run state ({}: a fresh episode)."""
        self.shield = shield
        self.steps = 0

    def finish(self, action: np.ndarray, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The action (A,) float32 to send for the policy's `action`: shielded, and counted."""
        if self.shield is not None:
            action = np.asarray(self.shield.filter(action, obs), dtype=np.float32)
        self.steps += 1
        return action

    def reset(self) -> None:
        if self.policy is not None:
            self.policy.reset()
        self.run_state = {}
        if self.shield is not None:
            self.shield.reset()
        self.steps = 0


@dataclass(eq=False)
class ActRequest:
    """One act request on its way through the inference thread."""

    session: Session
    obs: dict[str, np.ndarray]
    future: asyncio.Future[np.ndarray]
    action: np.ndarray | None = None
    """The (shielded) action (A,), set on the inference thread."""
    error: Exception | None = None
    """Why there is no action, set instead."""

    def resolve(self) -> None:
        """Hand the outcome to the handler awaiting `future` (event-loop thread)."""
        if self.future.done():  # the handler was cancelled
            return
        if self.action is not None:
            self.future.set_result(self.action)
        else:
            self.future.set_exception(self.error or RuntimeError("the request was not run"))


class Inference:
    """The served policy on the inference thread: makes sessions, runs batches of requests."""

    def __init__(self, policy: Policy, shield: ShieldConfig | None, max_batch: int) -> None:
        self.policy = policy
        self.shield = shield
        refusal = policy.batching_refusal() if max_batch > 1 else None
        self.max_batch = 1 if refusal is not None else max_batch
        """Most requests per `act_batch` call; 1 = unbatched (a policy copy per session)."""
        self.batched = self.max_batch > 1
        self.description = (
            f"batching up to {max_batch} waiting requests per act_batch call"
            if self.batched
            else f"batching off ({refusal or '--max-batch 1'}): requests run one at a time, "
            "each session with its own copy of the policy"
        )
        """What the server says at start about batching, and why it does not batch."""
        self.refused = refusal is not None
        """Batching was asked for, but the policy's rows are not separate streams."""

    def new_session(self) -> Session:
        shield = Shield(self.shield, self.policy.action_dim) if self.shield is not None else None
        return Session(None if self.batched else self._policy_copy(), shield)

    def _policy_copy(self) -> Policy:
        # deepcopy with the parameters and buffers pre-seeded in the memo: the copy shares the
        # weights (no memory per session) but owns its run-time state.
        memo: dict[int, Any] = {
            id(t): t for t in itertools.chain(self.policy.parameters(), self.policy.buffers())
        }
        # Sampling generators get fresh copies made by hand: copy.deepcopy of a
        # torch.Generator leaks ~5 KB of native memory in torch 2.13 (+15 MB over 3000
        # copies, measured), which the soak showed as RSS growing with every session.
        for module in self.policy.modules():
            for value in vars(module).values():
                if isinstance(value, torch.Generator):
                    fresh = torch.Generator(device=value.device)
                    memo[id(value)] = fresh.set_state(value.get_state())
        policy = copy.deepcopy(self.policy, memo=memo)
        policy.reset()
        return policy

    def run(self, batch: Sequence[ActRequest]) -> None:
        """Set each request's action or error (inference thread); raises nothing."""
        if len(batch) > 1:
            try:
                actions = self.act([r.session for r in batch], [r.obs for r in batch])
            except Exception:
                # No state has changed: each request runs alone, and only the one at fault
                # gets the error.
                log.debug("a batch of %d requests failed; running them one at a time", len(batch))
            else:
                for request, action in zip(batch, actions, strict=True):
                    self._finish(request, action)
                return
        for request in batch:
            try:
                (action,) = self.act([request.session], [request.obs])
            except Exception as exc:
                request.error = exc
            else:
                self._finish(request, action)

    def act(
        self, sessions: Sequence[Session], observations: Sequence[dict[str, np.ndarray]]
    ) -> np.ndarray:
        """The policy's actions (B, A) for one observation of each session, each session's
        state advanced; if it raises, no batched session's state has changed."""
        if not self.batched:
            ((session,), (obs,)) = sessions, observations
            assert session.policy is not None
            return session.policy.act(obs)[None]  # (1, A)
        if len(observations) == 1:  # a lone request: views, not copies
            batch = {k: v[None] for k, v in observations[0].items()}  # (1, ...) each
        else:
            batch = {k: np.stack([o[k] for o in observations]) for k in observations[0]}
        self.policy.load_run_state(stack_run_states([s.run_state for s in sessions]))
        actions = self.policy.act_batch(batch)  # (B, A)
        rows = split_run_state(self.policy.run_state(), len(sessions))
        for session, row in zip(sessions, rows, strict=True):
            session.run_state = row
        return actions

    @staticmethod
    def _finish(request: ActRequest, action: np.ndarray) -> None:
        try:
            request.action = request.session.finish(action, request.obs)
        except Exception as exc:  # a shield failure is this session's alone
            request.error = exc


class ActQueue:
    """Act requests of all sessions, run on the inference thread (`executor`) in batches of
    what waits when it frees up; no timer (see the module's docstring)."""

    def __init__(self, inference: Inference, executor: Executor, batches: Counter[int]) -> None:
        self.inference = inference
        self.executor = executor
        self.batches = batches
        """Batches run, by their number of requests (counted on the event-loop thread)."""
        self._waiting: deque[ActRequest] = deque()
        self._drainer: asyncio.Task[None] | None = None

    async def act(self, session: Session, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The (shielded) action (A,) for `session`'s observation; raises what acting raised."""
        loop = asyncio.get_running_loop()
        request = ActRequest(session, obs, loop.create_future())
        self._waiting.append(request)
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        return await request.future

    async def _drain(self) -> None:
        """Run batches until nothing waits; what arrives meanwhile joins the next batch."""
        loop = asyncio.get_running_loop()
        batch: list[ActRequest] = []
        try:
            while self._waiting:
                size = min(len(self._waiting), self.inference.max_batch)
                batch = [self._waiting.popleft() for _ in range(size)]
                try:
                    await loop.run_in_executor(self.executor, self.inference.run, batch)
                except RuntimeError as exc:  # the executor was shut down: nothing ran
                    for request in batch:
                        request.error = exc
                self.batches[size] += 1
                for request in batch:
                    request.resolve()
                batch = []
        finally:
            self._drainer = None
            # Only when this task is cancelled (its loop stopping) is anything left: its
            # handlers are ending too, and none may wait for ever.
            for request in (*batch, *self._waiting):
                request.future.cancel()
            self._waiting.clear()
