"""Episodes, the on-disk store (robomimic HDF5 layout), training datasets and samplers."""

from apprentice.data.episode import DatagenInfo, Episode

__all__ = ["DatagenInfo", "Episode"]
