"""The browser device: a local web page (keyboard, touch, tilt, WebXR) over WebSocket.

`BrowserDevice` serves `static/teleop.html` and `static/teleop.js` over HTTP and speaks
WebSocket at `/ws` on the same port, with the `websockets` library the policy server uses.
Any browser becomes the input device: a laptop's keyboard (the terminal keyboard's key map,
sent in the hello), on-screen touch pads and buttons, a phone's tilt (DeviceOrientation),
or a headset's controller pose (WebXR). The page shows the simulator's camera live and the
session's status (recording, success, demos kept).

Messages (page -> server, JSON text frames or msgpack binary frames):

    {"type": "command", "seq": int, "t": ms, "pos": [3], "rot": [3], "gripper": float,
     "buttons": [name, ...]}
    {"type": "ping", "t": ms}                    -> {"type": "pong", "t": ms, "server_t": ms}

For a task of several arms (the hello's `arms` names them) a command carries every arm's
input in `"arms": [{"pos": [3], "rot": [3], "gripper": float}, ...]`, one entry per arm, in
place of pos, rot and gripper: the page drives the arm in focus from its keys and touch
pads (Tab or the arm button switches), and each arm from its own WebXR controller (the left
hand's drives the first arm, the right hand's the second).

`t` is when the input happened, in milliseconds since the epoch on the *server's* clock (the
page aligns its clock with ping/pong); the session measures input-to-step latency from it.
Server -> page: a hello (key map, control rate), status messages (JSON) and camera frames
(binary JPEG).

Why it is built this way:
- **The newest page drives.** A reload opens a new connection before the old one is gone, so
  a new page takes over and the old one is closed (code 4000) instead of being refused.
  `connected` is False while no page is open: the session treats that as an unplug.
- **Bad input is rejected and counted, never fatal**: frames that are not JSON or msgpack
  maps, unknown types, wrong shapes, non-finite numbers or unknown buttons get an error reply
  and a count in `rejected`; frames over `max_message_bytes` close that page (code 1009).
- **A silent page stops the robot.** The page re-sends its state at the control rate; when
  nothing has come for `stale_s` (a frozen or backgrounded tab), poll() reports no motion.
- **Frames never queue up.** Each page has one slot for the newest status and one for the
  newest frame; a slow page skips frames instead of falling behind the simulator.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import shutil
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from apprentice.errors import ApprenticeError
from apprentice.loop_thread import listen_error, run_in_thread
from apprentice.teleop.devices import (
    BUTTON_KEYS,
    BUTTONS,
    FOCUS_KEY,
    GRIPPER_KEY,
    GRIPPER_OPEN,
    MOTION_KEYS,
    ArmCommand,
    DeviceCommand,
    TeleopStatus,
)

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"

HEADLESS_CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""Flags to drive the page in headless Chromium (tests, the latency benchmark): without the
background-networking ones, Chromium keeps calling out of a closed network."""


def find_chromium() -> str | None:
    """The Chromium executable on PATH (Debian's `chromium`, or `chromium-browser`), if any."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


_FILES = {"/": ("teleop.html", "text/html"), "/teleop.js": ("teleop.js", "text/javascript")}
TAKEN_OVER = 4000
"""Close code sent to a page when a newer page takes over."""


class MalformedMessage(Exception):
    """A page message the device cannot use; `kind` names the reason for the counts."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _vector(message: dict[str, Any], key: str) -> np.ndarray:
    value = message.get(key, [0.0, 0.0, 0.0])
    if not isinstance(value, list) or len(value) != 3:
        raise MalformedMessage("bad_field", f"{key!r} must be a list of 3 numbers")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise MalformedMessage("bad_field", f"{key!r} must hold numbers only")
    vec = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(vec)):
        raise MalformedMessage("not_finite", f"{key!r} holds NaN or infinity")
    return np.clip(vec, -1.0, 1.0)


def decode_message(frame: bytes | str) -> dict[str, Any]:
    """A page message from a JSON text frame or a msgpack binary frame."""
    try:
        if isinstance(frame, str):
            message = json.loads(frame)
        else:
            message = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:  # json and msgpack raise several types for garbage
        kind = type(exc).__name__
        raise MalformedMessage("not_decodable", f"not JSON or msgpack ({kind})") from None
    if not isinstance(message, dict):
        raise MalformedMessage("not_a_map", f"a message is a map, not {type(message).__name__}")
    return message


def _gripper(message: dict[str, Any]) -> float:
    gripper = message.get("gripper", GRIPPER_OPEN)
    if not isinstance(gripper, int | float) or isinstance(gripper, bool):
        raise MalformedMessage("bad_field", "'gripper' must be a number")
    if not math.isfinite(gripper):
        raise MalformedMessage("not_finite", "'gripper' is NaN or infinity")
    return float(np.clip(gripper, -1.0, 1.0))


def _arms(message: dict[str, Any], arms: int) -> tuple[ArmCommand, ...]:
    """Every arm's input of a command for `arms` arms (none when it is one)."""
    value = message.get("arms")
    if arms == 1:
        if value is not None:
            raise MalformedMessage("bad_field", "'arms' is for tasks of several arms; this has one")
        return ()
    if not isinstance(value, list) or len(value) != arms:
        raise MalformedMessage("bad_field", f"'arms' must be a list of {arms} maps, one per arm")
    if not all(isinstance(a, dict) for a in value):
        raise MalformedMessage("bad_field", "each of 'arms' must be a map of pos, rot, gripper")
    return tuple(ArmCommand(_vector(a, "pos"), _vector(a, "rot"), _gripper(a)) for a in value)


def parse_command(message: dict[str, Any], arms: int = 1) -> DeviceCommand:
    """The command in a "command" message for a task of `arms` arms; MalformedMessage when it
    is not one."""
    seq = message.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise MalformedMessage("bad_field", "'seq' must be an integer")
    gripper = _gripper(message)
    per_arm = _arms(message, arms)
    buttons = message.get("buttons", [])
    if not isinstance(buttons, list) or not all(isinstance(b, str) for b in buttons):
        raise MalformedMessage("bad_field", "'buttons' must be a list of names")
    unknown = sorted(set(buttons) - set(BUTTONS))
    if unknown:
        raise MalformedMessage("unknown_button", f"unknown buttons {unknown}; known: {BUTTONS}")
    stamps: tuple[float, ...] = ()
    t = message.get("t")
    if t is not None:
        if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t):
            raise MalformedMessage("bad_field", "'t' must be a finite number (ms)")
        stamps = (float(t) / 1e3,)
    if per_arm:  # the top-level fields are the first arm's
        first = per_arm[0]
        return DeviceCommand(
            first.delta_pos, first.delta_rot, first.gripper, frozenset(buttons), stamps, per_arm
        )
    return DeviceCommand(
        _vector(message, "pos"), _vector(message, "rot"), gripper, frozenset(buttons), stamps
    )


def encode_jpeg(frame: np.ndarray, quality: int = 80) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class _Page:
    """One open page: its connection and its newest-only outbound slots."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.status: str | None = None
        self.frame: bytes | None = None
        self.wake = asyncio.Event()

    async def send_loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            status, frame = self.status, self.frame
            self.status = self.frame = None
            if status is not None:
                await self.ws.send(status)
            if frame is not None:
                await self.ws.send(frame)


class BrowserDevice:
    """The teleop web page's server and the device it drives (module docstring)."""

    name = "browser"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 8780,
        max_message_bytes: int = 4096,
        jpeg_quality: int = 80,
        rate_hz: float = 20.0,
        stale_s: float = 0.5,
    ) -> None:
        if not 0 <= port < 65536:
            raise ApprenticeError(f"--port must be in [0, 65535], got {port}")
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self.jpeg_quality = jpeg_quality
        self.rate_hz = rate_hz
        self.stale_s = stale_s
        self.rejected: Counter[str] = Counter()
        """Messages refused, by reason (malformed, oversized, ...)."""
        self.received: Counter[str] = Counter()
        """Messages accepted, by type."""
        self.transport_s: deque[float] = deque(maxlen=100_000)
        """Receive time minus input time of each stamped command (page -> server transport)."""
        self._lock = threading.Lock()
        self.arms: tuple[str, ...] = ("arm",)
        """The arms the page drives (`drive_arms`), sent in the hello."""
        self._input = DeviceCommand.neutral()  # the page's last input: motion and grippers
        self._buttons: set[str] = set()
        self._stamps: list[float] = []
        self._last_command = 0.0  # time.monotonic() of the last command received
        self._page: _Page | None = None
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    # ---- lifecycle (the server runs on its own thread with its own event loop) ---------------

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._thread, _ = run_in_thread(self._loop, "teleop-browser", self._listen)
        except BaseException:
            self._loop = None  # closed by run_in_thread: nothing left to close
            raise

    async def _listen(self) -> None:
        try:
            self._server = await serve(
                self._handle,
                self.host,
                self.port,
                process_request=self._process_request,
                max_size=self.max_message_bytes,
                max_queue=16,
                compression=None,  # JPEG does not deflate; commands are tiny
                close_timeout=1,
            )
        except OSError as exc:
            raise listen_error(exc, self.host, self.port) from None
        self.port = int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            if server is not None:
                server.close(code=CloseCode.GOING_AWAY, reason="teleop session ended")
                await server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._server = None

    # ---- the Device contract (called from the session's thread) ------------------------------

    def drive_arms(self, arms: tuple[str, ...]) -> None:
        with self._lock:
            if tuple(arms) != self.arms:  # the same arms again keep the page's input
                self.arms = tuple(arms)
                self._input = self._rest(DeviceCommand.neutral())

    def poll(self) -> DeviceCommand:
        with self._lock:
            moving = time.monotonic() - self._last_command <= self.stale_s
            held = self._input if moving else self._input.stopped()
            cmd = replace(held, buttons=frozenset(self._buttons), stamps=tuple(self._stamps))
            self._buttons.clear()
            self._stamps.clear()
        return cmd

    def _rest(self, last: DeviceCommand) -> DeviceCommand:
        """No motion, the grippers of `last` kept: one entry per arm when several."""
        if len(self.arms) == 1:
            return DeviceCommand.neutral(last.gripper)
        grippers = [a.gripper for a in last.arms] or [GRIPPER_OPEN] * len(self.arms)
        still = np.zeros(3)
        arms = tuple(ArmCommand(still, still, g) for g in grippers)
        return DeviceCommand(still, still, grippers[0], arms=arms)

    @property
    def connected(self) -> bool:
        return self._page is not None

    @property
    def wants_frames(self) -> bool:
        return self._page is not None

    def show(self, status: TeleopStatus, frame: np.ndarray | None) -> None:
        """Send the status and the camera frame to the page (encoded here, sent by the loop)."""
        loop = self._loop
        if loop is None or self._page is None:
            return
        text = json.dumps({"type": "status", **asdict(status)})
        jpeg = encode_jpeg(frame, self.jpeg_quality) if frame is not None else None
        loop.call_soon_threadsafe(self._publish, text, jpeg)

    def _publish(self, status: str, frame: bytes | None) -> None:
        page = self._page
        if page is None:
            return
        page.status = status
        if frame is not None:
            page.frame = frame
        page.wake.set()

    # ---- HTTP: the page itself ---------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if path == "/ws":
            return None  # the WebSocket handshake goes on
        if path == "/healthz":
            body = {"status": "ok", "page_open": self.connected, "rejected": dict(self.rejected)}
            return _response(connection, 200, json.dumps(body) + "\n", "application/json")
        if path not in _FILES:
            return connection.respond(404, f"no such path {path}; the page is at /\n")
        name, content_type = _FILES[path]
        return _response(connection, 200, (STATIC / name).read_text(), content_type)

    # ---- WebSocket: one page ------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        page = _Page(ws)
        old, self._page = self._page, page
        if old is not None:
            await old.ws.close(TAKEN_OVER, "another page took over")
        with self._lock:  # a new page starts from rest: nothing held
            self._input = self._rest(self._input)
        sender = asyncio.create_task(page.send_loop())
        try:
            await ws.send(json.dumps(self._hello()))
            async for frame in ws:
                reply = self._receive(frame)
                if reply is not None:
                    await ws.send(json.dumps(reply))
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
                self.rejected["oversized"] += 1
        finally:
            sender.cancel()
            if self._page is page:
                self._page = None
                with self._lock:  # no page, no motion
                    self._input = self._rest(self._input)

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "rate_hz": self.rate_hz,
            "buttons": list(BUTTONS),
            "motion_keys": {k: [kind, axis, sign] for k, (kind, axis, sign) in MOTION_KEYS.items()},
            "button_keys": BUTTON_KEYS,
            "gripper_key": GRIPPER_KEY,
            "focus_key": FOCUS_KEY,
            "arms": list(self.arms),
            "server_t": time.time() * 1e3,
        }

    def _receive(self, frame: bytes | str) -> dict[str, Any] | None:
        """Apply one page message; returns the reply to send, if any."""
        now = time.time()
        try:
            message = decode_message(frame)
            kind = message.get("type")
            if kind == "ping":
                self.received["ping"] += 1
                return {"type": "pong", "t": message.get("t"), "server_t": now * 1e3}
            if kind != "command":
                raise MalformedMessage(
                    "unknown_type", f"unknown type {kind!r}; send command or ping"
                )
            command = parse_command(message, len(self.arms))
        except MalformedMessage as exc:
            self.rejected[exc.kind] += 1
            return {"type": "error", "kind": exc.kind, "message": str(exc)}
        self.received["command"] += 1
        with self._lock:
            self._last_command = time.monotonic()
            self._input = replace(command, buttons=frozenset(), stamps=())
            self._buttons.update(command.buttons)
            if len(self._stamps) < 1024:
                self._stamps.extend(command.stamps)
        self.transport_s.extend(now - s for s in command.stamps)
        return None


def _response(connection: ServerConnection, status: int, body: str, content_type: str) -> Response:
    response = connection.respond(status, body)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = f"{content_type}; charset=utf-8"
    return response
