"""Speed, measured side by side in one run on the current device: the seed's training loop against this
repo's training step (same model, same batch), the device's matmul peak, and the samplers.

Usage:
    python bench.py --quick                      # under a minute on a CPU: smoke-sized timings
    python bench.py                              # reference model (seed preset), batch 16
    python bench.py --preset=cpu --variants=base,channels_last,bf16,compile --json=bench.json
    python bench.py --batch_size=128 --lr_scale   # GPU: larger batch (lr scaled linearly)

Training variants of this repo's step (each a config change, nothing else): base, channels_last,
bf16 (autocast), compile (torch.compile), threads1 (one CPU thread), attn_head32 (attention heads of
32 channels instead of diffusers' default 8: same parameters, far cheaper attention kernels).
Sampling: ddpm-1000, ddim-50, dpm-10 for 16 icons; on a CPU the first --sample_cap steps are timed
and the rest extrapolated linearly (every step is one UNet call), which the table says.
"""
from __future__ import annotations

import dataclasses
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import config as config_mod
from config import Config, UserError
from dataset import list_images, load_folder, resolve_dir
from model import build_scheduler, build_unet, make_sampler, sample

VARIANTS = {"base": {}, "channels_last": {"channels_last": True}, "bf16": {"mixed_precision": "bf16"},
            "compile": {"compile": True}, "threads1": {"threads": 1},
            "attn_head32": {"attention_head_dim": 32}}


@dataclass
class BenchOptions:
    quick: bool = False  # smoke model, few steps: under a minute on a CPU
    steps: int = 5  # timed training steps per loop and round (after warm-up)
    warmup: int = 1
    rounds: int = 3  # loops take turns; each keeps its best round
    variants: tuple[str, ...] = ("base",)
    samplers: tuple[str, ...] = ("ddpm", "ddim", "dpm")
    sample_images: int = 16
    sample_cap: int = 0  # time at most this many sampler steps, extrapolate the rest (0: CPU 10, GPU all)
    skip_seed: bool = False
    lr_scale: bool = False  # scale lr linearly with batch_size / 16
    json: str = ""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, n: int, device: torch.device) -> float:
    """Seconds per call of fn over n calls."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / n


def matmul_peak(device: torch.device) -> float:
    """Achieved GFLOPS of a large fp32 matmul: the practical ceiling for this model's fp32 math."""
    n = 2048 if device.type == "cpu" else 8192
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    reps = 5 if device.type == "cpu" else 50
    return 2 * n ** 3 / timed(lambda: a @ b, reps, device) / 1e9


def train_flops(cfg: Config, device: torch.device) -> float:
    """FLOP of one training step (forward + backward) at cfg.batch_size, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode
    unet = build_unet(cfg).to(device)
    x = torch.randn(cfg.batch_size, cfg.channels, cfg.image_size, cfg.image_size, device=device)
    t = torch.randint(0, cfg.num_train_timesteps, (cfg.batch_size,), device=device)
    with FlopCounterMode(display=False) as counter:
        F.mse_loss(unet(x, t).sample, x).backward()
    return counter.get_total_flops()


def seed_step(cfg: Config, device: torch.device):
    """One step of the original seed script's loop, reproduced: PIL files opened per item, torchvision
    Resize (bilinear, its default) / RandomHorizontalFlip / ToTensor / Normalize, a DataLoader of
    batch 16 with shuffling, eager fp32, Adam, MSE on the noise."""
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T
    from PIL import Image

    files = [p for p, _ in list_images(resolve_dir(cfg.data_dir))]
    tf = T.Compose([T.Resize((cfg.image_size, cfg.image_size)), T.RandomHorizontalFlip(),
                    T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])

    class SeedDataset(Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            return tf(Image.open(files[i]).convert("RGB"))

    torch.manual_seed(cfg.seed)
    unet = build_unet(dataclasses.replace(cfg, channels=3, conditional=False)).to(device)
    scheduler = build_scheduler(cfg)
    opt = torch.optim.Adam(unet.parameters(), lr=cfg.lr)
    loader = DataLoader(SeedDataset(), batch_size=cfg.batch_size, shuffle=True)
    batches = iter(())

    def step():
        nonlocal batches
        x = next(batches, None)
        if x is None:
            batches = iter(loader)
            x = next(batches)
        x = x.to(device)
        noise = torch.randn_like(x)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (x.shape[0],), device=device)
        loss = F.mse_loss(unet(scheduler.add_noise(x, noise, t), t).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def repo_step(cfg: Config, device: torch.device):
    """One step of train.py's own loop (Run.train_step), same model and batch."""
    import train
    acc = train.make_accelerator(cfg)
    run = train.Run(cfg, Path(tempfile.gettempdir()),
                    load_folder(cfg, log=lambda _: None), acc)

    def step():
        run.train_step()
        run.pending.clear()

    return step


def compare_loops(loops: dict, cfg: Config, device: torch.device, opts: BenchOptions) -> list[dict]:
    """Images/s of each loop. Loops take turns over several rounds and each keeps its best round, so a
    slow spell of a shared machine does not land on one side of a ratio."""
    best = {name: float("inf") for name in loops}
    for _ in range(opts.rounds):
        for name, make in loops.items():
            step = make()  # built afresh each round: variants may differ in global state (precision)
            timed(step, opts.warmup, device)
            best[name] = min(best[name], timed(step, opts.steps, device))
    return [{"loop": name, "images_per_s": cfg.batch_size * cfg.grad_accum / s}
            for name, s in best.items()]


def sampling(cfg: Config, device: torch.device, opts: BenchOptions) -> list[dict]:
    """Seconds for opts.sample_images icons with each sampler at its default step count."""
    unet = build_unet(cfg).to(device).eval()
    scheduler = build_scheduler(cfg)
    cap = opts.sample_cap or (10 if device.type == "cpu" else 10_000)
    rows = []
    for name in opts.samplers:
        full = make_sampler(scheduler, name)
        n_steps = len(full.timesteps)
        timed_steps = min(cap, n_steps)
        sampler = make_sampler(scheduler, name)
        sampler.timesteps = sampler.timesteps[:timed_steps]  # the first k steps of the real schedule
        sample(unet, make_sampler(scheduler, name, 2), opts.sample_images)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        sample(unet, sampler, opts.sample_images)
        sync(device)
        seconds = (time.perf_counter() - t0) * n_steps / timed_steps
        rows.append({"sampler": f"{name}-{n_steps}", "seconds": seconds,
                     "images_per_s": opts.sample_images / seconds,
                     "timed_steps": timed_steps, "extrapolated": timed_steps < n_steps})
    return rows


def run_bench(cfg: Config, opts: BenchOptions) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    result = {"device": name, "torch": torch.__version__, "batch_size": cfg.batch_size,
              "params_M": sum(p.numel() for p in build_unet(cfg).parameters()) / 1e6}
    result["peak_gflops"] = matmul_peak(device)
    result["gflop_per_step"] = train_flops(cfg, device) / 1e9
    print(f"device: {name}; model {result['params_M']:.2f}M params, "
          f"{result['gflop_per_step']:.1f} GFLOP per training step at batch {cfg.batch_size}; "
          f"matmul peak {result['peak_gflops']:.0f} GFLOPS")
    loops = {} if opts.skip_seed else {"seed (PIL + DataLoader, eager fp32)":
                                       lambda: seed_step(cfg, device)}
    for v in opts.variants:
        if v not in VARIANTS:
            raise UserError(f"unknown variant {v!r}; variants: {', '.join(VARIANTS)}")
        loops[f"repo: {v}"] = lambda v=v: repo_step(dataclasses.replace(cfg, **VARIANTS[v]), device)
    rows = compare_loops(loops, cfg, device, opts)
    for r in rows:
        r["gflops"] = r["images_per_s"] / cfg.batch_size * result["gflop_per_step"]
        r["peak_fraction"] = r["gflops"] / result["peak_gflops"]
        if not opts.skip_seed:
            r["vs_seed"] = r["images_per_s"] / rows[0]["images_per_s"]
    result["training"] = rows
    result["sampling"] = sampling(cfg, device, opts)
    return result


def print_tables(result: dict) -> None:
    print(f"\ntraining, batch {result['batch_size']} ({result['device']})")
    print(f"{'loop':40s} {'img/s':>8s} {'GFLOPS':>8s} {'of peak':>8s} {'vs seed':>8s}")
    for r in result["training"]:
        print(f"{r['loop']:40s} {r['images_per_s']:8.1f} {r['gflops']:8.1f} "
              f"{r['peak_fraction']:8.0%} {r.get('vs_seed', float('nan')):7.2f}x")
    print("\nsampling")
    print(f"{'sampler':12s} {'seconds':>9s} {'img/s':>8s}  note")
    for r in result["sampling"]:
        note = f"timed {r['timed_steps']} steps, extrapolated" if r["extrapolated"] else ""
        print(f"{r['sampler']:12s} {r['seconds']:9.1f} {r['images_per_s']:8.2f}  {note}")


def main(argv: list[str]) -> int:
    opts = BenchOptions()
    try:
        quick = any(a in ("--quick", "--quick=true", "--quick=1") for a in argv)
        cfg = config_mod.parse_args(argv, opts, default_preset="smoke" if quick else "seed")
        if opts.lr_scale:  # linear scaling rule from the reference batch of 16
            cfg.lr *= cfg.batch_size / 16
        if opts.quick:
            opts.steps, opts.rounds, opts.sample_cap = min(opts.steps, 3), 1, opts.sample_cap or 5
        result = run_bench(cfg, opts)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_tables(result)
    if opts.json:
        Path(opts.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {opts.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
