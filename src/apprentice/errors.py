"""The one exception type for errors a user can cause and fix."""

from __future__ import annotations

import os


class ApprenticeError(Exception):
    """A problem with the user's input (a path, a file, a shape, a task name, ...).

    The message names the thing at fault and what to do about it; the CLI prints it on
    one line and exits with status 2.
    """


class ReportedError(ApprenticeError):
    """An error that another process of the same run has already printed (under torchrun,
    rank 0's, relayed to the other ranks so that they stop too): the CLI exits with status 2
    without printing it again."""


def fault(path: str | os.PathLike[str], where: str, what: str) -> ApprenticeError:
    """The error for what is wrong at `where` (a field, e.g. data/demo_0/actions, or a file of a
    dataset folder, e.g. meta/info.json: fps) in the dataset at `path`."""
    return ApprenticeError(f"{path}: {where}: {what}")
