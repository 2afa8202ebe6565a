"""The wire protocol of the policy server: msgpack maps over WebSocket binary frames.

One WebSocket connection is one session: the server keeps one policy state (an RNN's hidden
state, a frame stack, an action chunk) per connection, so a client never sends state back.

    server -> client, once on connect:
        {"type": "hello", "protocol": 1, "session": str, "policy": str, "task": str,
         "env_args": {...}, "obs_shapes": {key: [D]}, "action_dim": A,
         "max_message_bytes": int, "shield": bool}
    client -> server:
        {"type": "act", "id": int, "obs": {key: ARRAY}}
            -> {"type": "action", "id": int, "action": ARRAY, "step": int, "server_ms": float}
        {"type": "reset", "id": int}
            -> {"type": "reset", "id": int}
    server -> client, on any request it cannot serve (the session stays usable):
        {"type": "error", "id": int | None, "kind": ERROR_KIND, "message": str}

ARRAY is explicit rather than a msgpack extension, so a client in any language can build one:
{"dtype": "<f4" | "<f8", "shape": [int, ...], "data": bytes (C order)}. Everything the server
receives is checked here (keys, shapes, dtype, byte count, finiteness) against the
checkpoint's observation spec before the policy sees it; a failure is a `ProtocolError`, which
the server turns into an error reply instead of a crash.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1

ERROR_KINDS = (
    "malformed",  # not msgpack, not a map, or a text frame
    "invalid_request",  # unknown "type", missing or mistyped fields
    "invalid_obs",  # observation keys, shapes, dtype or values do not fit the policy
    "busy",  # the inference queue is full: retry later (back-pressure, not a failure)
    "shutting_down",  # the server is draining before exit
    "internal",  # the policy raised: a server bug, logged there
)

# Little-endian float types accepted for low-dim observations; they are cast to float32.
OBS_DTYPES = ("<f4", "<f8")
# Camera images travel as uint8 (H, W, C), a quarter of float32's bytes, and stay uint8.
IMAGE_DTYPES = ("|u1",)
_ARRAY_KEYS = frozenset({"dtype", "shape", "data"})


class ProtocolError(Exception):
    """A message the server (or client) cannot accept; `kind` is one of ERROR_KINDS."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def pack(message: Mapping[str, Any]) -> bytes:
    """One frame's bytes for a message map."""
    frame: bytes = msgpack.packb(message, use_bin_type=True)
    return frame


def unpack(frame: bytes | str) -> dict[str, Any]:
    """The message map in a frame; `ProtocolError("malformed")` if it is not one."""
    if isinstance(frame, str):
        raise ProtocolError("malformed", "text frames are not accepted; send msgpack as binary")
    try:
        message = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types (ExtraData, FormatError, ValueError)
        raise ProtocolError(
            "malformed", f"frame is not valid msgpack ({type(exc).__name__})"
        ) from None
    if not isinstance(message, dict):
        raise ProtocolError("malformed", f"message must be a map, got {type(message).__name__}")
    return message


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """ARRAY for a numpy array: dtype string, shape, C-order bytes."""
    a = np.ascontiguousarray(array)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def decode_array(
    value: Any,
    *,
    name: str,
    shape: tuple[int, ...] | None = None,
    dtypes: tuple[str, ...],
    as_float: bool = True,
) -> np.ndarray:
    """The array an ARRAY holds, checked against `shape` (None = any) and `dtypes`: float32
    (finite) when `as_float`, else its own dtype (camera images stay uint8)."""
    if not isinstance(value, dict) or value.keys() != _ARRAY_KEYS:
        raise ProtocolError(
            "invalid_obs", f"{name} must be a map with keys dtype, shape, data (an encoded array)"
        )
    dtype, got_shape, data = value["dtype"], value["shape"], value["data"]
    if dtype not in dtypes:
        raise ProtocolError(
            "invalid_obs", f"{name} has dtype {dtype!r}; accepted: {', '.join(dtypes)}"
        )
    if not isinstance(got_shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in got_shape
    ):
        raise ProtocolError("invalid_obs", f"{name} has an invalid shape {got_shape!r}")
    if shape is not None and tuple(got_shape) != shape:
        raise ProtocolError(
            "invalid_obs", f"{name} has shape {tuple(got_shape)}, expected {tuple(shape)}"
        )
    if not isinstance(data, bytes):
        raise ProtocolError("invalid_obs", f"{name}: data must be bytes (msgpack bin)")
    np_dtype = np.dtype(dtype)
    expected = math.prod(got_shape) * np_dtype.itemsize
    if len(data) != expected:
        raise ProtocolError(
            "invalid_obs", f"{name} has {len(data)} data bytes, shape and dtype need {expected}"
        )
    array = np.frombuffer(data, dtype=np_dtype).reshape(got_shape)
    if not as_float:
        return array.copy()  # writable, independent of the frame's buffer
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ProtocolError("invalid_obs", f"{name} contains NaN or inf")
    return array


def decode_obs(
    value: Any,
    obs_shapes: Mapping[str, tuple[int, ...]],
    image_keys: Collection[str] = (),
) -> dict[str, np.ndarray]:
    """The observation of an act request, exactly the policy's keys: low-dim {key: (D,)
    float32}, and for `image_keys` {key: (H, W, C) uint8}."""
    if not isinstance(value, dict):
        raise ProtocolError("invalid_obs", "obs must be a map of key -> encoded array")
    if value.keys() != obs_shapes.keys():
        _refuse_keys(value, obs_shapes)
    return {
        key: decode_array(
            value[key],
            name=f"obs[{key!r}]",
            shape=shape,
            dtypes=IMAGE_DTYPES if key in image_keys else OBS_DTYPES,
            as_float=key not in image_keys,
        )
        for key, shape in obs_shapes.items()
    }


def _refuse_keys(value: Mapping[Any, Any], obs_shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Raise the `ProtocolError` naming the keys an observation lacks or should not have."""
    missing = sorted(set(obs_shapes) - set(value))
    if missing:
        raise ProtocolError(
            "invalid_obs",
            f"obs lacks key(s) {', '.join(missing)}; the policy reads {', '.join(obs_shapes)}",
        )
    extra = sorted(str(k) for k in set(value) - set(obs_shapes))
    # Unread keys are refused rather than ignored: they cost bandwidth and usually mean the
    # client talks to the wrong policy.
    raise ProtocolError(
        "invalid_obs",
        f"obs has unexpected key(s) {', '.join(extra)}; the policy reads {', '.join(obs_shapes)}",
    )


def request_id(message: Mapping[str, Any]) -> int | None:
    """The request's "id" if it is a usable integer (errors echo it), else None."""
    rid = message.get("id")
    return rid if isinstance(rid, int) and not isinstance(rid, bool) else None


def error_message(kind: str, message: str, rid: int | None) -> dict[str, Any]:
    return {"type": "error", "id": rid, "kind": kind, "message": message}
