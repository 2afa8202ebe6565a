"""`apprentice export`: a checkpoint to ONNX or TorchScript, checked against PyTorch."""

from __future__ import annotations

import argparse

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.cli.eval import check_output
from apprentice.console import print_table
from apprentice.deploy.export import EXPORT_FORMATS, ExportConfig, export_checkpoint


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(ExportConfig, ns)
    check_output(cfg.out, cfg.checkpoint, "export")
    r = export_checkpoint(cfg)
    print_table(
        f"exported {r.meta.policy_kind} policy to {r.meta.format}",
        [
            ("file", r.path),
            ("description", r.sidecar),
            ("inputs", ", ".join(r.meta.input_names)),
            ("outputs", ", ".join(r.meta.output_names)),
            ("max abs diff vs PyTorch", f"{r.max_abs_diff:.2e} over {r.samples} observations"),
            ("tolerance", f"{r.tolerance:g}"),
        ],
    )


def command() -> Command:
    return Command(
        "export",
        "export a checkpoint to ONNX or TorchScript and check it against PyTorch",
        ExportConfig,
        run,
        {"positional": ("checkpoint",), "choices": {"format": list(EXPORT_FORMATS)}},
    )
