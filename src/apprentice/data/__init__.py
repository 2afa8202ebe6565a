"""Episodes, the on-disk store (robomimic HDF5 layout), the DemoSource seam other formats plug
into, training datasets and samplers."""

from apprentice.data.dataset import DemoDataset, WindowSampler
from apprentice.data.episode import DatagenInfo, Episode
from apprentice.data.inspect import summarize
from apprentice.data.normalize import Normalizer
from apprentice.data.reader import DemoFile
from apprentice.data.source import DemoSource, open_source
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
    "DemoSource",
    "DemoWriter",
    "Episode",
    "Normalizer",
    "ObsActSpec",
    "WindowSampler",
    "open_source",
    "split_train_valid",
    "summarize",
    "write_datagen_info",
    "write_mask",
]
