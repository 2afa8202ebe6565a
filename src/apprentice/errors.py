"""The one exception type for errors a user can cause and fix."""


class ApprenticeError(Exception):
    """A problem with the user's input (a path, a file, a shape, a task name, ...).

    The message names the thing at fault and what to do about it; the CLI prints it on
    one line and exits with status 2.
    """


class ReportedError(ApprenticeError):
    """An error that another process of the same run has already printed (under torchrun,
    rank 0's, relayed to the other ranks so that they stop too): the CLI exits with status 2
    without printing it again."""
