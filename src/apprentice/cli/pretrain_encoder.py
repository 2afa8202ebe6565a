"""`apprentice pretrain-encoder --dataset FILE --image-key KEY --out FILE [--camera-args ...]`."""

from __future__ import annotations

import argparse

from apprentice.algos.pretrain import PretrainEncoderConfig, pretrain_encoder
from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.console import print_table
from apprentice.files import check_writable


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(PretrainEncoderConfig, ns)
    check_writable(cfg.out)
    r = pretrain_encoder(cfg)
    what = "reconstruction" if cfg.target_key is None else f"{cfg.target_key} (standardized)"
    print_table(
        f"pretrained an encoder for {cfg.image_key} of {cfg.dataset}",
        [
            ("encoder file", str(r.out)),
            ("steps", r.steps),
            (f"{what} loss at start", f"{r.loss_start:.5f}"),
            (f"{what} loss at end", f"{r.loss_end:.5f}"),
            ("seconds", f"{r.seconds:.1f}"),
            ("use it", f"--policy-args encoder_checkpoint={r.out} freeze_encoder=true"),
        ],
    )


def command() -> Command:
    return Command(
        "pretrain-encoder",
        "pretrain a camera encoder on a dataset's frames (deep spatial autoencoder, or "
        "regressing a recorded pose) for a policy",
        PretrainEncoderConfig,
        run,
        {},
    )
