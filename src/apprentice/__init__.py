"""apprentice: teach robots skills from demonstrations.

collect -> curate -> multiply -> learn -> evaluate -> deploy
"""

from apprentice.errors import ApprenticeError

__version__ = "0.1.0"

__all__ = ["ApprenticeError", "__version__", "load_policy"]


def __getattr__(name: str) -> object:
    # load_policy pulls in torch; keep `import apprentice` light for env-only workers.
    if name == "load_policy":
        from apprentice.policies.checkpoint import load_policy

        return load_policy
    raise AttributeError(name)
