"""A synchronous client of the policy server, for a robot's control loop.

    with Client("ws://robot-pc:8765", token=...) as policy:
        policy.reset()                      # a new episode: fresh recurrent state
        action = policy.act(obs)            # obs {key: (D,)} -> (A,) float32, within timeout

It imports no torch: a robot computer needs numpy, msgpack and websockets only. Every failure
is an `ApprenticeError` subclass a control loop can act on: `ReplyTimeout` (apply the safe
action, keep the session), `ServerBusy` (retry), `ServerError` (the request was refused),
`ServerUnavailable` (no session: `reconnect()` and restart the episode), `AuthenticationError`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import CloseCode
from websockets.sync.client import ClientConnection, connect

from apprentice.deploy.protocol import (
    PROTOCOL_VERSION,
    ProtocolError,
    decode_array,
    encode_array,
    pack,
    unpack,
)
from apprentice.errors import ApprenticeError


class ServerError(ApprenticeError):
    """The server answered a request with an error; `kind` is one of protocol.ERROR_KINDS."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"policy server refused the request ({kind}): {message}")
        self.kind = kind


class ServerBusy(ServerError):
    """The server's inference queue was full; the request may be retried."""


class ServerUnavailable(ApprenticeError):
    """No session: the server cannot be reached, or it closed or lost the connection."""


class AuthenticationError(ApprenticeError):
    """The server refused the token."""


class ReplyTimeout(ApprenticeError):
    """No reply within the timeout; the session is still open and a late reply is skipped."""


class Client:
    """One session with a policy server; `timeout` (seconds) bounds each request."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 1.0,
        connect_timeout: float = 5.0,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ApprenticeError(f"policy server URL {url!r} must start with ws:// or wss://")
        self.url = url
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._ws: ClientConnection | None = None
        self._last_id = 0
        self.session = ""
        """The server's id of this session (new on every connect)."""
        self.hello: dict[str, Any] = {}
        """The server's hello: policy, task, env_args, obs_shapes, action_dim, limits."""
        self.obs_shapes: dict[str, tuple[int, ...]] = {}
        self.action_dim = 0
        self.connect()

    # ---- session -------------------------------------------------------------------------------

    def connect(self) -> None:
        """Open a session (closing any previous one) and read the server's hello."""
        self.close()
        try:
            ws = connect(
                self.url,
                additional_headers=self._headers,
                open_timeout=self.connect_timeout,
                close_timeout=1,
                compression=None,
                max_size=None,  # replies are the server's own; bounded by its action size
                legacy=True,  # this object owns and closes the connection itself
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 401:
                raise AuthenticationError(
                    f"policy server at {self.url} refused the token (HTTP 401); pass the "
                    "server's token (its --token or APPRENTICE_TOKEN)"
                ) from None
            body = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
            raise ServerUnavailable(
                f"policy server at {self.url} refused the session (HTTP {status}: {body})"
            ) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise ServerUnavailable(
                f"no policy server at {self.url} ({type(exc).__name__}: {exc})"
            ) from None
        try:
            hello = unpack(ws.recv(timeout=self.connect_timeout))
        except (TimeoutError, ConnectionClosed, ProtocolError) as exc:
            ws.close()
            raise ServerUnavailable(
                f"policy server at {self.url} sent no hello ({type(exc).__name__})"
            ) from None
        if hello.get("type") != "hello" or hello.get("protocol") != PROTOCOL_VERSION:
            ws.close()
            raise ServerUnavailable(
                f"{self.url} speaks protocol {hello.get('protocol')!r}, this client "
                f"{PROTOCOL_VERSION}; use the same apprentice version on both sides"
            )
        self._ws = ws
        self.hello = hello
        self.session = str(hello["session"])
        self.obs_shapes = {k: tuple(v) for k, v in hello["obs_shapes"].items()}
        self.action_dim = int(hello["action_dim"])

    def reconnect(self) -> None:
        """A fresh session after `ServerUnavailable` (e.g. the server restarted)."""
        self.connect()

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- requests ------------------------------------------------------------------------------

    def act(self, obs: Mapping[str, np.ndarray], *, timeout: float | None = None) -> np.ndarray:
        """The action (A,) float32 for one observation; keys the policy does not read are
        dropped here, so a task's full observation dict can be passed as it is."""
        missing = [k for k in self.obs_shapes if k not in obs]
        if missing:
            raise ApprenticeError(
                f"observation lacks {', '.join(missing)}; the served policy reads "
                f"{', '.join(self.obs_shapes)}"
            )
        images = set(self.hello.get("image_keys", ()))
        payload = {
            k: encode_array(np.asarray(obs[k], dtype=np.uint8 if k in images else np.float32))
            for k in self.obs_shapes
        }
        reply = self._request({"type": "act", "obs": payload}, timeout)
        try:
            return decode_array(
                reply.get("action"), name="action", shape=(self.action_dim,), dtypes=("<f4",)
            )
        except ProtocolError as exc:
            raise ServerError("malformed", f"the server's action: {exc.message}") from None

    def reset(self, *, timeout: float | None = None) -> None:
        """Start a new episode: the server clears this session's policy (and shield) state."""
        self._request({"type": "reset"}, timeout)

    def _request(self, message: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        if self._ws is None:
            raise ServerUnavailable(f"no session with {self.url}; call reconnect()")
        self._last_id += 1
        rid = self._last_id
        frame = pack({**message, "id": rid})
        limit = int(self.hello.get("max_message_bytes", 0))
        if limit and len(frame) > limit:
            raise ApprenticeError(
                f"request of {len(frame)} bytes exceeds the server's limit of {limit} bytes"
            )
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        try:
            self._ws.send(frame)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                reply = unpack(self._ws.recv(timeout=remaining))
                # A reply to an earlier request that timed out arrives late: skip it.
                if reply.get("id") == rid or reply.get("id") is None:
                    break
        except TimeoutError:
            raise ReplyTimeout(f"no reply from {self.url} within {budget:.3f} s") from None
        except ConnectionClosed as exc:
            self._ws = None
            raise ServerUnavailable(_lost(self.url, exc)) from None
        except ProtocolError as exc:
            raise ServerError(exc.kind, f"unreadable reply: {exc.message}") from None
        if reply.get("type") == "error":
            kind, text = str(reply.get("kind")), str(reply.get("message"))
            raise (ServerBusy if kind == "busy" else ServerError)(kind, text)
        return reply

    # ---- HTTP ----------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The server's /healthz JSON (status "ok", or "draining" during shutdown)."""
        return self._get_json("/healthz")

    def metrics(self) -> dict[str, Any]:
        """The server's /metrics as JSON: sessions, requests, errors, rejections, latency."""
        return self._get_json("/metrics?format=json")

    def _get_json(self, path: str) -> dict[str, Any]:
        base = "http" + self.url.removeprefix("ws").rstrip("/")
        request = urllib.request.Request(base + path, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.connect_timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise AuthenticationError(f"{base + path} refused the token (HTTP 401)") from None
            body = exc.read()  # 503 while draining still carries the health JSON
            if exc.code != 503:
                raise ServerUnavailable(f"{base + path}: HTTP {exc.code}") from None
        except OSError as exc:
            raise ServerUnavailable(f"no policy server at {base} ({exc})") from None
        result: dict[str, Any] = json.loads(body)
        return result


def _lost(url: str, exc: ConnectionClosed) -> str:
    """Why a session ended, in words a robot operator can act on."""
    if exc.rcvd is not None:
        code, reason = exc.rcvd.code, exc.rcvd.reason
        if code == CloseCode.MESSAGE_TOO_BIG:
            return f"policy server at {url} closed the session: a message exceeded its size limit"
        if code == CloseCode.GOING_AWAY:
            return f"policy server at {url} is shutting down ({reason}); reconnect() later"
        return f"policy server at {url} closed the session (code {code}: {reason})"
    return f"connection to the policy server at {url} was lost; reconnect() to start a session"
