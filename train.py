"""Train a DDPM (diffusers UNet2DModel + DDPMScheduler, MSE on the predicted noise) on a folder of sprites.

Usage:
    python train.py                                  # reference setup on the shipped icons (data/dcss_items)
    python train.py --preset=smoke                   # a tiny model, a few steps: seconds
    python train.py --data_dir=path/to/my/sprites --run_name=mine
    python train.py --resume [--run_name=mine] [--max_steps=20000]   # continue the latest (or named) run
    accelerate launch --num_processes=2 train.py ...                  # several GPUs or processes

Writes runs/<run_name>/: config.json, losses.csv, loss.png, samples/step_*.png (fixed noise),
checkpoint.pt (model, EMA, optimiser, step, config, RNG; atomic), and at the end model/ (the EMA weights
in diffusers save_pretrained format, loadable with DDPMPipeline.from_pretrained). Ctrl-C or SIGTERM
saves a checkpoint and exits 0; --resume then continues with exactly the losses of an unbroken run.
"""
from __future__ import annotations

import contextlib
import csv
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import config as config_mod
from config import Config, UserError
from dataset import PixelData, augment, load_folder, make_grid, to_uint8
from model import EMA, build_scheduler, build_unet, export, latest_run, load_checkpoint, \
    make_sampler, sample

# Keys that may change when a run is resumed: they do not alter the training trajectory.
RESUMABLE = {"epochs", "max_steps", "max_minutes", "log_every", "sample_every", "ckpt_every", "device",
             "threads", "num_samples", "sample_steps", "sampler"}


@dataclass
class TrainOptions:
    resume: bool = False  # continue the latest run under out_dir, or --run_name
    overwrite: bool = False  # allow reusing an existing run folder for a new run


class NonFiniteLoss(Exception):
    pass


# ----------------------------------------------------------------------------- setup

def setup(argv: list[str]) -> tuple[Config, TrainOptions, Path]:
    """Resolve the config (new run or resumed one) and the run folder; nothing is overwritten unasked."""
    opts = TrainOptions()
    pairs = config_mod.split_argv(argv)
    if pairs.get("resume", "false").lower() in ("1", "true", "yes", "on"):
        return resume_setup(pairs, opts)
    cfg = config_mod.parse_args(argv, opts)
    name = cfg.run_name or time.strftime("%Y%m%d-%H%M%S") + f"-{pairs.get('preset', 'seed')}"
    run = Path(cfg.out_dir) / name
    if (run / "config.json").exists() and not opts.overwrite:
        raise UserError(f"run folder {run} already holds a run; use --resume to continue it, "
                        "--overwrite to start it again, or another --run_name")
    cfg.run_name = name
    return cfg, opts, run


def resume_setup(pairs: dict[str, str], opts: TrainOptions) -> tuple[Config, TrainOptions, Path]:
    """The run to resume (--run_name under --out_dir, else the latest) with its saved config; only
    keys that leave the training trajectory unchanged may be overridden."""
    where = config_mod.Config()
    locate = {k: v for k, v in pairs.items() if k in ("run_name", "out_dir")}
    config_mod.apply_overrides([where], locate)
    run = Path(where.out_dir) / where.run_name if where.run_name else latest_run(where.out_dir)
    if run is None or not (run / "checkpoint.pt").exists():
        raise UserError(f"nothing to resume: no checkpoint in {run or where.out_dir + '/*'}")
    changed = set(pairs) - RESUMABLE - {"resume", "run_name", "out_dir"}
    if changed:
        raise UserError(f"a resumed run keeps its config; only {', '.join(sorted(RESUMABLE))} "
                        f"may change (got {', '.join(sorted(changed))})")
    cfg = config_mod.load(run / "config.json")
    config_mod.apply_overrides([cfg, opts], {k: v for k, v in pairs.items() if k not in locate})
    config_mod.validate(cfg)
    return cfg, opts, run


def make_accelerator(cfg: Config):
    from accelerate import Accelerator  # imported here: argument errors stay fast
    from accelerate.state import AcceleratorState
    # One process may train several times (tests, bench.py) with other precisions; the distributed
    # set-up (PartialState) is kept.
    AcceleratorState._reset_state()
    cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA GPU is visible; use --device=cpu or auto")
    return Accelerator(mixed_precision=cfg.mixed_precision, cpu=cpu)


def lr_lambda(cfg: Config):
    """Linear warm-up to cfg.lr over warmup_steps, then constant (the seed's recipe has no decay)."""
    return lambda step: min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0


def make_optimizer(cfg: Config, params, fused: bool) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)


def total_steps(cfg: Config, n_images: int, global_batch: int) -> int:
    """max_steps, or as many optimiser steps as `epochs` passes over the data take."""
    return cfg.max_steps or math.ceil(cfg.epochs * n_images / global_batch)


# ----------------------------------------------------------------------------- the training step

def step_generator(cfg: Config, micro: int, rank: int, device) -> torch.Generator:
    """Randomness of one micro-batch (order, flips, noise, timesteps, label drops) derives from
    (seed, micro-batch index, process) alone, so a resumed run draws exactly what it would have."""
    return torch.Generator(device).manual_seed((cfg.seed * 1_000_003 + micro) * 257 + rank)


def batch_indices(cfg: Config, n: int, micro: int, batch: int, world: int, rank: int) -> torch.Tensor:
    """This process's slice of the micro-batch: positions in an endless stream of per-epoch shuffles."""
    start = (micro * world + rank) * batch
    pos = torch.arange(start, start + batch)
    epochs = pos // n
    idx = torch.empty_like(pos)
    for e in epochs.unique().tolist():
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 7919 + e))
        mask = epochs == e
        idx[mask] = perm[pos[mask] % n]
    return idx


def loss_weights(cfg: Config, alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor | None:
    """Min-SNR-gamma weighting (Hang et al. 2023), expressed for the chosen prediction target."""
    if cfg.loss_weighting == "none":
        return None
    snr = alphas_cumprod[t] / (1 - alphas_cumprod[t])
    clipped = snr.clamp(max=cfg.min_snr_gamma)
    return {"epsilon": clipped / snr, "v_prediction": clipped / (snr + 1), "sample": clipped}[
        cfg.prediction_type]


def drop_labels(labels: torch.Tensor, p: float, num_classes: int, g: torch.Generator) -> torch.Tensor:
    """Replace each label by the "no class" label (num_classes) with probability p, so that one model
    learns both the conditional and the unconditional prediction (classifier-free guidance)."""
    drop = torch.rand(labels.shape, generator=g, device=g.device).to(labels.device) < p
    return torch.where(drop, torch.full_like(labels, num_classes), labels)


def diffusion_loss(cfg: Config, unet, scheduler, x0: torch.Tensor, labels: torch.Tensor | None,
                   g: torch.Generator, num_classes: int) -> torch.Tensor:
    """Noise the clean batch at random timesteps and regress the model on the config's target."""
    noise = torch.randn(x0.shape, generator=g, device=g.device).to(x0.device)
    t = torch.randint(0, cfg.num_train_timesteps, (x0.shape[0],), generator=g,
                      device=g.device).to(x0.device)
    noisy = scheduler.add_noise(x0, noise, t)
    if labels is not None:
        labels = drop_labels(labels, cfg.class_dropout, num_classes, g)
    if cfg.channels_last:
        noisy = noisy.contiguous(memory_format=torch.channels_last)
    pred = unet(noisy, t, class_labels=labels).sample.float()
    target = {"epsilon": noise, "v_prediction": scheduler.get_velocity(x0, noise, t),
              "sample": x0}[cfg.prediction_type]
    per_image = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
    w = loss_weights(cfg, scheduler.alphas_cumprod.to(x0.device), t)
    return per_image.mean() if w is None else (per_image * w).mean()


# ----------------------------------------------------------------------------- the run

class Run:
    """State and files of one training run; the main process writes, every process trains."""

    def __init__(self, cfg: Config, folder: Path, data: PixelData, acc):
        self.cfg, self.folder, self.data, self.acc = cfg, folder, data, acc
        self.num_classes = len(data.classes)
        torch.manual_seed(cfg.seed)  # model init (and dropout) from the global generator
        unet = build_unet(cfg, self.num_classes)
        if cfg.channels_last:
            unet = unet.to(memory_format=torch.channels_last)
        self.ema = EMA(unet, cfg.ema_decay)
        self.scheduler = build_scheduler(cfg)
        opt = make_optimizer(cfg, unet.parameters(), fused=acc.device.type == "cuda")
        self.unet, self.opt = acc.prepare(unet, opt)
        self.lr_sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg))
        self.ema.model.to(acc.device)
        self.model_fn = torch.compile(self.unet) if cfg.compile else self.unet
        self.images = data.images.to(acc.device)  # the whole dataset lives on the training device
        self.labels = data.labels.to(acc.device)
        self.step = 0
        self.seconds = 0.0  # time spent in training steps (not in sample grids or checkpoints)
        self.global_batch = cfg.batch_size * cfg.grad_accum * acc.num_processes
        self.total = total_steps(cfg, len(data.images), self.global_batch)
        self.pending: list[torch.Tensor] = []  # losses not yet written (kept on device: no sync)
        self.last_loss = float("nan")

    # --- checkpoints
    def state(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"step": self.step, "seconds": self.seconds,
                "unet": self.acc.unwrap_model(self.unet).state_dict(),
                "ema": self.ema.model.state_dict(), "optimizer": self.opt.state_dict(),
                "lr_scheduler": self.lr_sched.state_dict(),
                "config": config_mod.to_dict(self.cfg), "classes": self.data.classes, "rng": rng}

    def save_checkpoint(self) -> bool:
        """Write checkpoint.pt atomically (temp file, then rename): a crash or kill -9 mid-write, or
        a full disk, leaves the previous checkpoint intact. Returns whether it was written."""
        if not self.acc.is_main_process:
            return True
        path, tmp = self.folder / "checkpoint.pt", self.folder / "checkpoint.pt.tmp"
        try:
            torch.save(self.state(), tmp)
            os.replace(tmp, path)
            return True
        except OSError as e:
            tmp.unlink(missing_ok=True)
            self.log(f"warning: could not save a checkpoint at step {self.step} ({e.strerror or e}); "
                     "the previous checkpoint is kept", warning=True)
            return False

    def restore(self) -> None:
        ckpt = load_checkpoint(self.folder / "checkpoint.pt")
        if ckpt["classes"] != self.data.classes:
            raise UserError(f"the data's classes {self.data.classes} differ from the run's "
                            f"{ckpt['classes']}")
        self.acc.unwrap_model(self.unet).load_state_dict(ckpt["unet"])
        self.ema.model.load_state_dict(ckpt["ema"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.step = ckpt["step"]
        self.seconds = ckpt.get("seconds", 0.0)
        self.lr_sched.load_state_dict(ckpt["lr_scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if "cuda" in ckpt["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        self.truncate_losses()

    def out_of_time(self) -> bool:
        return bool(self.cfg.max_minutes) and self.seconds >= self.cfg.max_minutes * 60

    # --- logs
    def log(self, msg: str, warning: bool = False) -> None:
        if self.acc.is_main_process:
            tqdm.write(msg, file=sys.stderr if warning else sys.stdout)

    def truncate_losses(self) -> None:
        """On resume, forget losses logged after the checkpoint: they will be recomputed."""
        path = self.folder / "losses.csv"
        if self.acc.is_main_process and path.exists():
            rows = list(csv.reader(path.open()))
            keep = [r for r in rows[1:] if int(r[0]) <= self.step]
            with path.open("w", newline="") as f:
                csv.writer(f).writerows([rows[0], *keep])

    def flush_losses(self) -> None:
        """Write pending losses (mean over processes) to losses.csv; stop on a NaN or inf."""
        if not self.pending:
            return
        losses = self.acc.reduce(torch.stack(self.pending), "mean").tolist()
        first = self.step - len(losses) + 1
        self.pending.clear()
        bad = next((first + i for i, v in enumerate(losses) if not math.isfinite(v)), None)
        if self.acc.is_main_process:
            path = self.folder / "losses.csv"
            new = not path.exists()
            with path.open("a", newline="") as f:
                w = csv.writer(f)
                if new:
                    w.writerow(["step", "loss", "lr"])
                lr = self.opt.param_groups[0]["lr"]
                w.writerows([first + i, f"{v:.6f}", f"{lr:.3g}"] for i, v in enumerate(losses))
        if bad is not None:
            raise NonFiniteLoss(f"the loss became {losses[bad - first]} at step {bad}; stopped "
                                "without saving, so checkpoint.pt still holds the last good state "
                                "(try a lower --lr or --grad_clip=1)")
        self.last_loss = losses[-1]

    def plot_losses(self) -> None:
        if not self.acc.is_main_process or not (self.folder / "losses.csv").exists():
            return
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        rows = list(csv.DictReader((self.folder / "losses.csv").open()))
        steps = [int(r["step"]) for r in rows]
        loss = torch.tensor([float(r["loss"]) for r in rows])
        k = max(1, len(loss) // 50)  # a running mean shows the trend through per-step noise
        smooth = loss.unfold(0, k, 1).mean(1) if len(loss) >= k else loss
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(steps, loss, alpha=0.3, lw=0.8, label="per step")
        ax.plot(steps[k - 1:], smooth, lw=1.5, label=f"mean of {k}")
        ax.set(xlabel="step", ylabel="loss", yscale="log", title=f"{self.folder.name}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(self.folder / "loss.png", dpi=100)
        plt.close(fig)

    def save_samples(self) -> None:
        """A grid from fixed noise (seeded), so grids of successive steps are comparable."""
        if not self.acc.is_main_process:
            return
        cfg, n = self.cfg, self.cfg.num_samples
        labels = (torch.arange(n) % self.num_classes) if cfg.conditional else None
        sampler = make_sampler(self.scheduler, cfg.sampler, cfg.sample_steps)
        x = sample(self.ema.model, sampler, n, seed=cfg.seed, labels=labels)
        out = self.folder / "samples" / f"step_{self.step:07d}.png"
        out.parent.mkdir(exist_ok=True)
        make_grid(to_uint8(x)).save(out)

    # --- training
    def train_step(self) -> None:
        cfg, acc = self.cfg, self.acc
        self.unet.train()
        total = torch.zeros((), device=acc.device)
        for k in range(cfg.grad_accum):
            micro = self.step * cfg.grad_accum + k
            g = step_generator(cfg, micro, acc.process_index, acc.device)
            idx = batch_indices(cfg, len(self.images), micro, cfg.batch_size, acc.num_processes,
                                acc.process_index).to(acc.device)
            x0 = augment(self.images[idx], cfg.flip_p, g)
            labels = self.labels[idx] if cfg.conditional else None
            last = k == cfg.grad_accum - 1
            with acc.autocast(), (acc.no_sync(self.unet) if not last else contextlib.nullcontext()):
                loss = diffusion_loss(cfg, self.model_fn, self.scheduler, x0, labels, g,
                                      self.num_classes)
                acc.backward(loss / cfg.grad_accum)
            total += loss.detach() / cfg.grad_accum
        if cfg.grad_clip:
            acc.clip_grad_norm_(self.unet.parameters(), cfg.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.lr_sched.step()
        self.ema.update(acc.unwrap_model(self.unet), self.step)
        self.step += 1
        self.pending.append(total)


def train(cfg: Config, opts: TrainOptions, folder: Path) -> Path:
    """Train to cfg's step count (resuming if asked); returns the exported model folder."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    acc = make_accelerator(cfg)
    data = load_folder(cfg, log=print if acc.is_main_process else lambda _: None)
    if acc.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        config_mod.save(cfg, folder / "config.json")
    run = Run(cfg, folder, data, acc)
    if opts.resume:
        run.restore()
    acc.wait_for_everyone()
    run.log(f"run {folder}: {len(data.images)} images, {len(data.classes)} classes, "
            f"{sum(p.numel() for p in run.unet.parameters()) / 1e6:.2f}M parameters, "
            f"{acc.num_processes} process(es) x batch {cfg.batch_size} x accum {cfg.grad_accum} = "
            f"global batch {run.global_batch}, seed {cfg.seed} (+ process index), device {acc.device}, "
            f"steps {run.step} -> {run.total}")
    stop = _install_signal_handlers()
    bar = tqdm(total=run.total, initial=run.step, disable=not acc.is_main_process,
               dynamic_ncols=True, unit="step")
    tick, tick_step = time.perf_counter(), run.step
    try:
        while run.step < run.total:
            start = time.perf_counter()
            run.train_step()
            run.seconds += time.perf_counter() - start
            at = run.step
            if at % cfg.log_every == 0 or at == run.total or at % cfg.ckpt_every == 0:
                run.flush_losses()
                if cfg.max_minutes and _any(run.out_of_time(), acc):  # where processes sync anyway
                    run.log(f"time budget of {cfg.max_minutes:g} min reached at step {at}")
                    break
                now = time.perf_counter()
                ips = (at - tick_step) * run.global_batch / max(now - tick, 1e-9)
                tick, tick_step = now, at
                bar.set_postfix(loss=f"{run.last_loss:.4f}", img_s=f"{ips:.1f}")
                bar.update(at - bar.n)
            if at % cfg.ckpt_every == 0 and at < run.total:
                run.save_checkpoint()
                run.plot_losses()
            if cfg.sample_every and at % cfg.sample_every == 0 and at < run.total:
                run.save_samples()
                tick = time.perf_counter()  # images/s counts training only
            if _any(stop["flag"], acc):
                run.flush_losses()
                run.save_checkpoint()
                run.plot_losses()
                run.log(f"interrupted at step {at}: checkpoint saved; continue with "
                        f"`python train.py --resume --run_name={folder.name} --out_dir={cfg.out_dir}`")
                return folder
    finally:
        bar.close()
    run.flush_losses()
    run.save_checkpoint()
    run.plot_losses()
    run.save_samples()
    model_dir = folder / "model"
    if acc.is_main_process:
        try:
            export(run.ema.model, run.scheduler, cfg, data.classes, model_dir)
        except OSError as e:
            raise UserError(f"could not write the model to {model_dir} ({e.strerror or e}); the "
                            "checkpoint is kept: free some space and run train.py --resume") from None
        run.log(f"done: {run.step} steps in {run.seconds / 60:.1f} min of training; model in "
                f"{model_dir}, samples in {folder / 'samples'}")
    return model_dir


def _install_signal_handlers() -> dict:
    """SIGINT / SIGTERM set a flag; the loop saves a checkpoint at the end of the current step."""
    stop = {"flag": False}

    def handler(signum, _frame):
        stop["flag"] = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    return stop


def _any(flag: bool, acc) -> bool:
    """Every process must stop at the same step; with several, agree on it (max of the flags)."""
    if acc.num_processes == 1:
        return flag
    flag = torch.tensor(float(flag), device=acc.device)
    return bool(acc.reduce(flag, "max").item())


def main(argv: list[str]) -> int:
    try:
        cfg, opts, folder = setup(argv)
        train(cfg, opts, folder)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
