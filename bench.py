"""Speed, measured side by side in one run on the current device: the seed's training loop against
train.py's own loop (same model, same batch), the device's matmul peak, and the samplers.

Usage:
    python bench.py --quick                      # seconds on a CPU: smoke-sized timings
    python bench.py --variants=base,attn_head32  # the reference model (seed preset), batch 16
    python bench.py --preset=cpu --variants=base,bf16,compile --json=bench.json
    python bench.py --batch_size=128 --lr_scale --variants=base,bf16,compile   # a GPU: a larger batch
    python bench.py --quick --batch_sweep=4,8,16    # img/s and MFU at each batch

Variants of this repo's loop (each a config change, nothing else): base (the preset as it is: bf16
autocast where the CPU has AVX512-BF16 or AMX), fp32 (no autocast), bf16 (autocast), compile
(torch.compile), threads1 (one CPU thread), attn_head32 (attention heads of 32 channels instead of
diffusers' default 8: same parameters, far cheaper attention kernels). The repo's loop is timed from
the training seconds train.py logs per step, after one warm-up step. Sampling: 16 sprites with each
sampler at its default steps; on a CPU the first 10 steps are timed and the rest extrapolated
(every step is one UNet call), which the table says. MFU is the model's FLOPs a second (counted by
torch) over the device's measured matmul peak: bf16 where the device does bf16 fast (a GPU's tensor
cores, a CPU with AVX512-BF16 or AMX), else fp32.

The one prepared check for a GPU machine runs in a single call of --minutes:
    python bench.py --gpu_check=$OUT --minutes=9
bench at batch 16 and at the best batch of a sweep, the seed preset's 500 epochs at that batch (lr
scaled) timed and scored by FD-Lite0 against the item icons, then the gpu preset for the minutes left,
scored by the held-out test; it writes check.log, bench.json, seed.json, seed.png, gpu.json and
gpu.png into that folder. With --lpc=FOLDER (LPC layers, carried to the GPU machine) it also trains the
character preset for a third of the time left and runs its walk test (characters.json). With --quick it
runs the same steps at smoke sizes on a CPU (tested).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from types import SimpleNamespace
from pathlib import Path

import config as config_mod
from config import SAMPLER_STEPS, Config, UserError, json_path, option, script, write_json

VARIANTS = {"base": {}, "fp32": {"mixed_precision": "no"}, "bf16": {"mixed_precision": "bf16"},
            "compile": {"compile": True},
            "threads1": {"threads": 1}, "attn_head32": {"attention_head_dim": 32}}


@dataclass
class BenchOptions:
    quick: bool = option(False, "the smoke model (unless --preset), 3 timed steps, 1 round, 5 sampler "
                                "steps: seconds on a CPU")
    timed_steps: int = option(5, "training steps timed per loop and round, after one warm-up step")
    rounds: int = option(3, "the loops take turns this many times; each keeps its best round")
    variants: tuple[str, ...] = option(("base",), "this repo's step with: " + ", ".join(VARIANTS))
    samplers: tuple[str, ...] = option(tuple(SAMPLER_STEPS), "samplers to time at their default steps")
    lr_scale: bool = option(False, "scale lr linearly with batch_size / 16 (for a large GPU batch)")
    batch_sweep: tuple[int, ...] = option((), "also time this repo's step at each of these batches: "
                                              "img/s and MFU")
    gpu_check: str = option("", "run the prepared GPU check, writing its files into this folder")
    minutes: float = option(9.0, "--gpu_check: the whole check's budget")
    lpc: str = option("", "--gpu_check: an LPC layer folder; the check then also trains the character "
                          "preset for a third of the minutes left and runs its walk test")
    json: str = option("", "also write the results to this JSON file")


def sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, n: int, device) -> float:
    """Seconds per call of fn over n calls."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / n


def matmul_peak(device) -> tuple[float, str]:
    """(achieved GFLOPS, what was timed): a square matmul in bf16 where the device does bf16 fast
    (8192^3 on a GPU, its tensor cores' practical ceiling; 1024^3 on a CPU with AVX512-BF16 or AMX),
    else in fp32."""
    import torch

    from devices import fast_bf16
    gpu = device.type == "cuda"
    n, dtype = 8192 if gpu else 1024, torch.bfloat16 if fast_bf16(device) else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    seconds = timed(lambda: a @ b, 50 if gpu else 10, device)
    return 2 * n ** 3 / seconds / 1e9, f"{'bf16' if dtype == torch.bfloat16 else 'fp32'} {n}^3 matmul"


def stand_in_conditions(cfg: Config, n: int, classes: list[str]) -> dict:
    """The backbone's conditioning arguments for n images, of the right shapes (label 0 of a zero text
    table): timings do not depend on their values."""
    import torch

    from conditioning import TEXT_DIM, TEXT_TOKENS, for_model
    condition = for_model(cfg.model, classes)
    condition.table = {"hidden": torch.zeros(1, TEXT_TOKENS, TEXT_DIM), "mask": torch.ones(1, TEXT_TOKENS),
                       "pooled": torch.zeros(1, TEXT_DIM)}
    if condition.kind == "character":  # (caption, frame, reference) rows of one blank reference
        size = cfg.model.image_size
        condition.refs = torch.zeros(1, cfg.model.channels, size, size)
        return condition.inputs(torch.zeros(n, 3, dtype=torch.long))
    return condition.inputs(torch.zeros(n, dtype=torch.long))


def train_flops(cfg: Config, classes: list[str], device) -> float:
    """FLOP of one training step (forward + backward) at the run's batch size, counted by torch."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from model import build
    net = build(cfg.model, len(classes)).to(device)
    b, s = cfg.run.batch_size, cfg.model.image_size
    x = torch.randn(b, cfg.model.channels, s, s, device=device)
    t = torch.randint(0, 1000, (b,), device=device)
    cond = {k: v if v is None else v.to(device) for k, v in stand_in_conditions(cfg, b, classes).items()}
    with FlopCounterMode(display=False) as counter:
        F.mse_loss(net(x, t, **cond).sample, x).backward()
    return counter.get_total_flops()


def seed_round(cfg: Config, classes: list[str], device, opts: BenchOptions) -> float:
    """Seconds per step of the original seed script's loop, reproduced: PIL files opened per item,
    torchvision Resize (bilinear, its default) / RandomHorizontalFlip / ToTensor / Normalize, a
    DataLoader of batch 16 with shuffling, eager fp32, Adam, MSE on the noise; on the same network
    as the repo's loop (its channels and its condition, given stand-in conditions) with diffusers'
    stock attention, so that the two differ by their loops and kernels alone."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    from diffusers.models.attention_processor import AttnProcessor2_0

    from dataset import data_dirs, list_images
    from model import build, build_scheduler, with_fast_attention
    files = [p for root in data_dirs(cfg.run.data_dir) for p, _ in list_images(root)]
    size = cfg.model.image_size

    class SeedDataset(Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            return tf(Image.open(files[i]).convert(mode))

    mode = "RGBA" if cfg.model.channels == 4 else "RGB"
    tf = T.Compose([T.Resize((size, size)), T.RandomHorizontalFlip(),
                    T.ToTensor(), T.Normalize([0.5] * len(mode), [0.5] * len(mode))])
    torch.manual_seed(cfg.run.seed)
    # the seed's stock diffusers attention, not model.CpuAttention
    unet = with_fast_attention(build(cfg.model, len(classes)), AttnProcessor2_0()).to(device)
    cond = {k: v if v is None else v.to(device)
            for k, v in stand_in_conditions(cfg, cfg.run.batch_size, classes).items()}
    scheduler = build_scheduler(cfg.model)
    opt = torch.optim.Adam(unet.parameters(), lr=cfg.run.lr)
    loader = DataLoader(SeedDataset(), batch_size=cfg.run.batch_size, shuffle=True, drop_last=True)
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
        loss = F.mse_loss(unet(scheduler.add_noise(x, noise, t), t, **cond).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()

    timed(step, 1, device)  # warm-up
    return timed(step, opts.timed_steps, device)


def repo_round(cfg: Config, opts: BenchOptions) -> float:
    """Seconds per step of train.py's own loop (trainer.train), same model and batch: the steps after
    the first, from the training seconds it logs for each step."""
    from trainer import train
    with tempfile.TemporaryDirectory() as tmp:
        run = dataclasses.replace(cfg.run, max_steps=1 + opts.timed_steps, log_every=1, ckpt_every=10**9,
                                  sample_every=0, num_samples=0, out_dir=tmp, run_name="bench")
        train(dataclasses.replace(cfg, run=run), Path(tmp) / "bench")
        seconds = [float(r["seconds"]) for r in csv.DictReader((Path(tmp) / "bench" / "losses.csv").open())]
    return (seconds[-1] - seconds[0]) / opts.timed_steps


def compare_loops(loops: dict, cfg: Config, opts: BenchOptions) -> list[dict]:
    """Images/s of each loop. Loops take turns over several rounds and each keeps its best round, so a
    slow spell of a shared machine does not land on one side of a ratio."""
    best = {name: float("inf") for name in loops}
    for _ in range(opts.rounds):
        for name, run_round in loops.items():
            best[name] = min(best[name], run_round())
    return [{"loop": name, "images_per_s": cfg.run.batch_size / s} for name, s in best.items()]


def sampling(cfg: Config, classes: list[str], device, opts: BenchOptions) -> list[dict]:
    """Seconds for 16 sprites with each sampler at its default step count (guided, for conditional
    models). On a CPU the first few steps are timed and the rest extrapolated: each step is one
    network call."""
    from model import build, build_scheduler
    from sampling import SampleRequest, sample
    net = build(cfg.model, len(classes)).to(device).eval()
    scheduler = build_scheduler(cfg.model)
    cond = stand_in_conditions(cfg, 16, classes)  # guided: the same shapes as the condition
    cap = 5 if opts.quick else 10 if device.type == "cpu" else 10**6
    rows = []
    for name in opts.samplers:
        n_steps = SAMPLER_STEPS[name]
        k = min(cap, n_steps)
        sample(net, scheduler, SampleRequest(16, cond, cond, sampler=name, steps=2))  # warm-up
        sync(device)
        t0 = time.perf_counter()
        sample(net, scheduler, SampleRequest(16, cond, cond, sampler=name, steps=k))
        sync(device)
        seconds = (time.perf_counter() - t0) * n_steps / k
        rows.append({"sampler": f"{name}-{n_steps}", "seconds": seconds, "images_per_s": 16 / seconds,
                     "timed_steps": k, "extrapolated": k < n_steps})
    return rows


def variant(cfg: Config, name: str) -> Config:
    model, run = config_mod.split(VARIANTS[name])
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **model),
                               run=dataclasses.replace(cfg.run, **run))


def run_bench(cfg: Config, opts: BenchOptions) -> dict:
    import torch

    from dataset import load_folder
    from devices import choose_device
    from model import build
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    device = choose_device(cfg.run.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    data = load_folder(cfg.run.data_dir, cfg.model, log=lambda _: None)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, image_size=data.images.shape[-1]))
    classes, batch = data.classes, cfg.run.batch_size
    result = {"device": name, "torch": torch.__version__, "batch_size": batch,
              "params_M": sum(p.numel() for p in build(cfg.model, len(classes)).parameters()) / 1e6}
    result["peak_gflops"], result["peak_of"] = matmul_peak(device)
    result["gflop_per_step"] = train_flops(cfg, classes, device) / 1e9
    print(f"device: {name}, torch {torch.__version__}; model {result['params_M']:.2f}M params, "
          f"{result['gflop_per_step']:.1f} GFLOP per training step at batch {batch}; peak "
          f"{result['peak_gflops']:.0f} GFLOPS ({result['peak_of']})")
    loops = {"seed (PIL + DataLoader, eager fp32)": lambda: seed_round(cfg, classes, device, opts)}
    for v in opts.variants:
        loops[f"repo: {v}"] = lambda v=v: repo_round(variant(cfg, v), opts)
    rows = compare_loops(loops, cfg, opts)
    for r in rows:
        r["gflops"] = r["images_per_s"] / batch * result["gflop_per_step"]
        r["peak_fraction"] = r["gflops"] / result["peak_gflops"]
        r["vs_seed"] = r["images_per_s"] / rows[0]["images_per_s"]
    result["training"] = rows
    result["batches"] = [sweep_row(cfg, b, result, opts) for b in opts.batch_sweep]
    result["sampling"] = sampling(cfg, classes, device, opts)
    return result


def sweep_row(cfg: Config, batch: int, result: dict, opts: BenchOptions) -> dict:
    """This repo's step at another batch: img/s and MFU (FLOPs scale with the batch)."""
    run = dataclasses.replace(cfg.run, batch_size=batch)
    seconds = repo_round(dataclasses.replace(cfg, run=run), opts)
    gflops = result["gflop_per_step"] * batch / result["batch_size"] / seconds
    return {"batch_size": batch, "images_per_s": batch / seconds, "mfu": gflops / result["peak_gflops"]}


def print_tables(result: dict) -> None:
    print(f"\ntraining, batch {result['batch_size']} ({result['device']}, torch {result['torch']}; MFU "
          f"against {result['peak_gflops']:.0f} GFLOPS, a {result['peak_of']})")
    print(f"{'loop':40s} {'img/s':>8s} {'GFLOPS':>8s} {'MFU':>8s} {'vs seed':>8s}")
    for r in result["training"]:
        print(f"{r['loop']:40s} {r['images_per_s']:8.1f} {r['gflops']:8.1f} "
              f"{r['peak_fraction']:8.1%} {r['vs_seed']:7.2f}x")
    for r in result["batches"]:
        print(f"{'repo: base, batch ' + str(r['batch_size']):40s} {r['images_per_s']:8.1f} "
              f"{'':8s} {r['mfu']:8.1%}")
    print("\nsampling")
    print(f"{'sampler':12s} {'seconds':>9s} {'img/s':>8s}  note")
    for r in result["sampling"]:
        note = f"timed {r['timed_steps']} steps, extrapolated" if r["extrapolated"] else ""
        print(f"{r['sampler']:12s} {r['seconds']:9.1f} {r['images_per_s']:8.2f}  {note}")


CHECK_BATCHES = (16, 64, 256, 512)  # the GPU check's sweep (--quick: 2, 4)


def gpu_check(opts: BenchOptions, data_dir: str) -> None:
    """The prepared GPU check (module docstring). Each stage logs to check.log as it ends, so a run cut
    short still brings back what it measured."""
    import contextlib
    import io

    from config import preset
    out, runs = Path(opts.gpu_check), tempfile.mkdtemp(prefix="gpu-check-")  # runs stay out of DIR
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    log_file = (out / "check.log").open("a")

    def log(line: str) -> None:
        print(line, flush=True)
        log_file.write(f"{time.time() - t0:7.1f}s {line}\n")
        log_file.flush()

    small = dict(data_dir=data_dir) if opts.quick else {}
    base = preset("smoke" if opts.quick else "seed", **small)
    batches = (2, 4) if opts.quick else CHECK_BATCHES
    variants = ("base",) if opts.quick else ("base", "bf16", "compile")
    with contextlib.redirect_stdout(io.StringIO()):
        at16 = run_bench(dataclasses.replace(base, run=dataclasses.replace(base.run, batch_size=batches[0])),
                         dataclasses.replace(opts, variants=variants, batch_sweep=batches, samplers=("dpm",)))
    best = max(at16["batches"], key=lambda r: r["images_per_s"])["batch_size"]
    (out / "bench.json").write_text(json.dumps(at16, indent=2) + "\n")
    log(f"bench on {at16['device']} (torch {at16['torch']}): " + "; ".join(
        f"{r['loop']} {r['images_per_s']:.0f} img/s ({r['vs_seed']:.2f}x)" for r in at16["training"])
        + "; sweep " + ", ".join(f"b{r['batch_size']} {r['images_per_s']:.0f} img/s MFU {r['mfu']:.1%}"
                                 for r in at16["batches"]) + f"; best batch {best}")

    seed = preset("smoke" if opts.quick else "seed", **small, batch_size=best,
                  lr=(1e-3 if opts.quick else 1e-4) * best / 16, compile=not opts.quick,
                  max_steps=2 if opts.quick else 0, sample_every=0, num_samples=0,
                  out_dir=runs, run_name="seed")
    stats = train_and_score(seed, out, "seed", None, opts)
    log(f"seed preset, 500 epochs at batch {best}: {stats['steps']} steps in {stats['seconds']:.1f} s, "
        f"FD-Lite0 {stats['fd_lite0']:.0f} (floor {stats['floor_fd']:.0f})")

    if opts.lpc:
        left = (opts.minutes - (time.time() - t0) / 60) / 3
        walk = character_check(opts, runs, max(left - (0.02 if opts.quick else 1.0), 0.01), out)
        log(f"character preset, {walk['training_seconds'] / 60:.1f} min at batch {walk['batch_size']}: "
            f"{walk['steps']} steps; walk test on unseen combinations: silhouette IoU "
            f"{walk['combo']['model']['iou']:.3f} (copy {walk['combo']['copy']['iou']:.3f}), colour "
            f"{walk['combo']['model']['colour']:.1%}; unseen layers IoU {walk['layer']['model']['iou']:.3f}")

    left = opts.minutes - (time.time() - t0) / 60 - (0.05 if opts.quick else 2.0)  # 2 min to score
    gpu = preset("smoke" if opts.quick else "gpu", **small, max_minutes=max(left, 0.01),
                 condition="text", channels=4, out_dir=runs, run_name="gpu",
                 max_steps=3 if opts.quick else 100000, sample_every=0, num_samples=0,
                 held_out=runs + "/held.txt" if opts.quick else "data/heldout.txt")
    if opts.quick:  # a held-out list of the small data: a few of its images
        from dataset import data_dirs, list_images
        files = [p for root in data_dirs(data_dir) for p, _ in list_images(root)][::7]
        Path(gpu.run.held_out).write_text("".join(f"{f}\n" for f in files))
    stats = train_and_score(gpu, out, "gpu", gpu.run.held_out, opts)
    log(f"gpu preset, {stats['seconds'] / 60:.1f} min: {stats['steps']} steps; held-out test: "
        f"class {stats['captions']['class_accuracy']:.0%}, colour {stats['captions']['colour_accuracy']:.0%}, "
        f"FD-Lite0 {stats['captions']['fd_lite0']:.0f} (floor {stats['captions']['floor_fd']:.0f}), "
        f"memorisation ratio {stats['captions']['memorisation_ratio']:.2f}; unseen prompts: class "
        f"{stats['unseen']['class_accuracy']:.0%}, colour {stats['unseen']['colour_accuracy']:.0%}")
    log(f"done in {(time.time() - t0) / 60:.1f} min; files: " + ", ".join(sorted(p.name for p in out.iterdir()
                                                                           if p.is_file())))


def character_check(opts: BenchOptions, runs: str, minutes: float, out: Path) -> dict:
    """The character preset trained for `minutes` at a GPU's batch (lr scaled), then its walk test on
    held-out characters; writes characters.json."""
    import torch
    import tables
    from config import preset
    from model import load_model
    from trainer import train
    quick = dict(characters=3, block_out_channels=(16, 32, 32),
                 down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                 norm_num_groups=8, attention_head_dim=8, max_steps=2, mixed_precision="no") if opts.quick else {}
    batch = 4 if opts.quick else 128
    cfg = preset("character", data_dir=opts.lpc, batch_size=batch, lr=8e-4 * (batch / 16) ** 0.5,
                 max_minutes=minutes, sample_every=0, num_samples=0, out_dir=runs, run_name="characters",
                 **{"max_steps": 100000, **quick})
    train(cfg, Path(runs) / "characters")
    ckpt = torch.load(Path(runs) / "characters" / "checkpoint.pt", map_location="cpu", weights_only=True)
    m = load_model(Path(runs) / "characters")
    report = tables.walk_test(m, SimpleNamespace(seed=0, sampler="dpm", steps=1 if opts.quick else 0,
                                                 captions=False),
                              opts.lpc, 1 if opts.quick else 20)
    report.pop("example")
    stats = {"steps": ckpt["step"], "training_seconds": ckpt["seconds"], "batch_size": batch, **report}
    (out / "characters.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def train_and_score(cfg: Config, out: Path, name: str, held_out: str | None, opts: BenchOptions) -> dict:
    """Train cfg (timed), then score its export: FD-Lite0 of as many sprites as the item icons
    against them (held_out None), or the held-out test; writes NAME.json and NAME.png."""
    import torch

    from metrics import features, floor_images, frechet, lite0
    from model import load_model
    from sprites import SpriteRequest, generate, labelled_grid
    from trainer import train
    t0 = time.perf_counter()
    train(cfg, Path(cfg.run.out_dir) / name)
    seconds = time.perf_counter() - t0
    m = load_model(Path(cfg.run.out_dir) / name)
    ckpt = torch.load(Path(cfg.run.out_dir) / name / "checkpoint.pt", map_location="cpu", weights_only=True)
    stats = {"steps": ckpt["step"], "seconds": seconds, "training_seconds": ckpt["seconds"],
             "config": config_mod.to_dict(cfg)}
    if held_out is None:
        from dataset import load_folder
        data = load_folder("data/dcss_items" if not opts.quick else cfg.run.data_dir, m.spec,
                           log=lambda _: None).images
        images, _ = generate(m, SpriteRequest(m.condition.defaults(len(data)), steps=2 if opts.quick else 0))
        net = lite0()
        f = features(data, net)
        stats.update(fd_lite0=frechet(features(images, net), f),
                     floor_fd=frechet(features(floor_images(data, len(data)), net), f))
        labelled_grid(images[:64], [None], 0, 2).save(out / f"{name}.png")
    else:
        import tables
        from config import SamplingOptions
        report = tables.held_out_test(m, SamplingOptions(steps=2 if opts.quick else 0), held_out,
                                      cfg.run.data_dir if opts.quick else "data/dcss_items",
                                      6 if opts.quick else 0)
        images = report.pop("unseen_images")
        labelled_grid(images, report["unseen"]["prompts"], len(images) // len(report["unseen"]["prompts"]),
                      2).save(out / f"{name}.png")
        stats.update(report)
    (out / f"{name}.json").write_text(json.dumps(stats, indent=2, default=str) + "\n")
    return stats


@script
def main(argv: list[str]) -> None:
    opts = BenchOptions()
    quick = any(a in ("--quick", "--quick=true", "--quick=1") for a in argv)
    cfg, _ = config_mod.parse_args(argv, __doc__, opts, default_preset="smoke" if quick else "seed")
    for kind, names, known in (("variant", opts.variants, VARIANTS), ("sampler", opts.samplers, SAMPLER_STEPS)):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UserError(f"unknown {kind} {unknown[0]!r}; {kind}s: {', '.join(known)}")
    from model import build_scheduler
    from sampling import samplers_for
    usable = samplers_for(build_scheduler(cfg.model))
    if opts.samplers == tuple(SAMPLER_STEPS):  # the default: every sampler this model has
        opts.samplers = usable
    elif set(opts.samplers) - set(usable):
        raise UserError(f"a rectified-flow model samples with {' and '.join(usable)} only: "
                        f"--samplers={','.join(usable)}")
    if opts.lr_scale:  # linear scaling rule from the reference batch of 16
        cfg.run.lr *= cfg.run.batch_size / 16
    if opts.json:
        json_path(opts.json)
    if opts.quick:
        opts.timed_steps, opts.rounds = min(opts.timed_steps, 3), 1
    if opts.gpu_check:
        return gpu_check(opts, cfg.run.data_dir)
    result = run_bench(cfg, opts)
    print_tables(result)
    if opts.json:
        print()
        write_json(opts.json, result)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
