"""Train a DDPM (diffusers UNet2DModel + DDPMScheduler) on a folder of sprites.

Usage:
    python train.py --preset=smoke                   # a tiny model, 6 steps: seconds
    python train.py --preset=cpu                     # the shipped model's recipe: about 90 min on 2 cores
    python train.py                                  # the seed's reference setup (hours on a CPU)
    python train.py --preset=cpu --data_dir=path/to/my/sprites --run_name=mine
    python train.py --resume --run_name=mine --max_steps=9000   # continue a run exactly where it stopped
    python train.py --preset=cpu --backbone=dit      # a diffusion transformer (DiT) instead of the UNet
    python train.py --preset=vae --run_name=vae      # latent diffusion: first the autoencoder,
    python train.py --preset=cpu --latent=runs/vae   # then the UNet on its latents
    python train.py --preset=prompt --run_name=words # prompts: the items and monsters with their captions
    accelerate launch --num_processes=2 train.py ...          # several GPUs or processes

Writes runs/<run_name>/: config.json (the resolved config), palette.hex (the data's colours),
losses.csv (step, loss, lr, seconds of training), loss.png, samples/step_*.png (a grid from fixed noise),
checkpoint.pt (model, EMA, optimiser, step, config, RNG; written atomically), and at the end model/:
the EMA weights in diffusers save_pretrained format (DDPMPipeline.from_pretrained loads it), with
pixelart.json (config, class names) and palette.hex. Ctrl-C or SIGTERM saves a checkpoint and exits 0;
--resume then continues with exactly the losses of an unbroken run.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import config as config_mod
from config import EPOCHS, Config, UserError, option, script
from dataset import augment, load_folder, make_grid, to_uint8
from model import (EMA, build_scheduler, build_unet, build_vae, calibrate, class_conditions, encode, export,
                   latest_run, load_checkpoint, load_vae, sample, text_conditions, text_table, unet_inputs)
from palette import extract, save_hex

# Keys that may change when a run is resumed: they do not alter the training trajectory.
RESUMABLE = {"max_steps", "max_minutes", "log_every", "sample_every", "ckpt_every", "device", "threads",
             "num_samples"}


@dataclass
class TrainOptions:
    resume: bool = option(False, "continue the latest run under out_dir (or --run_name) where it "
                                 f"stopped; only {', '.join(sorted(RESUMABLE))} may change")
    overwrite: bool = option(False, "start a new run in a folder that already holds one")


class NonFiniteLoss(Exception):
    pass


def setup(argv: list[str]) -> tuple[Config, Path, bool]:
    """The config and folder of a new run, or of the run to resume (its saved config, with only the
    RESUMABLE keys changed). Nothing is overwritten unasked."""
    opts = TrainOptions()
    cfg, given = config_mod.parse_args(argv, __doc__, opts)
    if opts.resume:
        run = Path(cfg.out_dir) / cfg.run_name if cfg.run_name else latest_run(cfg.out_dir)
        if run is None or not (run / "checkpoint.pt").exists():
            raise UserError(f"nothing to resume: no checkpoint in {run or cfg.out_dir + '/*'}")
        changed = set(given) - RESUMABLE - {"resume", "run_name", "out_dir"}
        if changed:
            raise UserError(f"a resumed run keeps its config; only {', '.join(sorted(RESUMABLE))} "
                            f"may change (got {', '.join(sorted(changed))})")
        saved = config_mod.load(run / "config.json")
        return dataclasses.replace(saved, **{k: given[k] for k in RESUMABLE & set(given)}), run, True
    name = cfg.run_name
    if not name:  # a timestamp; two runs started in the same second get their own folders
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{given.get('preset', 'seed')}"
        name = next(n for n in (stamp, *(f"{stamp}-{i}" for i in range(2, 1000)))
                    if not (Path(cfg.out_dir) / n).exists())
    run = Path(cfg.out_dir) / name
    from accelerate import PartialState  # the other processes of a launch find the main one's run
    if (run / "config.json").exists() and not opts.overwrite and PartialState().is_main_process:
        raise UserError(f"run folder {run} already holds a run; use --resume to continue it, "
                        "--overwrite to start it again, or another --run_name")
    return dataclasses.replace(cfg, run_name=name), run, False


def train(cfg: Config, folder: Path, resume: bool = False) -> Path:
    """Train to cfg.max_steps or cfg.max_minutes, resuming from folder's checkpoint if asked. Returns the
    exported model folder, or the run folder when Ctrl-C or SIGTERM stopped the run first."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    acc = make_accelerator(cfg)
    main = acc.is_main_process
    log = tqdm.write if main else (lambda _: None)

    # Data: every image decoded once, at the data's own size unless image_size says otherwise, and
    # kept on the training device; its palette is saved for snapping generated colours.
    data = load_folder(cfg, log=log)
    cfg = dataclasses.replace(cfg, image_size=data.images.shape[-1])
    images = data.images.to(acc.device)
    vae = None
    if cfg.latent:  # latent diffusion: the autoencoder's latents of every image, computed once
        vae = load_vae(cfg.latent).to(acc.device)
        if vae.config.in_channels != cfg.channels:
            raise UserError(f"--latent={cfg.latent} encodes {vae.config.in_channels} channels but this "
                            f"run has channels={cfg.channels}")
        images = encode(vae, images)  # flips then act on latents: a flipped latent decodes to
        # about the flipped sprite, as the autoencoder was trained on flipped sprites too
    num_classes = len(data.classes)
    palette = extract(data.images)
    if main:
        folder.mkdir(parents=True, exist_ok=True)
        config_mod.save(cfg, folder / "config.json")
        save_hex(palette, folder / "palette.hex")

    # Conditioning: each image's label is its class, or for a prompt model its caption's row in a
    # table of text embeddings (encoded once, cached in the run folder) whose last row is the empty
    # caption; dropped labels become that last row, or the "no class" label.
    text = None
    labels, null_label = data.labels, num_classes
    if cfg.prompts != "none":
        texts = sorted(set(data.captions)) + [""]
        labels, null_label = torch.tensor([texts.index(c) for c in data.captions]), len(texts) - 1
        if main:
            text_table(texts, folder / "text.pt")
        acc.wait_for_everyone()
        text = {k: v.to(acc.device) for k, v in text_table(texts, folder / "text.pt").items()}
    labels = labels.to(acc.device)
    conditioned = cfg.conditional or cfg.prompts != "none"

    # Model (the denoiser, or the autoencoder), EMA of its weights, Adam with a linear warm-up, the
    # noise schedule.
    if cfg.backbone == "vae" and acc.num_processes > 1:
        raise UserError("train the autoencoder (backbone=vae) in one process")
    torch.manual_seed(cfg.seed)
    net = build_vae(cfg) if cfg.backbone == "vae" else build_unet(cfg, num_classes)
    ema = EMA(net, cfg.ema_decay)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, fused=acc.device.type == "cuda" or None)
    net, opt = acc.prepare(net, opt)
    warmup = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0)
    ema.model.to(acc.device)
    scheduler = build_scheduler(cfg)
    model_fn = torch.compile(net) if cfg.compile else net
    global_batch = cfg.batch_size * acc.num_processes
    total = cfg.max_steps or math.ceil(EPOCHS * len(images) / global_batch)

    # Resume: weights, optimiser, warm-up, RNG, step and training time come back from the checkpoint.
    parts = {"unet": acc.unwrap_model(net), "ema": ema.model, "optimizer": opt, "lr_scheduler": warmup}
    ckpt_path, losses_path = folder / "checkpoint.pt", folder / "losses.csv"
    step, seconds = 0, 0.0
    if resume:
        step, seconds = restore_checkpoint(ckpt_path, parts, data.classes)
        if main:
            truncate_losses(losses_path, step)
    acc.wait_for_everyone()
    log(f"run {folder}: {len(images)} images of {cfg.image_size}x{cfg.image_size}, {num_classes} "
        f"classes, {sum(p.numel() for p in net.parameters()) / 1e6:.2f}M parameters, "
        f"{acc.num_processes} process(es) x batch {cfg.batch_size} = global batch {global_batch}, "
        f"seed {cfg.seed}, device {acc.device}, steps {step} -> {total}")

    pending: list[tuple[torch.Tensor, float, float]] = []  # (loss on the device, lr, seconds) to log
    with catch_signals() as stop, tqdm(total=total, initial=step, disable=not main, dynamic_ncols=True,
                                       unit="step") as bar:
        while step < total:
            # One step. Its randomness (batch, flips, noise, timesteps, label drops) derives from
            # (seed, step, process) alone, so a resumed run draws exactly what it would have drawn.
            start = time.perf_counter()
            net.train()
            g = torch.Generator(acc.device).manual_seed((cfg.seed * 1_000_003 + step) * 257
                                                        + acc.process_index)
            idx = batch_indices(cfg.seed, len(images), step, cfg.batch_size, acc.num_processes,
                                acc.process_index).to(acc.device)
            x0 = augment(images[idx], cfg.flip_p, g)
            with acc.autocast():
                if cfg.backbone == "vae":
                    loss = autoencoder_loss(acc.unwrap_model(net), x0, g)
                else:
                    loss = diffusion_loss(cfg, model_fn, scheduler, x0, labels[idx] if conditioned else None,
                                          g, null_label, text)
            acc.backward(loss)
            acc.clip_grad_norm_(net.parameters(), 1.0)
            lr = opt.param_groups[0]["lr"]
            opt.step()
            opt.zero_grad(set_to_none=True)
            warmup.step()
            ema.update(acc.unwrap_model(net), step)
            step += 1
            seconds += time.perf_counter() - start
            pending.append((loss.detach(), lr, seconds))

            # Maintenance: the loss log and the time budget (where processes sync anyway), then
            # checkpoint, loss plot and sample grid. Only the main process writes.
            interrupted = any_process(stop.is_set(), acc)
            done = step == total
            if step % cfg.log_every == 0 or step % cfg.ckpt_every == 0 or done or interrupted:
                last_loss = flush_losses(pending, step, acc, losses_path)
                if cfg.max_minutes and any_process(seconds >= cfg.max_minutes * 60, acc):
                    log(f"time budget of {cfg.max_minutes:g} min reached at step {step}")
                    done = True
                bar.set_postfix(loss=f"{last_loss:.4f}", min=f"{seconds / 60:.1f}")
                bar.update(step - bar.n)
            if main and (step % cfg.ckpt_every == 0 or done or interrupted):
                error = save_checkpoint(ckpt_path, parts, step=step, seconds=seconds,
                                        config=config_mod.to_dict(cfg), classes=data.classes)
                if error:
                    tqdm.write(f"warning: could not save a checkpoint at step {step} ({error}); the "
                               "previous checkpoint is kept", file=sys.stderr)
                plot_losses(losses_path, folder / "loss.png")
            if (main and cfg.num_samples and cfg.backbone != "vae"
                    and (done or (cfg.sample_every and step % cfg.sample_every == 0))):
                grid = folder / "samples" / f"step_{step:07d}.png"
                save_grid(ema.model, scheduler, cfg, data.classes, grid, vae)
            if interrupted:
                bar.close()  # before the message, so that it gets a line of its own
                log(f"interrupted at step {step}: checkpoint saved; continue with `python train.py "
                    f"--resume --run_name={folder.name} --out_dir={folder.parent}`")
                return folder
            if done:
                break

    # Export: the EMA weights in diffusers format, with our config, class names and palette. An
    # autoencoder is scaled to give latents of unit variance, and measured: what it loses is lost by
    # every latent model trained on it.
    model_dir = folder / "model"
    if main:
        extra = {}
        if cfg.backbone == "vae":
            from evaluate import reconstruction
            calibrate(ema.model, data.images)
            extra["reconstruction"] = reconstruction(ema.model, data.images, palette)
            log("reconstruction of the data: {exact:.1%} of pixels exact after palette snapping, "
                "FD-Lite0 {fd_lite0:.0f}".format(**extra["reconstruction"]))
        try:
            export(ema.model, scheduler, cfg, data.classes, palette, model_dir, vae, **extra)
        except OSError as e:
            raise UserError(f"could not write the model to {model_dir} ({e.strerror or e}); the "
                            "checkpoint is kept: free some space and run train.py --resume") from None
        log(f"done: {step} steps in {seconds / 60:.1f} min of training; model in {model_dir}, "
            f"samples in {folder / 'samples'}")
    acc.wait_for_everyone()  # every process returns once the model is written
    return model_dir


# ----------------------------------------------------------------------------- the step's parts

def batch_indices(seed: int, n: int, step: int, batch: int, world: int, rank: int) -> torch.Tensor:
    """This process's slice of the step's batch: positions in an endless stream of per-epoch shuffles."""
    start = (step * world + rank) * batch
    pos = torch.arange(start, start + batch)
    epochs = pos // n
    idx = torch.empty_like(pos)
    for e in epochs.unique().tolist():
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + e))
        mask = epochs == e
        idx[mask] = perm[pos[mask] % n]
    return idx


def drop_labels(labels: torch.Tensor, p: float, null_label: int, g: torch.Generator) -> torch.Tensor:
    """Replace each label by the null label ("no class", the empty caption) with probability p, so
    that one model learns the conditional and the unconditional prediction (classifier-free guidance)."""
    drop = torch.rand(labels.shape, generator=g, device=g.device).to(labels.device) < p
    return torch.where(drop, torch.full_like(labels, null_label), labels)


def diffusion_loss(cfg: Config, unet, scheduler, x0: torch.Tensor, labels: torch.Tensor | None,
                   g: torch.Generator, null_label: int, text: dict | None = None) -> torch.Tensor:
    """Noise the clean batch at random timesteps and regress the model on the config's target, with
    min-SNR-gamma weighting (Hang et al. 2023) when cfg.min_snr_gamma is set."""
    noise = torch.randn(x0.shape, generator=g, device=g.device).to(x0.device)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=g,
                      device=g.device).to(x0.device)
    noisy = scheduler.add_noise(x0, noise, t)
    cond = {}
    if labels is not None:
        cond = unet_inputs(cfg, drop_labels(labels, cfg.cond_dropout, null_label, g), text)
    pred = unet(noisy, t, **cond).sample.float()
    target = {"epsilon": noise, "v_prediction": scheduler.get_velocity(x0, noise, t),
              "sample": x0}[cfg.prediction_type]
    per_image = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
    if not cfg.min_snr_gamma:
        return per_image.mean()
    a = scheduler.alphas_cumprod.to(x0.device)[t]
    snr = a / (1 - a)
    clipped = snr.clamp(max=cfg.min_snr_gamma)
    weight = {"epsilon": clipped / snr, "v_prediction": clipped / (snr + 1), "sample": clipped}
    return (per_image * weight[cfg.prediction_type]).mean()


KL_WEIGHT = 1e-6  # Stable Diffusion's autoencoder's: latents stay close to deterministic


def autoencoder_loss(vae, x0: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Reconstruction error of a latent drawn from the encoder's posterior, plus a light KL term that
    keeps the latents near a unit Gaussian."""
    posterior = vae.encode(x0).latent_dist
    recon = vae.decode(posterior.sample(generator=g)).sample
    return F.mse_loss(recon.float(), x0) + KL_WEIGHT * posterior.kl().mean()


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: Path, parts: dict, **extra) -> str:
    """Write every part's state, `extra` and the RNG state to path atomically (temp file, then rename):
    a crash or kill -9 mid-write, or a full disk, leaves the previous checkpoint intact. Returns ''
    or, when the disk refused, why."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    state = {**{k: v.state_dict() for k, v in parts.items()}, **extra, "rng": rng}
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
        return ""
    except OSError as e:
        tmp.unlink(missing_ok=True)
        return e.strerror or str(e)


def restore_checkpoint(path: Path, parts: dict, classes: list[str]) -> tuple[int, float]:
    """Load what save_checkpoint wrote back into the parts and the RNG; returns (step, seconds)."""
    ckpt = load_checkpoint(path)
    if ckpt["classes"] != classes:
        raise UserError(f"the data's classes {classes} differ from the run's {ckpt['classes']}")
    for k, v in parts.items():
        v.load_state_dict(ckpt[k])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if "cuda" in ckpt["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    return ckpt["step"], ckpt["seconds"]


# ----------------------------------------------------------------------------- logs and grids

def flush_losses(pending: list, step: int, acc, path: Path) -> float:
    """Append the pending losses (mean over processes) to losses.csv; stop on a NaN or inf. Returns the
    last loss."""
    losses = acc.reduce(torch.stack([p[0] for p in pending]), "mean").tolist()
    first = step - len(losses) + 1
    if acc.is_main_process:
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["step", "loss", "lr", "seconds"])
            w.writerows([first + i, f"{v:.6f}", f"{lr:.3g}", f"{s:.3f}"]
                        for i, (v, (_, lr, s)) in enumerate(zip(losses, pending)))
    pending.clear()
    bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    if bad is not None:
        raise NonFiniteLoss(f"the loss became {losses[bad]} at step {first + bad}; stopped without "
                            "saving, so checkpoint.pt still holds the last good state (try a lower --lr)")
    return losses[-1]


def truncate_losses(path: Path, step: int) -> None:
    """On resume, forget losses logged after the checkpoint: they will be computed again."""
    if path.exists():
        rows = list(csv.reader(path.open()))
        with path.open("w", newline="") as f:
            csv.writer(f).writerows([rows[0], *(r for r in rows[1:] if int(r[0]) <= step)])


def plot_losses(path: Path, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = list(csv.DictReader(path.open()))
    steps = [int(r["step"]) for r in rows]
    loss = torch.tensor([float(r["loss"]) for r in rows])
    k = max(1, len(loss) // 50)  # a running mean shows the trend through per-step noise
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, loss, alpha=0.3, lw=0.8, label="per step")
    ax.plot(steps[k - 1:], loss.unfold(0, k, 1).mean(1), lw=1.5, label=f"mean of {k}")
    ax.set(xlabel="step", ylabel="loss", yscale="log", title=out.parent.name)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def save_grid(unet, scheduler, cfg: Config, classes: list[str], out: Path, vae=None) -> None:
    """A grid from fixed noise (seeded) with the default sampler, so grids of successive steps
    compare; conditional models show the classes in turn (prompt models: the class names as prompts)."""
    wanted = torch.arange(cfg.num_samples) % len(classes)
    cond, null = {}, {}
    if cfg.conditional:
        cond, null = class_conditions(wanted, len(classes))
    elif cfg.prompts != "none":
        cond, null = text_conditions(cfg, [classes[i] for i in wanted])
    out.parent.mkdir(exist_ok=True)
    x = sample(unet, scheduler, cfg.num_samples, cond, null, seed=cfg.seed, vae=vae)
    make_grid(to_uint8(x)).save(out)


# ----------------------------------------------------------------------------- processes and signals

def make_accelerator(cfg: Config):
    from accelerate import Accelerator  # imported here: argument errors stay fast
    from accelerate.state import AcceleratorState
    # One process may train several times (tests, bench.py) with other precisions; the distributed
    # set-up (PartialState) is kept.
    AcceleratorState._reset_state()
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA GPU is visible; use --device=cpu or auto")
    cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    return Accelerator(mixed_precision=cfg.mixed_precision, cpu=cpu)


def any_process(flag: bool, acc) -> bool:
    """Every process must stop at the same step; with several, agree on it (max of the flags)."""
    if acc.num_processes == 1:
        return flag
    return bool(acc.reduce(torch.tensor(float(flag), device=acc.device), "max").item())


@contextlib.contextmanager
def catch_signals():
    """SIGINT / SIGTERM set an event instead of killing the process: the loop checkpoints and stops at
    the end of the current step. The previous handlers come back afterwards."""
    stop = threading.Event()
    old = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@script
def main(argv: list[str]) -> int:
    cfg, folder, resume = setup(argv)
    try:
        train(cfg, folder, resume)
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
