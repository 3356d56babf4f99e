"""The one place that builds, samples, saves and loads the model; every script and test uses it.

Usage:
    unet, scheduler = build_unet(cfg, num_classes), build_scheduler(cfg)
    x = sample(unet, scheduler, 16, seed=0, sampler="ddim", steps=50)    # float in [-1, 1]
    export(ema_unet, scheduler, cfg, classes, palette, "runs/x/model")    # diffusers save_pretrained
    m = load_model("runs/x")   # a run, an export, a folder of runs (its latest), or "": runs/, else pretrained/

A conditional UNet has one class embedding per class plus a last "no class" label (index
num_classes) used for unconditional sampling and classifier-free guidance.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (DDIMScheduler, DDPMPipeline, DDPMScheduler, DPMSolverMultistepScheduler,
                       UNet2DModel)
from tqdm import tqdm

import config as config_mod
from config import DEFAULT_SIZE, ROOT, Config, UserError, up_block_types

# name -> (class, default steps). DPM-Solver++ at 10 steps scored within 5% of DDPM-1000's FD-Lite0
# (RESULTS.md: samplers), so it is every script's default sampler; guidance 3 scored best (README).
SAMPLERS = {"ddpm": (DDPMScheduler, 1000), "ddim": (DDIMScheduler, 50),
            "dpm": (DPMSolverMultistepScheduler, 10)}
SAMPLER, GUIDANCE, PALETTE = "dpm", 3.0, "data"  # the defaults of every script that samples
META_FILE = "pixelart.json"  # beside model_index.json in an export: our config and the class names
PALETTE_FILE = "palette.hex"  # the training data's palette, for snapping generated colours
SHIPPED = ROOT / "pretrained"


def build_unet(cfg: Config, num_classes: int = 0) -> UNet2DModel:
    """The UNet2DModel of the config; class embeddings (num_classes + 1) when cfg.conditional."""
    return UNet2DModel(
        sample_size=cfg.image_size or DEFAULT_SIZE, in_channels=cfg.channels, out_channels=cfg.channels,
        block_out_channels=cfg.block_out_channels, layers_per_block=cfg.layers_per_block,
        down_block_types=cfg.down_block_types, up_block_types=up_block_types(cfg),
        attention_head_dim=cfg.attention_head_dim, norm_num_groups=cfg.norm_num_groups,
        num_class_embeds=num_classes + 1 if cfg.conditional else None,
    )


def build_scheduler(cfg: Config) -> DDPMScheduler:
    """The training noise schedule: the seed's 1000 steps from beta 1e-4 to 0.02; samplers share it."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule=cfg.beta_schedule,
                         beta_start=1e-4, beta_end=0.02, prediction_type=cfg.prediction_type)


def make_sampler(scheduler: DDPMScheduler, name: str = SAMPLER, steps: int = 0):
    """A sampler (ddpm / ddim / dpm) sharing the training schedule, set to `steps` (0: its default)."""
    if name not in SAMPLERS:
        raise UserError(f"sampler must be one of {', '.join(SAMPLERS)}; got {name!r}")
    cls, default = SAMPLERS[name]
    # DDPM and DDIM clip their estimate of the clean image to [-1, 1] (clip_sample); DPM-Solver does
    # not, and with an imperfect model its estimates run away (flat saturated colours). Its pixel-space
    # thresholding with sample_max_value=1 is the same clip.
    extra = {"thresholding": True, "sample_max_value": 1.0} if name == "dpm" else {}
    sampler = cls.from_config(scheduler.config, **extra)
    sampler.set_timesteps(min(steps or default, scheduler.config.num_train_timesteps))
    return sampler


def guided_output(unet: UNet2DModel, x: torch.Tensor, t, labels: torch.Tensor | None,
                  null_label: int, guidance: float) -> torch.Tensor:
    """Model output with classifier-free guidance: uncond + w * (cond - uncond), in one batched call.
    w = 1 is the plain conditional output, w = 0 the unconditional one (one call each)."""
    if labels is None:  # unconditional model
        return unet(x, t).sample
    if guidance == 1.0:
        return unet(x, t, class_labels=labels).sample
    null = torch.full_like(labels, null_label)
    if guidance == 0.0:
        return unet(x, t, class_labels=null).sample
    cond, uncond = unet(torch.cat([x, x]), t, class_labels=torch.cat([labels, null])).sample.chunk(2)
    return uncond + guidance * (cond - uncond)


@torch.no_grad()
def sample(unet: UNet2DModel, scheduler: DDPMScheduler, n: int, labels: torch.Tensor | None = None,
           seed: int = 0, sampler: str = SAMPLER, steps: int = 0, guidance: float = GUIDANCE,
           progress: bool = False) -> torch.Tensor:
    """Run the reverse process; returns n images as floats in [-1, 1] on the CPU.

    The same loop as diffusers' DDPMPipeline (tests check they agree), plus class labels and guidance.
    Noise comes from a CPU generator seeded with `seed`, so samples are the same on every device.
    """
    solver = make_sampler(scheduler, sampler, steps)
    device = next(unet.parameters()).device
    size, ch = unet.config.sample_size, unet.config.in_channels
    generator = torch.Generator().manual_seed(seed)
    x = (torch.randn((n, ch, size, size), generator=generator) * solver.init_noise_sigma).to(device)
    if labels is not None:
        labels = labels.to(device)
    null_label = (unet.config.num_class_embeds or 1) - 1
    timesteps = tqdm(solver.timesteps, desc=f"{sampler} x{len(solver.timesteps)}", unit="step",
                     disable=not progress)
    for t in timesteps:
        out = guided_output(unet, solver.scale_model_input(x, t), t, labels, null_label, guidance)
        x = solver.step(out.float(), t, x, generator=generator).prev_sample
    return x.float().cpu()


class EMA:
    """Exponential moving average of the weights, with the usual warm-up so short runs are not
    dominated by the random initialisation: decay_t = min(decay, (1 + t) / (10 + t))."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.model = copy.deepcopy(model).requires_grad_(False).eval()
        self.decay = decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        ema_p = list(self.model.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1.0 - d)


def export(unet: UNet2DModel, scheduler: DDPMScheduler, cfg: Config, classes: list[str],
           palette: torch.Tensor, path: Path) -> None:
    """diffusers save_pretrained (safetensors + scheduler config): DDPMPipeline.from_pretrained loads it.
    Beside it: our config and class names (pixelart.json) and the data's palette (palette.hex), so
    that sampling needs this folder and nothing else."""
    from palette import save_hex
    path = Path(path)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(path, safe_serialization=True)
    meta = {"config": config_mod.to_dict(cfg), "classes": classes}
    (path / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    save_hex(palette, path / PALETTE_FILE)


@dataclass
class Loaded:
    unet: UNet2DModel
    scheduler: DDPMScheduler
    cfg: Config
    classes: list[str]
    palette: torch.Tensor | None  # K x 3 uint8: the training data's colours
    source: Path  # what was loaded: an export folder or a checkpoint file


def latest_run(out_dir: str | Path = "runs") -> Path | None:
    """The most recently changed run folder (one with a config.json) under out_dir."""
    root = Path(out_dir)
    runs = [p.parent for p in root.glob("*/config.json")] if root.is_dir() else []
    return max(runs, key=lambda p: p.stat().st_mtime, default=None)


def _palette(folder: Path) -> torch.Tensor | None:
    from palette import load_palette
    return load_palette(folder / PALETTE_FILE) if (folder / PALETTE_FILE).is_file() else None


def _load_export(path: Path) -> Loaded:
    meta = json.loads((path / META_FILE).read_text())
    cfg = config_mod.from_dict(meta["config"])
    unet = UNet2DModel.from_pretrained(path / "unet", use_safetensors=True)
    scheduler = DDPMScheduler.from_pretrained(path / "scheduler")
    return Loaded(unet.eval(), scheduler, cfg, list(meta["classes"]), _palette(path), path)


def _load_checkpoint(path: Path) -> Loaded:
    """The EMA weights of a run's checkpoint (a run still training has no export yet)."""
    ckpt = load_checkpoint(path)
    cfg = config_mod.from_dict(ckpt["config"])
    unet = build_unet(cfg, len(ckpt["classes"]))
    unet.load_state_dict(ckpt["ema"])
    return Loaded(unet.eval(), build_scheduler(cfg), cfg, list(ckpt["classes"]), _palette(path.parent),
                  path)


def load_checkpoint(path: Path) -> dict:
    """torch.load with weights_only=True: tensors and plain containers only, never arbitrary pickles."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, or not a checkpoint: say which file
        raise UserError(f"cannot load checkpoint {path}: {type(e).__name__}: {e}") from None


def load_model(where: str | Path = "") -> Loaded:
    """Load a trained model from an export folder, a run folder (its export, else its checkpoint) or
    a folder of runs (the latest). "" means runs/ if it holds a run, else the model in pretrained/."""
    if str(where) == "":
        where = "runs" if latest_run("runs") else SHIPPED
    path = config_mod.resolve_path(where)
    if not path.exists():
        raise UserError(f"{path} does not exist")
    if not (path / META_FILE).exists() and not (path / "config.json").exists() and latest_run(path):
        path = latest_run(path)  # a folder of runs
    if (path / META_FILE).exists():
        return _load_export(path)
    if (path / "model" / META_FILE).exists():
        return _load_export(path / "model")
    if (path / "checkpoint.pt").exists():
        return _load_checkpoint(path / "checkpoint.pt")
    raise UserError(f"{path} is not a run or model folder (no {META_FILE}, model/ or checkpoint.pt)")
