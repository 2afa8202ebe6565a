"""Episodes, the on-disk store (robomimic HDF5 layout), training datasets and samplers."""

from apprentice.data.dataset import DemoDataset, WindowSampler
from apprentice.data.episode import DatagenInfo, Episode
from apprentice.data.inspect import summarize
from apprentice.data.normalize import Normalizer
from apprentice.data.reader import DemoFile
from apprentice.data.spec import ObsActSpec
from apprentice.data.store import (
    DemoWriter,
    split_train_valid,
    write_datagen_info,
    write_mask,
)

__all__ = [
    "DatagenInfo",
    "DemoDataset",
    "DemoFile",
    "DemoWriter",
    "Episode",
    "Normalizer",
    "ObsActSpec",
    "WindowSampler",
    "split_train_valid",
    "summarize",
    "write_datagen_info",
    "write_mask",
]
