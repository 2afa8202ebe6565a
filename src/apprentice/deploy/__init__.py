"""Deploy: export a policy (ONNX, TorchScript), run the export, guard actions with a shield.

Kept light: importing `apprentice.deploy` loads neither torch nor onnxruntime; each name
below is imported from its module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ExportConfig": "apprentice.deploy.export",
    "ExportResult": "apprentice.deploy.export",
    "export_checkpoint": "apprentice.deploy.export",
    "export_policy": "apprentice.deploy.export",
    "ExportMeta": "apprentice.deploy.runtime",
    "ExportedPolicy": "apprentice.deploy.runtime",
    "load_exported": "apprentice.deploy.runtime",
    "Shield": "apprentice.deploy.shield",
    "ShieldConfig": "apprentice.deploy.shield",
    "robot_config": "apprentice.deploy.shield",
    "Client": "apprentice.deploy.client",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'apprentice.deploy' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
