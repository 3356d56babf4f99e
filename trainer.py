"""The training loop, one generic function, and the objectives it trains: denoising diffusion and the
autoencoder of latent diffusion. The loop never asks what it trains: an objective builds the network
and gives the loss of a batch, a preview picture and the export.

Usage:
    cfg = preset("smoke", data_dir="data/dcss_items")
    model_dir = train(cfg, Path("runs/x"))             # a new run
    train(load_config("runs/x/config.json"), Path("runs/x"), resume=True)   # carried on, exactly

A run folder holds config.json (the resolved model and run specs), palette.hex, losses.csv (step, loss,
lr, seconds of training), loss.png, samples/step_*.png, checkpoint.pt (model, EMA, optimiser, step,
config, RNG; written atomically) and at the end model/ (the export). Ctrl-C or SIGTERM saves a
checkpoint and returns the run folder; resuming then gives exactly the losses of an unbroken run.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import config as config_mod
from characters import training_data
from conditioning import for_model
from config import EPOCHS, Config, RunSpec, UserError
from devices import choose_device, compiled, configure, cpu_threads, precision
from dataset import PixelData, augment, load_folder, make_grid, read_list, to_uint8
from model import (EMA, add_noise, build, build_scheduler, calibrate, decode, encode, load_checkpoint,
                   load_vae, save_denoiser, save_meta)
from palette import extract, load_palette, prompt_palette, recoloured, save_hex
from sampling import SampleRequest, sample


class NonFiniteLoss(Exception):
    pass


# ----------------------------------------------------------------------------- objectives

class Diffusion:
    """Denoising diffusion (DDPM's forward process): the network regresses the spec's target (noise,
    v or the clean image) on images noised at random timesteps, with min-SNR-gamma weighting when the
    run asks for it. A latent model learns the latents of its autoencoder."""

    def __init__(self, cfg: Config, data: PixelData, device: torch.device, num_processes: int):
        self.cfg, self.spec, self.run = cfg, cfg.model, cfg.run
        self.condition = for_model(cfg.model, data.classes, short_captions=cfg.run.short_captions)
        self.scheduler = build_scheduler(cfg.model)
        self.vae = None
        if cfg.model.latent:
            self.vae = load_vae(cfg.model.latent).to(device)
            if self.vae.config.in_channels != cfg.model.channels:
                raise UserError(f"--latent={cfg.model.latent} encodes {self.vae.config.in_channels} "
                                f"channels but this run has channels={cfg.model.channels}")

    trained: dict = {}  # modules trained beside the network (checkpointed, not exported)

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """What the network learns: the images, or a latent model's latents of them (computed once;
        flips then act on latents: a flipped latent decodes to about the flipped sprite)."""
        return images if self.vae is None else encode(self.vae, images)

    def loss(self, net, x0: torch.Tensor, labels: torch.Tensor, g: torch.Generator,
             idx: torch.Tensor) -> torch.Tensor:
        """The loss of a batch: x0 the images (augmented), labels their conditions, idx their
        indices in the data."""
        sched, spec = self.scheduler, self.spec
        noise = torch.randn(x0.shape, generator=g, device=g.device).to(x0.device)
        t = torch.randint(0, sched.config.num_train_timesteps, (x0.shape[0],), generator=g,
                          device=g.device).to(x0.device)
        cond = self.condition.inputs(self.condition.drop(labels, self.run.cond_dropout, g))
        pred = net(sched.add_noise(x0, noise, t), t, **cond).sample.float()
        target = {"epsilon": noise, "v_prediction": sched.get_velocity(x0, noise, t),
                  "sample": x0}[spec.prediction_type]
        per_image = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
        if not self.run.min_snr_gamma:
            return per_image.mean()
        a = sched.alphas_cumprod.to(x0.device)[t]
        snr = a / (1 - a)
        clipped = snr.clamp(max=self.run.min_snr_gamma)
        weight = {"epsilon": clipped / snr, "v_prediction": clipped / (snr + 1), "sample": clipped}
        return (per_image * weight[spec.prediction_type]).mean()

    def preview(self, net, data: PixelData, out: Path) -> None:
        """A grid from fixed noise (seeded) with the default sampler, so grids of successive steps
        compare; a conditional model shows its default conditions (classes in turn, or captions)."""
        n = self.run.num_samples
        cond, null = self.condition.encode(self.condition.defaults(n))
        x = sample(net, self.scheduler, SampleRequest(n, cond, null, seed=self.run.seed), self.vae)
        make_grid(to_uint8(x)).save(out)

    def export(self, net, data: PixelData, palette: torch.Tensor, path: Path, steps: int) -> None:
        save_denoiser(net, self.scheduler, path)
        if self.vae is not None:
            self.vae.save_pretrained(path / "vae", safe_serialization=True)
        save_meta(self.spec, data.classes, palette, path, self.condition.captions,
                  data_dir=self.run.data_dir, steps=steps)


class Flow(Diffusion):
    """Rectified flow (Liu et al. 2022; flow matching, Lipman et al. 2022): x_s = (1 - s) x0 + s noise
    on the straight line from the image to the noise, the network regresses the velocity noise - x0;
    s is logit-normal (SD3's: the middle of the path, where the velocity is hardest to tell, is drawn
    most). The network sees t = s T, as a diffusion model sees its timestep; samplers take its output
    as the flow (sampling.make_sampler)."""

    def loss(self, net, x0: torch.Tensor, labels: torch.Tensor, g: torch.Generator,
             idx: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x0.shape, generator=g, device=g.device).to(x0.device)
        s = torch.sigmoid(torch.randn((x0.shape[0],), generator=g, device=g.device)).to(x0.device)
        t = s * self.scheduler.config.num_train_timesteps
        cond = self.condition.inputs(self.condition.drop(labels, self.run.cond_dropout, g))
        pred = net(add_noise(self.scheduler, x0, noise, t), t, **cond).sample.float()
        return F.mse_loss(pred, noise - x0)


class Aligned:
    """REPA (Yu et al. 2024) around a diffusion or flow objective: its loss plus `weight` x (1 - the
    cosine) between the UNet's middle features (averaged over positions, through a two-layer MLP
    trained with it and not exported) and EfficientNet-Lite1's pooled features of the clean sprite
    (the mean of the sprite's and its mirror image's, so that a flip keeps its target), computed
    once for every image of the data."""

    def __init__(self, inner: Diffusion, images: torch.Tensor, weight: float, device: torch.device,
                 num_processes: int):
        from metrics import features, lite
        if num_processes > 1:  # the projector is not wrapped for several processes
            raise UserError("train with --repa in one process")
        self.inner, self.weight = inner, weight
        self.condition, self.inputs, self.preview, self.export = (inner.condition, inner.inputs,
                                                                  inner.preview, inner.export)
        f = (features(images, lite(1)) + features(images.flip(-1), lite(1))) / 2
        self.targets = F.normalize(f.float(), dim=1).to(device)
        width = inner.spec.block_out_channels[-1]
        torch.manual_seed(inner.run.seed)
        self.projector = torch.nn.Sequential(torch.nn.Linear(width, 512), torch.nn.SiLU(),
                                             torch.nn.Linear(512, f.shape[1])).to(device)
        self.trained = {"projector": self.projector}

    def loss(self, net, x0: torch.Tensor, labels: torch.Tensor, g: torch.Generator,
             idx: torch.Tensor) -> torch.Tensor:
        from accelerate.utils import extract_model_from_parallel
        middle = []
        hook = extract_model_from_parallel(net).mid_block.register_forward_hook(
            lambda module, args, out: middle.append(out))
        try:
            loss = self.inner.loss(net, x0, labels, g, idx)
        finally:
            hook.remove()
        z = F.normalize(self.projector(middle[0].float().mean(dim=(2, 3))), dim=1)
        return loss + self.weight * (1 - (z * self.targets[idx]).sum(1)).mean()


KL_WEIGHT = 1e-6  # Stable Diffusion's autoencoder's: latents stay close to deterministic


class Autoencoder:
    """The autoencoder of latent diffusion: reconstruction error of a latent drawn from the encoder's
    posterior, plus a light KL term that keeps the latents near a unit Gaussian."""

    def __init__(self, cfg: Config, data: PixelData, device: torch.device, num_processes: int):
        if num_processes > 1:
            raise UserError("train the autoencoder (backbone=vae) in one process")
        self.spec, self.run = cfg.model, cfg.run
        self.condition = for_model(cfg.model, data.classes)  # none: an autoencoder takes no condition

    trained: dict = {}

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def loss(self, net, x0: torch.Tensor, labels: torch.Tensor, g: torch.Generator,
             idx: torch.Tensor) -> torch.Tensor:
        from accelerate.utils import extract_model_from_parallel
        vae = extract_model_from_parallel(net)  # encode/decode are not its forward
        posterior = vae.encode(x0).latent_dist
        recon = vae.decode(posterior.sample(generator=g)).sample
        return F.mse_loss(recon.float(), x0) + KL_WEIGHT * posterior.kl().mean()

    def preview(self, vae, data: PixelData, out: Path) -> None:
        """The first sprites of the data (top rows) over their reconstructions (bottom rows)."""
        images = data.images[:self.run.num_samples]
        recon = to_uint8(decode(vae, encode(vae, images.to(vae.device)))).cpu()
        make_grid(torch.cat([images, recon]), ncols=max(1, len(images) // 2 or 1)).save(out)

    def export(self, vae, data: PixelData, palette: torch.Tensor, path: Path, steps: int) -> None:
        """Scaled to give latents of unit variance, and measured: what it loses is lost by every
        latent model trained on it."""
        from metrics import reconstruction
        calibrate(vae, data.images.to(vae.device))
        ceiling = reconstruction(vae, data.images.to(vae.device), palette)
        tqdm.write("reconstruction of the data: {exact:.1%} of pixels exact after palette snapping, "
                   "FD-Lite0 {fd_lite0:.0f}".format(**ceiling))
        vae.save_pretrained(path / "vae", safe_serialization=True)
        save_meta(self.spec, data.classes, palette, path, reconstruction=ceiling, steps=steps)


def objective_for(cfg: Config):
    """The objective of a spec, by name: the autoencoder for backbone=vae, rectified flow for
    prediction_type=flow_prediction, else diffusion."""
    if cfg.model.backbone == "vae":
        return Autoencoder
    return Flow if cfg.model.prediction_type == "flow_prediction" else Diffusion


# ----------------------------------------------------------------------------- the loop

def train(cfg: Config, folder: Path, resume: bool = False) -> Path:
    """Train to cfg.run.max_steps or max_minutes, resuming from folder's checkpoint if asked. Returns
    the exported model folder, or the run folder when Ctrl-C or SIGTERM stopped the run first."""
    run = cfg.run
    torch.set_num_threads(cpu_threads(run.threads))
    acc = make_accelerator(run)
    main, log = acc.is_main_process, (tqdm.write if acc.is_main_process else (lambda _: None))

    cfg, data, objective, labels, images = prepare_data(cfg, folder, acc, log)
    total = run.max_steps or math.ceil(EPOCHS * len(images) / (run.batch_size * acc.num_processes))
    net, ema, opt, schedule = make_networks(cfg, len(data.classes), acc, total, objective.trained)
    model_fn = compiled(net, acc.device) if run.compile else net

    # Resume: weights, optimiser, warm-up, RNG, step and training time come back from the checkpoint.
    parts = {"net": acc.unwrap_model(net), "ema": ema.model, "optimizer": opt, "lr_scheduler": schedule,
             **objective.trained}
    ckpt_path, losses_path = folder / "checkpoint.pt", folder / "losses.csv"
    step, seconds = 0, 0.0
    if resume:
        step, seconds = restore_checkpoint(ckpt_path, parts, data.classes)
        check_budget(run, folder, step, seconds, total)
        if main:
            truncate_losses(losses_path, step)
    acc.wait_for_everyone()
    log(f"run {folder}: {len(images)} images of {cfg.model.image_size}x{cfg.model.image_size}, "
        f"{len(data.classes)} classes, {sum(p.numel() for p in net.parameters()) / 1e6:.2f}M parameters, "
        f"{acc.num_processes} process(es) x batch {run.batch_size}, {acc.device}"
        f"{f' ({torch.get_num_threads()} threads)' if acc.device.type == 'cpu' else ''}, steps {step} -> {total}")
    watch = SlowdownWatch()

    pending: list[tuple[torch.Tensor, float, float]] = []  # (loss on the device, lr, seconds) to log
    plotted = time.monotonic()  # loss.png: redrawn with a checkpoint at most once a minute, and at the end
    with catch_signals() as stop, tqdm(total=total, initial=step, disable=not main, dynamic_ncols=True,
                                       unit="step") as bar:
        while step < total:
            # One step. Its randomness (batch, flips, noise, timesteps, label drops) derives from
            # (seed, step, process) alone, so a resumed run draws exactly what it would have drawn.
            start = time.perf_counter()
            net.train()
            g = torch.Generator(acc.device).manual_seed((run.seed * 1_000_003 + step) * 257
                                                        + acc.process_index)
            idx = batch_indices(run.seed, len(images), step, run.batch_size, acc.num_processes,
                                acc.process_index).to(acc.device)
            x0 = augment(images[idx], run.flip_p, g)
            with acc.autocast():
                loss = objective.loss(model_fn, x0, labels[idx], g, idx)
            acc.backward(loss)
            acc.clip_grad_norm_(net.parameters(), 1.0)
            lr = opt.param_groups[0]["lr"]
            opt.step()
            opt.zero_grad(set_to_none=True)
            schedule.step()
            ema.update(acc.unwrap_model(net), step)
            step += 1
            seconds += time.perf_counter() - start
            pending.append((loss.detach(), lr, seconds))

            # Maintenance: the loss log and the time budget (where processes sync anyway), then
            # checkpoint, loss plot and preview. Only the main process writes.
            interrupted, done = any_process(stop.is_set(), acc), step == total
            if step % run.log_every == 0 or step % run.ckpt_every == 0 or done or interrupted:
                bar.set_postfix(loss=f"{flush_losses(pending, step, acc, losses_path):.4f}",
                                min=f"{seconds / 60:.1f}")
                slow = watch.check(step, seconds)
                if slow and main:
                    log(slow)
                bar.update(step - bar.n)
                if run.max_minutes and any_process(seconds >= run.max_minutes * 60, acc):
                    log(f"time budget of {run.max_minutes:g} min reached at step {step}; to go on: "
                        f"python train.py --resume --run_name={folder.name} --out_dir={folder.parent} "
                        f"--max_minutes={2 * run.max_minutes:g}")
                    done = True
            if main and (step % run.ckpt_every == 0 or done or interrupted):
                save_checkpoint(ckpt_path, parts, step=step, seconds=seconds,
                                config=config_mod.to_dict(cfg), classes=data.classes)
                if done or interrupted or time.monotonic() - plotted > 60:
                    plot_losses(losses_path, folder / "loss.png")
                    plotted = time.monotonic()
            if main and run.num_samples and (done or (run.sample_every and step % run.sample_every == 0)):
                (folder / "samples").mkdir(exist_ok=True)
                objective.preview(ema.model, data, folder / "samples" / f"step_{step:07d}.png")
            if interrupted:
                bar.close()  # before the message, so that it gets a line of its own
                log(f"interrupted at step {step}: checkpoint saved; continue with `python train.py "
                    f"--resume --run_name={folder.name} --out_dir={folder.parent}`")
                return folder
            if done:
                break

    model_dir = folder / "model"
    if main:
        try:
            objective.export(ema.model, data, load_palette(folder / "palette.hex"), model_dir, step)
        except OSError as e:
            raise UserError(f"could not write the model to {model_dir} ({e.strerror or e}); the "
                            "checkpoint is kept: free some space and run train.py --resume") from None
        log(f"done: {step} steps in {seconds / 60:.1f} min of training; model in {model_dir}, "
            f"samples in {folder / 'samples'}")
    acc.wait_for_everyone()  # every process returns once the model is written
    return model_dir


def prepare_data(cfg: Config, folder: Path, acc, log) -> tuple:
    """(the config with the data's image size, the data, the objective, a label per image, what the
    network learns, on the device). Every image is decoded once; the main process writes the run's
    config, the data's palette and a text model's embeddings of its captions (cached), once."""
    run = cfg.run
    if cfg.model.condition == "character":
        data = training_data(run.data_dir, run.characters, run.seed, log)
        palette = extract(data.images)
    else:
        own = load_folder(run.data_dir, cfg.model, log=log, exclude=read_list(run.held_out))
        data = recoloured(own, run.recolour)
        # Without the copies, a prompt model is still asked for hues its data lacks ("a green
        # sword"); with them, their own cut scores better (RESULTS.md: *An eighteenth session*)
        prompted = cfg.model.condition == "text" and not run.recolour
        palette = prompt_palette(own) if prompted else extract(data.images)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, image_size=data.images.shape[-1]))
    objective = objective_for(cfg)(cfg, data, acc.device, acc.num_processes)
    if run.repa:
        objective = Aligned(objective, data.images, run.repa, acc.device, acc.num_processes)
    cache = folder / "text.pt"
    if acc.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        config_mod.save(cfg, folder / "config.json")
        save_hex(palette, folder / "palette.hex")
        labels = objective.condition.labels(data, cache)
    acc.wait_for_everyone()  # the other processes read the main one's cache
    if not acc.is_main_process:
        labels = objective.condition.labels(data, cache)
    labels = labels.to(acc.device)
    objective.condition.to(acc.device)
    return cfg, data, objective, labels, objective.inputs(data.images.to(acc.device))


def make_networks(cfg: Config, num_classes: int, acc, total: int, trained: dict) -> tuple:
    """(the network, the EMA of its weights, Adam over it and the `trained` modules beside it, its
    learning-rate schedule over total steps), seeded, on the device."""
    run = cfg.run
    torch.manual_seed(run.seed)
    net = build(cfg.model, num_classes)
    if run.init:
        start_from(net, run.init)
    ema = EMA(net, run.ema_decay)
    # The fused kernel on the CPU as on a GPU: 3x faster than the per-tensor loop torch picks for CPU
    # tensors by default (RESULTS.md: speed).
    opt = torch.optim.Adam([*net.parameters(), *(p for m in trained.values() for p in m.parameters())],
                           lr=run.lr, fused=True)
    net, opt = acc.prepare(net, opt)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(run, s, total))
    ema.model.to(acc.device)
    return net, ema, opt, schedule


def lr_factor(run: RunSpec, step: int, total: int) -> float:
    """The learning rate at a step over run.lr: a linear warm-up, then constant or a half cosine."""
    if step < run.warmup_steps:
        return (step + 1) / run.warmup_steps
    if run.lr_decay == "none":
        return 1.0
    done = (step - run.warmup_steps) / max(1, total - run.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))


class SlowdownWatch:
    """One line, once, when steps have become several times slower than the run's fastest so far:
    another process is using the CPU, and threads on its cores stall the others."""
    FACTOR, WINDOW = 3.0, 20  # slower than this many times the best, over at least this many steps

    def __init__(self):
        self.best, self.mark, self.said = math.inf, None, False

    def check(self, step: int, seconds: float) -> str:
        if self.mark is None:  # the first window is warm-up
            self.mark = (step, seconds)
            return ""
        steps, spent = step - self.mark[0], seconds - self.mark[1]
        if steps < self.WINDOW:
            return ""
        self.mark, per_step = (step, seconds), spent / steps
        if per_step > self.FACTOR * self.best and not self.said:
            self.said = True
            return (f"note: steps are {per_step / self.best:.0f}x slower than at the start ({per_step:.2f} "
                    f"s against {self.best:.2f} s): another process is using the CPU; --threads=1 on "
                    f"--resume keeps a run steady while sharing it")
        self.best = min(self.best, per_step)
        return ""


def start_from(net, init: str) -> None:
    """--init: the trained model's weights into the new network (the EMA starts from them too)."""
    from model import load_model
    m = load_model(init)
    try:
        net.load_state_dict(m.net.state_dict())
    except RuntimeError as e:  # another number of classes, another architecture
        first = str(e).split("\n")[1].strip() if "\n" in str(e) else str(e)
        raise UserError(f"--init={init}: its weights do not fit this run's network ({first}); a class "
                        "model fine-tunes on data with the same classes") from None


def check_budget(run: RunSpec, folder: Path, step: int, seconds: float, total: int) -> None:
    """A resumed run that has no budget left stops at once, saying how to give it more."""
    minutes = seconds / 60
    where = f"--run_name={folder.name} --out_dir={folder.parent}"
    if step >= total:
        raise UserError(f"run {folder} has trained its {total} steps: give it more with python "
                        f"train.py --resume {where} --max_steps={2 * total}")
    if run.max_minutes and minutes >= run.max_minutes:
        raise UserError(f"run {folder} has trained {minutes:.1f} min, its --max_minutes="
                        f"{run.max_minutes:g} (counted over the whole run): give it more with python "
                        f"train.py --resume {where} --max_minutes={math.ceil(minutes + run.max_minutes):g}")


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


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: Path, parts: dict, **extra) -> None:
    """Write every part's state, `extra` and the RNG state to path atomically (temp file, then rename):
    a crash or kill -9 mid-write, or a full disk, leaves the previous checkpoint intact (with a
    warning line when the disk refused)."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    state = {**{k: v.state_dict() for k, v in parts.items()}, **extra, "rng": rng}
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        tqdm.write(f"warning: could not save a checkpoint at step {extra.get('step')} "
                   f"({e.strerror or e}); the previous checkpoint is kept", file=sys.stderr)


def restore_checkpoint(path: Path, parts: dict, classes: list[str]) -> tuple[int, float]:
    """Load what save_checkpoint wrote back into the parts and the RNG; returns (step, seconds)."""
    ckpt = load_checkpoint(path)
    if ckpt["classes"] != classes:
        raise UserError(f"the data's classes {classes} differ from the run's {ckpt['classes']}")
    ckpt.setdefault("net", ckpt.get("unet"))  # checkpoints written before the objectives' split
    missing = sorted(set(parts) - set(ckpt))
    if missing:  # e.g. --repa given to a run that trained without it
        raise UserError(f"the checkpoint {path} has no {', '.join(missing)}: a resumed run keeps its --repa")
    for k, v in parts.items():
        v.load_state_dict(ckpt[k])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if "cuda" in ckpt["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    return ckpt["step"], ckpt["seconds"]


# ----------------------------------------------------------------------------- logs

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
    # A Figure without pyplot (no global figure manager to import) and plain tick labels (log-axis
    # mathtext labels cost a third of the drawing): it is drawn at the end of every run.
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter
    rows = list(csv.DictReader(path.open()))
    steps = [int(r["step"]) for r in rows]
    loss = torch.tensor([float(r["loss"]) for r in rows])
    k = max(1, len(loss) // 50)  # a running mean shows the trend through per-step noise
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.plot(steps, loss, alpha=0.3, lw=0.8, label="per step")
    ax.plot(steps[k - 1:], loss.unfold(0, k, 1).mean(1), lw=1.5, label=f"mean of {k}")
    ax.set(xlabel="step", ylabel="loss", yscale="log", title=out.parent.name)
    ax.yaxis.set_major_formatter(LogFormatter())
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    ax.legend()
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.92)  # tight_layout: twice the time
    fig.savefig(out, dpi=100)


# ----------------------------------------------------------------------------- processes and signals

def make_accelerator(run: RunSpec):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    # One process may train several times (tests, bench.py) with other precisions; the distributed
    # set-up (PartialState) is kept.
    AcceleratorState._reset_state()
    device = choose_device(run.device)
    configure(device)
    acc = Accelerator(mixed_precision=precision(run.mixed_precision, device), cpu=device.type == "cpu")
    if acc.num_processes > 1:
        end_process_group_at_exit()
    return acc


@functools.cache
def end_process_group_at_exit() -> None:
    """Left for the interpreter's teardown, gloo's worker threads can abort a launch that finished
    well (SIGABRT, "terminate called without an active exception"; pytorch/pytorch#190489): the group
    ends at exit instead, while Python is still alive. Once a process (it may train several times)."""
    import atexit
    atexit.register(lambda: torch.distributed.is_initialized() and torch.distributed.destroy_process_group())


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
