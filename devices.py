"""The one place that chooses the device, and what runs faster on it.

Usage:
    device = choose_device("auto")     # a GPU if one is visible, else the CPU
    configure(device)                  # TF32 matmuls and cuDNN autotuning on a GPU
    torch.set_num_threads(cpu_threads(0))   # one thread per idle core
    fn = compiled(net, device)         # torch.compile; CUDA graphs on a GPU
    precision("auto", device)          # bf16 where it is fast (AVX512-BF16 / AMX, a recent GPU)
"""
from __future__ import annotations

import functools

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


def cpu_threads(requested: int = 0) -> int:
    """Threads for torch on the CPU: `requested`; else OMP_NUM_THREADS where it is set; else one per
    core that is not already busy (the cores less the 1-minute load average, at least 1). OpenMP's
    threads wait for each other at every operation, so a thread on a core that another process uses
    stalls them all (RESULTS.md: threads)."""
    import os
    if requested:
        return requested
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return int(os.environ["OMP_NUM_THREADS"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, round(cores - load)))


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix work is fast here: a GPU that supports it, or a CPU with AVX512-BF16 or AMX
    where a bf16 convolution is measured faster than fp32 (this project's AMD EPYC: a walk cycle
    samples 2.6x faster under bf16 autocast; an Intel Xeon with AVX512-BF16 and no AMX: 0.8x, so fp32
    there, RESULTS.md)."""
    return torch.cuda.is_bf16_supported() if device.type == "cuda" else _cpu_bf16_faster()


@functools.cache
def _cpu_bf16_faster() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    if " avx512_bf16" not in flags and " amx_bf16" not in flags:
        return False
    import time
    x, w = torch.randn(16, 64, 16, 16), torch.randn(64, 64, 3, 3)

    def seconds(dtype) -> float:  # the best of 6: another process on the core only slows a call
        a, b, best = x.to(dtype), w.to(dtype), float("inf")
        for _ in range(6):
            t0 = time.perf_counter()
            torch.nn.functional.conv2d(a, b, padding=1)
            best = min(best, time.perf_counter() - t0)
        return best
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core's kernels: other threads may be sharing a core with a process
    try:
        seconds(torch.bfloat16)  # the first call picks kernels
        return seconds(torch.bfloat16) < seconds(torch.float32)
    finally:
        torch.set_num_threads(threads)


def precision(name: str, device: torch.device) -> str:
    """A run's mixed_precision made concrete: auto is bf16 where fast_bf16 (measured at equal minutes
    to train as well as fp32, RESULTS.md), else no (fp32)."""
    return ("bf16" if fast_bf16(device) else "no") if name == "auto" else name


def autocast(device: torch.device):
    """bf16 autocast where fast_bf16, else nothing: for sampling a model that trained in bf16."""
    import contextlib
    return torch.autocast(device.type, dtype=torch.bfloat16) if fast_bf16(device) else contextlib.nullcontext()


def configure(device: torch.device) -> None:
    """On a GPU, fp32 matmuls and convolutions on TF32 tensor cores and cuDNN's autotuner (shapes are
    static here); nothing on a CPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def compile_mode(device: torch.device) -> str:
    """reduce-overhead on a GPU: the compiled forward and backward are captured as CUDA graphs and
    replayed from one launch (small models are launch-bound there); the default mode elsewhere."""
    return "reduce-overhead" if device.type == "cuda" else "default"


def compiled(fn, device: torch.device):
    """torch.compile of a network or function for the device (compile_mode)."""
    return torch.compile(fn, mode=compile_mode(device))
