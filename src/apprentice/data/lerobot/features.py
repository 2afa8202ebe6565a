"""Which LeRobot features a `DemoSource`'s obs keys become when it is written (`plan_features`),
info.json's description of them, and how a feature is a column of the data parquet.

Shapes: `T` steps of one episode, `D` values of a feature per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from apprentice.data.convert import ConversionNotes
from apprentice.data.episode import Episode
from apprentice.data.lerobot.layout import (
    FRAME_FEATURES,
    SPLIT_FEATURES,
    FeatureMapping,
    check_mapping,
    image_feature,
)
from apprentice.data.source import DemoSource
from apprentice.errors import ApprenticeError


@dataclass
class FeaturePlan:
    """How a source's demos become LeRobot features."""

    low_dim: dict[str, list[str]]
    """Numeric feature -> the obs keys concatenated into it, in order."""
    cameras: dict[str, str]
    """Video feature -> image key."""
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    """info.json's features (video info filled in once the videos are written)."""


def plan_features(source: DemoSource, mapping: Any, notes: ConversionNotes) -> FeaturePlan:
    """Which obs keys go into which feature: by `mapping`, else "object*" keys into
    observation.environment_state and the rest into observation.state."""
    shapes = source.obs_shapes
    vectors = [k for k, s in shapes.items() if len(s) == 1]
    cameras = [k for k in source.image_keys if shapes[k][2] == 3]
    for key, shape in shapes.items():
        if key not in vectors and key not in cameras:
            notes.drop(f"obs/{key}: shape {shape}; LeRobot features here are vectors and RGB video")
    low_dim = _mapped(check_mapping(mapping, "mapping"), shapes) if mapping is not None else {}
    mapped = {k for keys in low_dim.values() for k in keys}
    if mapping is not None:
        low_dim.update({f"observation.{k}": [k] for k in vectors if k not in mapped})
        notes.note(f"mapping: {', '.join(f'{f} <- {ks}' for f, ks in low_dim.items())}")
    else:
        state = [k for k in vectors if not k.startswith("object")]
        env = [k for k in vectors if k.startswith("object")]
        low_dim = {f: ks for f, ks in zip(SPLIT_FEATURES, (state, env), strict=True) if ks}
    return FeaturePlan(low_dim, {image_feature(k): k for k in cameras})


def _mapped(rules: FeatureMapping, shapes: dict[str, tuple[int, ...]]) -> dict[str, list[str]]:
    """feature -> keys in column order, checking the mapping tiles each feature with the source's
    keys."""
    out = {}
    for feature, keys in rules.items():
        if not feature.startswith("observation.") or feature.startswith("observation.image"):
            raise ApprenticeError(f"mapping: {feature}: a numeric feature is named observation.<x>")
        at = 0
        for key, (start, stop) in sorted(keys.items(), key=lambda kv: kv[1]):
            shape = shapes.get(key)
            if shape is None or len(shape) != 1:
                raise ApprenticeError(
                    f"mapping: {feature}.{key}: the source has no (D,) obs key {key!r}"
                )
            if start != at or stop - start != shape[0]:
                raise ApprenticeError(
                    f"mapping: {feature}.{key}: [{start}, {stop}) must be [{at}, {at + shape[0]}) "
                    f"(keys follow one another; {key} has {shape[0]} dims)"
                )
            at = stop
        out[feature] = sorted(keys, key=lambda k: keys[k][0])
    return out


def info_features(
    source: DemoSource, plan: FeaturePlan, first: Episode
) -> dict[str, dict[str, Any]]:
    """info.json's features: LeRobot's names and dtypes, `<key>.<i>` names so readers split the
    state back into keys."""
    shapes = source.obs_shapes
    features: dict[str, dict[str, Any]] = {}
    for feature, keys in plan.low_dim.items():
        dtype = np.result_type(*(first.obs[k].dtype for k in keys))
        names = [f"{k}.{i}" for k in keys for i in range(shapes[k][0])]
        features[feature] = {
            # float32 and float64 as they are (exact round trips); anything else as float32.
            "dtype": str(dtype) if dtype.kind == "f" and dtype.itemsize >= 4 else "float32",
            "shape": [len(names)],
            "names": names,
        }
    for feature, key in plan.cameras.items():
        names = ["height", "width", "channels"]
        features[feature] = {"dtype": "video", "shape": list(shapes[key]), "names": names}
    a = source.action_dim
    features["action"] = {
        "dtype": "float32",
        "shape": [a],
        "names": [f"action.{i}" for i in range(a)],
    }
    features["next.reward"] = {"dtype": "float32", "shape": [1], "names": None}
    features["next.done"] = {"dtype": "bool", "shape": [1], "names": None}
    features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
    for name in FRAME_FEATURES[1:]:
        features[name] = {"dtype": "int64", "shape": [1], "names": None}
    return features


def hf_feature(ft: dict[str, Any]) -> dict[str, Any]:
    """A feature in the Hugging Face `datasets` schema LeRobot reads the data parquet with."""
    value = {"dtype": ft["dtype"], "_type": "Value"}
    if list(ft["shape"]) == [1]:
        return value
    return {"feature": value, "length": int(ft["shape"][0]), "_type": "List"}


def arrow_column(values: np.ndarray, ft: dict[str, Any]) -> pa.Array:
    """(T,) values as a scalar column, (T, D) as fixed-size lists of D."""
    values = values.astype(ft["dtype"], copy=False)
    if list(ft["shape"]) == [1]:
        return pa.array(values.reshape(-1))
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), int(ft["shape"][0]))
