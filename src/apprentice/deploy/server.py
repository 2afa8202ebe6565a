"""`apprentice serve`: a checkpoint behind a WebSocket policy server.

A robot (or a simulator standing in for one) connects, receives a hello with the observation
spec, then sends one observation per control step and gets one action back (see
`protocol.py` for the messages). The design follows from what a control loop needs:

- **One session per connection.** Each connection keeps its own run-time state (an RNN's
  hidden state, a chunk queue, a frame history), so recurrent and chunking policies keep
  per-robot memory; a reset message starts a new episode; a dropped connection frees the
  session.
- **One inference thread with a bounded queue, batching what waits.** Requests from all
  sessions run on a single worker thread (torch work does not interleave, latency stays
  predictable). The requests that wait when it frees up run as one `act_batch` call, each
  session its own row of the policy's state (`batching.py`: no timer, so a lone client
  waits for nobody). When `queue_size` requests are waiting, further ones get a "busy"
  reply at once instead of growing a backlog whose actions would arrive too late to use.
- **Bad input is answered, never fatal.** Malformed frames, wrong keys, shapes, dtypes or NaN
  get an error reply and are counted; the session goes on. Frames over `max_message_bytes`
  close that session (WebSocket code 1009) before they are read into memory.
- **HTTP on the same port**: `/healthz` (JSON; 503 while draining) and `/metrics` (Prometheus
  text, or JSON with `?format=json`), served from websockets' `process_request` hook.
- **Token authentication** (`Authorization: Bearer <token>`, compared in constant time) on
  sessions and metrics; health stays open for probes. Without a token the server listens on
  loopback only, unless `insecure` says otherwise (and then it warns).
- **Clean shutdown**: SIGTERM or SIGINT stops accepting, lets in-flight requests finish,
  closes every session with 1001 (going away) and exits 0.
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import ipaddress
import itertools
import json
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

import apprentice
from apprentice.deploy.batching import ActQueue, Inference, Session
from apprentice.deploy.protocol import (
    PROTOCOL_VERSION,
    ProtocolError,
    decode_obs,
    encode_array,
    error_message,
    pack,
    request_id,
    unpack,
)
from apprentice.deploy.shield import ShieldConfig, robot_config
from apprentice.errors import ApprenticeError
from apprentice.loop_thread import listen_error, run_in_thread
from apprentice.policies.base import Policy
from apprentice.policies.checkpoint import load_policy

log = logging.getLogger(__name__)

TOKEN_ENV = "APPRENTICE_TOKEN"
# Upper edges (seconds) of the server-side latency histogram of act requests.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5)


@dataclass(frozen=True)
class ServeConfig:
    """Serve a policy checkpoint to robots over WebSocket (msgpack frames)."""

    checkpoint: str
    """A checkpoint file (e.g. runs/lift/best.pt) or a run folder (best.pt, then final.pt,
    last.pt)."""
    port: int = 8765
    """TCP port to listen on (0 = any free port)."""
    host: str = "127.0.0.1"
    """Interface to listen on (0.0.0.0 = all); any but loopback needs a token or --insecure."""
    token: str | None = None
    """Shared secret clients send as `Authorization: Bearer <token>` (default: the
    APPRENTICE_TOKEN environment variable, which keeps it out of `ps`; none = no auth)."""
    insecure: bool = False
    """Serve with no token on a host other than loopback: anyone who reaches the port can
    drive the policy and read /metrics."""
    max_message_bytes: int = 65536
    """Largest frame accepted; a larger one closes its session (WebSocket code 1009)."""
    queue_size: int = 32
    """Act requests waiting for the inference thread beyond which new ones get "busy"."""
    max_sessions: int = 64
    """Open sessions beyond which new connections are refused (HTTP 503)."""
    idle_timeout: float = 60.0
    """Seconds without a message after which a session is closed."""
    drain_timeout: float = 5.0
    """On SIGTERM, seconds to let in-flight requests finish before closing sessions."""
    shield: str | None = None
    """Safety shield applied to every action before it is sent: a config file (TOML or JSON)
    or the name of a shipped robot config (e.g. sim_gripper)."""
    threads: int = 1
    """torch threads of the inference thread (1 keeps latency steady on a shared CPU)."""
    max_batch: int = 32
    """Most act requests (of different sessions) run as one act_batch call: those waiting
    when the inference thread frees up; 1 = one at a time, each session with its own policy
    copy (also what a policy gets whose act_batch rows are not separate sessions)."""


class ServerMetrics:
    """Counters and latencies of one server, read by /metrics (event-loop thread only)."""

    def __init__(self) -> None:
        self.started = time.time()
        self.sessions_open = 0
        self.sessions_opened = 0
        self.sessions_closed: Counter[str] = Counter()  # by reason
        self.requests: Counter[str] = Counter()  # by message type
        self.errors: Counter[str] = Counter()  # error replies by kind
        self.rejected: Counter[str] = Counter()  # connections/frames refused, by reason
        self.shield: Counter[str] = Counter()  # shield interventions of closed sessions
        self.batches: Counter[int] = Counter()  # act_batch calls (or single acts) by size
        self.bucket_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        # The most recent act latencies, for quantiles that follow the current load.
        self.recent: deque[float] = deque(maxlen=10_000)

    def observe_act(self, seconds: float) -> None:
        self.bucket_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.recent.append(seconds)

    def to_dict(self, shield_live: Counter[str]) -> dict[str, Any]:
        recent = np.asarray(self.recent)
        q = {
            f"p{p}_ms": float(np.percentile(recent, p) * 1e3) if recent.size else None
            for p in (50, 90, 99)
        }
        return {
            "uptime_s": time.time() - self.started,
            "sessions_open": self.sessions_open,
            "sessions_opened": self.sessions_opened,
            "sessions_closed": dict(self.sessions_closed),
            "requests": dict(self.requests),
            "errors": dict(self.errors),
            "rejected": dict(self.rejected),
            "shield": dict(self.shield + shield_live),
            "batches": {str(size): n for size, n in sorted(self.batches.items())},
            "act_latency": {
                **q,
                "count": sum(self.bucket_counts),
                "sum_s": self.latency_sum,
                "buckets_le_s": list(LATENCY_BUCKETS),
                "bucket_counts": list(self.bucket_counts),
            },
        }

    def to_prometheus(self, shield_live: Counter[str]) -> str:
        p = "apprentice_serve"
        lines = [
            f"# TYPE {p}_sessions_open gauge",
            f"{p}_sessions_open {self.sessions_open}",
            f"# TYPE {p}_sessions_opened_total counter",
            f"{p}_sessions_opened_total {self.sessions_opened}",
        ]
        labelled: dict[str, tuple[str, Counter[Any]]] = {
            "sessions_closed_total": ("reason", self.sessions_closed),
            "requests_total": ("type", self.requests),
            "errors_total": ("kind", self.errors),
            "rejected_total": ("reason", self.rejected),
            "shield_total": ("event", self.shield + shield_live),
            "batches_total": ("size", self.batches),
        }
        for name, (label, counts) in labelled.items():
            lines.append(f"# TYPE {p}_{name} counter")
            lines += [f'{p}_{name}{{{label}="{k}"}} {v}' for k, v in sorted(counts.items())]
        lines.append(f"# TYPE {p}_act_seconds histogram")
        cumulative = itertools.accumulate(self.bucket_counts)
        for edge, count in zip((*LATENCY_BUCKETS, "+Inf"), cumulative, strict=True):
            lines.append(f'{p}_act_seconds_bucket{{le="{edge}"}} {count}')
        lines.append(f"{p}_act_seconds_sum {self.latency_sum}")
        lines.append(f"{p}_act_seconds_count {sum(self.bucket_counts)}")
        return "\n".join(lines) + "\n"


class PolicyServer:
    """The server of one checkpoint; `run()` for a process, `start_background()` for tests."""

    def __init__(self, cfg: ServeConfig) -> None:
        for name in ("max_message_bytes", "queue_size", "max_sessions", "threads", "max_batch"):
            if getattr(cfg, name) < 1:
                raise ApprenticeError(f"--{name.replace('_', '-')} must be >= 1")
        if not 0 <= cfg.port < 65536:
            raise ApprenticeError(f"--port must be in [0, 65535], got {cfg.port}")
        self.cfg = cfg
        token = cfg.token if cfg.token is not None else os.environ.get(TOKEN_ENV)
        self._token = token.encode() if token else None
        self.open_to_network = self._token is None and not is_loopback(cfg.host)
        """No token, on an address other machines can reach (allowed with `insecure` only)."""
        if self.open_to_network and not cfg.insecure:
            raise ApprenticeError(
                f"--host {cfg.host or '(all interfaces)'} without a token would let anyone who "
                f"reaches the port drive the policy and read /metrics; set a token (--token or "
                f"the {TOKEN_ENV} environment variable), serve on 127.0.0.1, or pass "
                "--insecure to serve open"
            )
        self.policy = load_policy(cfg.checkpoint)
        self.obs_shapes: dict[str, tuple[int, ...]] = {
            k: (d,) for k, d in zip(self.policy.obs_keys, self.policy.obs_dims, strict=True)
        }
        # Camera images (H, W, C) uint8, as the policy's encoders were built for them.
        self.image_keys = tuple(self.policy.config.image_keys)
        for key in self.image_keys:
            self.obs_shapes[key] = tuple(int(d) for d in self.policy.spec.obs_shapes[key])
        self._shield_config = load_shield_config(cfg.shield) if cfg.shield else None
        if self._shield_config is not None:
            check_policy_fits_robot(self.policy, self._shield_config, cfg)
        self.inference = Inference(self.policy, self._shield_config, cfg.max_batch)
        self.metrics = ServerMetrics()
        self.sessions: dict[str, Session] = {}
        self.port: int | None = None
        self._server: Server | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._acts: ActQueue | None = None
        self._queued = 0  # act requests submitted to the inference thread, not yet done
        self._inflight = 0  # requests received and not yet answered
        self._draining = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> int:
        """Bind and start accepting; returns the port (useful with port 0)."""
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="apprentice-infer",
            initializer=torch.set_num_threads,
            initargs=(self.cfg.threads,),
        )
        self._acts = ActQueue(self.inference, self._executor, self.metrics.batches)
        try:
            self._server = await serve(
                self._handle,
                self.cfg.host,
                self.cfg.port,
                process_request=self._process_request,
                max_size=self.cfg.max_message_bytes,
                max_queue=8,  # frames buffered per session; a client sends one at a time
                compression=None,  # frames are small; deflate would only add latency
                server_header=f"apprentice/{apprentice.__version__}",
                close_timeout=2,
            )
        except OSError as exc:
            self._executor.shutdown(wait=False)
            raise listen_error(exc, self.cfg.host, self.cfg.port) from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        # WARNING when the policy refuses batching: throughput is then one act per request.
        level = logging.WARNING if self.inference.refused else logging.INFO
        log.log(level, "%s", self.inference.description)
        if self.open_to_network:
            # WARNING so that it shows without any logging set up: the person must act on it.
            log.warning(
                "INSECURE (--insecure): serving the policy with NO TOKEN on %s:%d; anyone who "
                "can reach this port can drive the policy and read /metrics. Set %s to "
                "require a token.",
                self.cfg.host or "*",
                self.port,
                TOKEN_ENV,
            )
        return self.port

    async def shutdown(self) -> None:
        """Stop accepting, let in-flight requests finish (up to drain_timeout), close all."""
        if self._server is None:
            return
        self._draining = True
        self._server.server.close()  # stop listening; open sessions stay for now
        deadline = time.monotonic() + self.cfg.drain_timeout
        while self._inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        self._server.close(code=CloseCode.GOING_AWAY, reason="server shutting down")
        await self._server.wait_closed()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._server = None

    def run(self, ready: Callable[[int], None] | None = None) -> None:
        """Serve until SIGTERM or SIGINT, then shut down cleanly (the `apprentice serve` body)."""
        import signal

        async def main() -> None:
            port = await self.start()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            if ready is not None:
                ready(port)
            await stop.wait()
            await self.shutdown()

        asyncio.run(main())

    def start_background(self) -> int:
        """Serve from a daemon thread with its own event loop; returns the port."""
        self._loop = asyncio.new_event_loop()
        self._thread, port = run_in_thread(self._loop, "apprentice-serve", self.start)
        return port

    def stop_background(self) -> None:
        """Shut a `start_background` server down cleanly and join its thread."""
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None

    # ---- HTTP: health, metrics, admission -----------------------------------------------------

    def _authorized(self, headers: Headers) -> bool:
        if self._token is None:
            return True
        scheme, _, given = headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), self._token)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if path == "/healthz":
            status = 503 if self._draining else 200
            return _json_response(connection, status, self.health())
        if path == "/metrics":
            if not self._authorized(request.headers):
                self.metrics.rejected["auth"] += 1
                return connection.respond(401, "missing or wrong token\n")
            shield_live = sum(
                (Counter(s.shield.counts) for s in self.sessions.values() if s.shield), Counter()
            )
            if "format=json" in query:
                return _json_response(connection, 200, self.metrics.to_dict(shield_live))
            return connection.respond(200, self.metrics.to_prometheus(shield_live))
        if path != "/":
            return connection.respond(404, f"no such path {path}; try /, /healthz, /metrics\n")
        if not self._authorized(request.headers):
            self.metrics.rejected["auth"] += 1
            return connection.respond(401, "missing or wrong token\n")
        if self._draining:
            self.metrics.rejected["shutting_down"] += 1
            return connection.respond(503, "server is shutting down\n")
        if len(self.sessions) >= self.cfg.max_sessions:
            self.metrics.rejected["too_many_sessions"] += 1
            return connection.respond(503, f"server is full ({self.cfg.max_sessions} sessions)\n")
        return None

    def health(self) -> dict[str, Any]:
        return {
            "status": "draining" if self._draining else "ok",
            "policy": self.policy.config.name,
            "task": str(self.policy.env_args.get("env_name", "")),
            "sessions": len(self.sessions),
            "queued": self._queued,
            "max_batch": self.inference.max_batch,
            "uptime_s": time.time() - self.metrics.started,
            "version": apprentice.__version__,
        }

    # ---- sessions ------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        session = self.inference.new_session()
        self.sessions[session.id] = session
        self.metrics.sessions_open += 1
        self.metrics.sessions_opened += 1
        reason = "client_closed"
        try:
            await ws.send(pack(self._hello(session)))
            while True:
                try:
                    async with asyncio.timeout(self.cfg.idle_timeout):
                        frame = await ws.recv()
                except TimeoutError:
                    reason = "idle"
                    await ws.close(CloseCode.NORMAL_CLOSURE, "idle timeout")
                    return
                self._inflight += 1
                try:
                    await ws.send(pack(await self._answer(session, frame)))
                finally:
                    self._inflight -= 1
        except ConnectionClosed as exc:
            reason = _close_reason(exc, draining=self._draining)
            if reason == "oversized":
                self.metrics.rejected["oversized"] += 1
        finally:
            del self.sessions[session.id]
            self.metrics.sessions_open -= 1
            self.metrics.sessions_closed[reason] += 1
            if session.shield is not None:
                self.metrics.shield.update(session.shield.counts)

    def _hello(self, session: Session) -> dict[str, Any]:
        return {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "session": session.id,
            "policy": self.policy.config.name,
            "task": str(self.policy.env_args.get("env_name", "")),
            "env_args": _json_safe(self.policy.env_args),
            "obs_shapes": {k: list(s) for k, s in self.obs_shapes.items()},
            "image_keys": list(self.image_keys),
            "action_dim": self.policy.action_dim,
            "max_message_bytes": self.cfg.max_message_bytes,
            "shield": self._shield_config is not None,
        }

    async def _answer(self, session: Session, frame: bytes | str) -> dict[str, Any]:
        """The reply to one frame: an action, a reset acknowledgement, or an error."""
        start = time.perf_counter()
        rid: int | None = None
        try:
            message = unpack(frame)
            rid = request_id(message)
            kind = message.get("type")
            self.metrics.requests[str(kind) if kind in ("act", "reset") else "other"] += 1
            if rid is None:
                raise ProtocolError("invalid_request", "a request needs an integer 'id'")
            if kind == "reset":
                session.reset()  # at most one request per session is in flight: no race
                return {"type": "reset", "id": rid}
            if kind != "act":
                raise ProtocolError(
                    "invalid_request", f"unknown message type {kind!r}; expected act or reset"
                )
            obs = decode_obs(message.get("obs"), self.obs_shapes, self.image_keys)
            if self._draining:
                raise ProtocolError("shutting_down", "the server is shutting down")
            if self._queued >= self.cfg.queue_size:
                raise ProtocolError(
                    "busy", f"inference queue is full ({self.cfg.queue_size} requests); retry"
                )
            assert self._acts is not None  # started
            self._queued += 1
            try:
                action = await self._acts.act(session, obs)
            finally:
                self._queued -= 1
            elapsed = time.perf_counter() - start
            self.metrics.observe_act(elapsed)
            return {
                "type": "action",
                "id": rid,
                "action": encode_array(action),
                "step": session.steps,
                "server_ms": elapsed * 1e3,
            }
        except ProtocolError as exc:
            self.metrics.errors[exc.kind] += 1
            return error_message(exc.kind, exc.message, rid)
        except ApprenticeError as exc:  # the policy's own observation checks
            self.metrics.errors["invalid_obs"] += 1
            return error_message("invalid_obs", str(exc), rid)
        except Exception as exc:
            log.exception("session %s: the policy failed", session.id)
            self.metrics.errors["internal"] += 1
            return error_message("internal", f"the policy failed: {type(exc).__name__}", rid)


def _close_reason(exc: ConnectionClosed, *, draining: bool) -> str:
    """Why a session ended, for the metrics: how a soak tells dropped sessions from closed."""
    if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
        return "oversized"
    if draining:
        return "shutdown"
    if exc.rcvd is not None and exc.rcvd.code in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY):
        return "client_closed"
    return "dropped"  # no close frame: the client died or the network went away


def _json_response(connection: ServerConnection, status: int, body: dict[str, Any]) -> Response:
    response = connection.respond(status, json.dumps(body) + "\n")
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


def _json_safe(value: Any) -> Any:
    """env_args as plain JSON types (checkpoints may hold tensors or numpy scalars)."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist()))


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (127.0.0.0/8, ::1, localhost): reachable from this
    machine only. Any other name or address, and "" (all interfaces), is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_policy_fits_robot(policy: Policy, shield: ShieldConfig, cfg: ServeConfig) -> None:
    """Refuse, before serving, a policy whose actions the robot of `--shield` cannot take:
    another action size than the robot's, or limits that do not fit the policy's actions."""
    task = policy.env_args.get("env_name")
    acts = f"{policy.action_dim}-D actions" + (f" (task {task!r})" if task else "")
    robot = shield.robot or cfg.shield
    if shield.action_dim is not None and shield.action_dim != policy.action_dim:
        raise ApprenticeError(
            f"checkpoint {cfg.checkpoint} outputs {acts} and robot {robot} (--shield "
            f"{cfg.shield}) takes {shield.action_dim}-D actions: serve a checkpoint trained for "
            "that robot's task, or give the shield config of the robot this policy drives"
        )
    try:
        shield.check_fits(policy.action_dim)
    except ApprenticeError as exc:
        raise ApprenticeError(
            f"--shield {cfg.shield} does not fit checkpoint {cfg.checkpoint} ({acts}): {exc}"
        ) from None


def load_shield_config(name_or_path: str) -> ShieldConfig:
    """A shield config from a file (.toml, .json) or a shipped robot's name (sim_gripper)."""
    if Path(name_or_path).suffix or os.sep in name_or_path:
        return ShieldConfig.from_file(name_or_path)
    return robot_config(name_or_path)
