"""The one place that chooses the device.

Usage:
    device = choose_device("auto")     # a GPU if one is visible, else the CPU
"""
from __future__ import annotations

import torch

from config import UserError


def choose_device(name: str = "auto") -> torch.device:
    """auto: CUDA when a GPU is visible, else the CPU; cpu; cuda (an error without a visible GPU)."""
    if name not in ("auto", "cpu", "cuda"):
        raise UserError(f"device must be auto, cpu or cuda; got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA GPU is visible; use --device=cpu or auto")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")
