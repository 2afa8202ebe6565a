"""Host -> device copies that do not make the host wait for the device.

A copy to a CUDA device from ordinary (pageable) host memory waits until the device has
finished the work already queued; one such copy per training step stalls the loop that
should be queueing the next step, and with several processes on one GPU it waits for their
turns as well. From pinned memory the copy is queued like a kernel and the host goes on.
"""

from __future__ import annotations

import torch
from torch import Tensor


def host_to_device(t: Tensor, device: torch.device) -> Tensor:
    """A CPU tensor on `device`: through pinned memory to a CUDA device (the copy is queued,
    not waited for); a plain `.to` elsewhere (no copy on the CPU)."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
