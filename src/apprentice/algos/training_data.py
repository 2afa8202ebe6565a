"""What the trainer reads of a dataset: the train/valid split, the observation keys to load,
and the loaded windows' source arrays with the normalizer fitted on the training demos."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from apprentice.algos.config import TrainConfig
from apprentice.errors import ApprenticeError
from apprentice.policies.base import Policy, features_key


@dataclass
class TrainData:
    """The loaded training and validation demos, the normalizer's statistics (fitted on the
    training demos only) and the dataset's env_args."""

    train: Any
    valid: Any | None
    normalizer_state: dict[str, Any]
    env_args: dict[str, Any]

    def identity(self) -> dict[str, Any]:
        """What tells this data from other data, JSON-able: each split's demos and steps,
        and the normalizer's statistics (processes training one run must agree on it)."""
        valid = self.valid
        return {
            "train": [self.train.demo_names, self.train.num_steps],
            "valid": None if valid is None else [valid.demo_names, valid.num_steps],
            "normalizer": self.normalizer_state,
        }


def demo_split(config: TrainConfig) -> tuple[list[str] | None, list[str] | None, str | None]:
    """(train demos, valid demos, mask to load train with) per the dataset's filters or a split."""
    from apprentice.data.source import open_source

    path = Path(config.dataset)
    if not path.exists():
        raise ApprenticeError(f"dataset {path} does not exist")
    # The data layer's source validates the layout and names what is wrong with the dataset.
    with open_source(path) as source:
        masks = {name for name, demos in source.masks.items() if demos}  # an empty filter is none
        names = source.demo_names
    if config.train_mask in masks and config.valid_mask in masks:
        return None, None, config.train_mask
    if config.train_mask in masks:
        return None, [], config.train_mask
    if config.valid_fraction == 0 or len(names) < 2:
        return names, [], None
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(names))
    n_valid = max(1, round(config.valid_fraction * len(names)))
    valid = [names[i] for i in sorted(order[:n_valid])]
    train = [names[i] for i in sorted(order[n_valid:])]
    return train, valid, None


def keys_to_load(config: TrainConfig) -> tuple[list[str] | None, bool]:
    """(obs keys, with_images) to load: no images for a low-dim policy, and only the cameras
    it reads (uint8, ~850 MB for 200 lift demos x 2 cameras) otherwise.

    Raises ApprenticeError, before any run folder exists, for a dataset without actions or
    without the observation keys the policy names.
    """
    from apprentice.data.source import open_source, require_actions

    policy = config.policy
    path = Path(config.dataset)
    if not path.exists():
        raise ApprenticeError(f"dataset {path} does not exist")
    with open_source(path) as source:
        require_actions(source)
        source.check_obs_keys(policy.obs_keys)
        images, keys = source.image_keys, source.obs_keys
    if not policy.image_keys:
        return list(policy.obs_keys) or None, False
    for key in policy.image_keys:
        if key in images:
            continue
        if key in keys:
            raise ApprenticeError(
                f"policy image_keys lists {key!r}, a low-dim observation in {config.dataset}, "
                f"not a camera image (its image keys: {', '.join(images) or 'none'})"
            )
        raise ApprenticeError(
            f"policy reads camera images {key!r}, but dataset {config.dataset} has "
            f"{'image keys ' + ', '.join(images) if images else 'no images'} (its observation "
            f"keys: {', '.join(keys)}); record cameras with `apprentice collect --camera`"
        )
    low_dim = list(policy.obs_keys) or [k for k in keys if k not in images]
    return [*low_dim, *policy.image_keys], True


def check_image_sizes(init: dict[str, Any], policy: Policy, path: str) -> None:
    """A warm start's encoders must have seen images of this dataset's size."""
    spec = init.get("spec", {}).get("obs_shapes", {})
    for key, shape in policy.image_shapes.items():
        if key in spec and tuple(spec[key]) != shape:
            raise ApprenticeError(
                f"init_checkpoint {path} was trained on {key!r} images of shape "
                f"{tuple(spec[key])}; this dataset's are {shape}"
            )


def load_train_data(config: TrainConfig) -> TrainData:
    from apprentice.data.dataset import DemoDataset
    from apprentice.data.normalize import Normalizer
    from apprentice.data.source import open_source

    train_demos, valid_demos, train_mask = demo_split(config)
    keys, images = keys_to_load(config)
    with open_source(config.dataset) as source:
        train = DemoDataset.from_source(
            source, obs_keys=keys, mask=train_mask, demos=train_demos, with_images=images
        )
        valid = None
        if valid_demos is None:
            valid = DemoDataset.from_source(
                source, obs_keys=keys, mask=config.valid_mask, with_images=images
            )
        elif valid_demos:
            valid = DemoDataset.from_source(
                source, obs_keys=keys, demos=valid_demos, with_images=images
            )
    # Stats come from the training demos only, so validation measures generalisation honestly.
    normalizer = Normalizer.fit(train)
    return TrainData(train, valid, normalizer.state_dict(), dict(train.env_args))


def cache_camera_features(data: TrainData, policy: Policy, device: torch.device) -> TrainData:
    """`data` with the frames of every camera whose encoder is frozen (`policy.cached_cameras`)
    replaced by their features (N, Df) float32 under `features_key(camera)`: each frame is
    encoded once here, and the training steps gather features instead of running the encoder.
    Every policy reads them, as all encode frames through `Policy.encode_frames`."""
    cameras = policy.cached_cameras
    if not cameras:
        return data

    def cached(dataset: Any) -> Any:
        obs = dict(dataset.obs)
        for key in cameras:
            frames = torch.from_numpy(obs.pop(key))  # (N, H, W, C) uint8, on the CPU
            obs[features_key(key)] = policy.camera_features(key, frames, device).numpy()
        return replace(dataset, obs=obs)

    valid = None if data.valid is None else cached(data.valid)
    return replace(data, train=cached(data.train), valid=valid)
