"""The one place that builds the networks (UNet, DiT, autoencoder) and the noise schedule, and that
saves and loads models; every script and test uses it.

Usage:
    net, scheduler = build(spec, num_classes), build_scheduler(spec)
    save_denoiser(ema_net, scheduler, "runs/x/model"); save_meta(spec, classes, palette, "runs/x/model")
    m = load_model("runs/x")   # a run, an export, a folder of runs (its latest), or "": runs/, else pretrained/
    print(m.source, m.why)     # what was loaded and why that one

A class model's network has one class embedding per class plus a last "no class" label (index
num_classes) used for unconditional sampling and classifier-free guidance (conditioning.py).
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (AutoencoderKL, DDPMPipeline, DDPMScheduler, DiTTransformer2DModel,
                       PixArtTransformer2DModel, UNet2DConditionModel, UNet2DModel)

import config as config_mod
from conditioning import TEXT_DIM, NoCondition, for_model
from dataset import to_unit
from config import DEFAULT_SIZE, SHIPPED, ModelSpec, UserError, latest_run, resolve_path, up_block_types

META_FILE = "pixelart.json"  # beside model_index.json in an export: the model spec and the class names
PALETTE_FILE = "palette.hex"  # the training data's palette, for snapping generated colours
CAPTIONS_FILE = "captions.txt"  # a text model's training captions: the default prompts
FEW_STEPS = 1000  # fewer training steps than this draw noise or smudges (RESULTS.md: the curve)


def build(spec: ModelSpec, num_classes: int = 0) -> torch.nn.Module:
    """The network of a spec: the autoencoder (backbone=vae), a DiT (classes or text), a UNet2DModel
    (with num_classes + 1 class embeddings for a class model) or a UNet2DConditionModel (text). With
    spec.latent the denoiser works on the autoencoder's latents."""
    return with_fast_attention(_build(spec, num_classes))


def _build(spec: ModelSpec, num_classes: int) -> torch.nn.Module:
    if spec.backbone == "vae":
        return build_vae(spec)
    channels, size = denoiser_shape(spec)
    if spec.backbone == "dit":
        return build_dit(spec, num_classes, channels, size)
    if spec.condition == "character":
        return build_character_unet(spec, num_classes, channels, size)
    if spec.condition == "text":
        return build_text_unet(spec, channels, size)
    return UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=channels,
        block_out_channels=spec.block_out_channels, layers_per_block=spec.layers_per_block,
        down_block_types=spec.down_block_types, up_block_types=up_block_types(spec),
        attention_head_dim=spec.attention_head_dim, norm_num_groups=spec.norm_num_groups,
        num_class_embeds=num_classes + 1 if spec.condition == "class" else None,
    )


class CpuAttention:
    """diffusers' attention (AttnProcessor2_0's function) with the kernels that are fastest on a CPU.
    Heads of under 16 channels: fused attention (SDPA) with each head zero-padded to 16 channels (the
    same scores and outputs; forward and backward 1.3x faster at 8 channels), in fp32 (bf16 SDPA is
    slower there; with a mask or extra norms, diffusers' default in fp32). Wider heads under bf16
    autocast: plain batched matmuls and a softmax (diffusers' AttnProcessor). Wide fp32 heads and a
    GPU take diffusers' default unchanged (RESULTS.md: speed)."""

    def __init__(self):
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
        self.default, self.matmuls = AttnProcessor2_0(), AttnProcessor()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 **kwargs):
        args = (attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if hidden_states.device.type != "cpu":
            return self.default(*args)
        bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        if attn.to_q.out_features // attn.heads >= 16:
            return self.matmuls(*args) if bf16 else self.default(*args)
        plain = attention_mask is None and attn.spatial_norm is None and attn.norm_q is None and \
            attn.norm_k is None
        with torch.autocast("cpu", enabled=False):
            x, context = hidden_states.float(), None if encoder_hidden_states is None else \
                encoder_hidden_states.float()
            return padded_attention(attn, x, context) if plain else \
                self.default(attn, x, context, attention_mask, temb)


def padded_attention(attn, x: torch.Tensor, context: torch.Tensor | None, width: int = 16) -> torch.Tensor:
    """AttnProcessor2_0 without masks or extra norms, its heads zero-padded to `width` channels:
    zeros add nothing to q.k (the scale stays 1/sqrt of the real width) and come out as zeros of v."""
    import torch.nn.functional as F
    residual = x
    if x.ndim == 4:
        x = x.flatten(2).transpose(1, 2)
    if attn.group_norm is not None:
        x = attn.group_norm(x.transpose(1, 2)).transpose(1, 2)
    if context is None:
        context = x
    elif attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    q, k, v = attn.to_q(x), attn.to_k(context), attn.to_v(context)
    d = k.shape[-1] // attn.heads

    def heads(t):
        return F.pad(t.view(len(t), -1, attn.heads, d).transpose(1, 2), (0, width - d))

    out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), scale=d ** -0.5)[..., :d]
    out = attn.to_out[1](attn.to_out[0](out.transpose(1, 2).reshape(len(x), -1, attn.heads * d)))
    if residual.ndim == 4:
        out = out.transpose(1, 2).reshape(residual.shape)
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor


def with_fast_attention(net: torch.nn.Module, processor=None) -> torch.nn.Module:
    """The network with CpuAttention (or `processor`) in every attention layer (where it has them)."""
    from diffusers.models.attention_processor import Attention
    processor = processor or CpuAttention()
    for layer in net.modules():
        if isinstance(layer, Attention):
            layer.set_processor(processor)
    return net


class ReferenceUNet(UNet2DConditionModel):
    """The text UNet with a reference image as extra input channels: unet(x, t, ..., reference=r)
    sees x and r side by side (r: the character's standing frame, conditioning.py)."""

    def forward(self, sample, timestep, encoder_hidden_states=None, encoder_attention_mask=None,
                class_labels=None, reference=None, return_dict=True):
        return super().forward(torch.cat([sample, reference.to(sample.dtype)], 1), timestep,
                               encoder_hidden_states, class_labels=class_labels,
                               encoder_attention_mask=encoder_attention_mask, return_dict=return_dict)


def build_character_unet(spec: ModelSpec, num_frames: int, channels: int, size: int) -> ReferenceUNet:
    """A character model: the text UNet (cross-attention to the caption) whose input is the noisy
    frame beside the reference frame, with one class embedding per frame of the walk cycle."""
    unet = build_text_unet(dataclasses.replace(spec, text_inputs="cross"), channels, size)
    config = {**unet.config, "in_channels": 2 * channels, "num_class_embeds": num_frames}
    return ReferenceUNet.from_config({k: v for k, v in config.items() if not k.startswith("_")})


def build_text_unet(spec: ModelSpec, channels: int, size: int) -> UNet2DConditionModel:
    """The same UNet, conditioned on text: cross-attention to the encoder's token embeddings where
    the spec has self-attention (cross, both), and/or the pooled sentence vector projected and
    added to the time embedding (pooled, both). Heads have spec.attention_head_dim channels."""
    cross = spec.text_inputs in ("cross", "both")
    down = tuple(t.replace("AttnDown", "CrossAttnDown") if cross else t for t in spec.down_block_types)
    heads = [c // spec.attention_head_dim for c in spec.block_out_channels]
    return UNet2DConditionModel(
        sample_size=size, in_channels=channels, out_channels=channels,
        block_out_channels=spec.block_out_channels, layers_per_block=spec.layers_per_block,
        down_block_types=down, up_block_types=tuple(t.replace("Down", "Up") for t in reversed(down)),
        mid_block_type="UNetMidBlock2DCrossAttn" if cross else "UNetMidBlock2D",
        # diffusers reads attention_head_dim as heads in cross-attention blocks, as channels per head
        # in the others
        attention_head_dim=heads if cross else spec.attention_head_dim,
        norm_num_groups=spec.norm_num_groups, cross_attention_dim=TEXT_DIM,
        class_embed_type="projection" if spec.text_inputs in ("pooled", "both") else None,
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


def build_dit(spec: ModelSpec, num_classes: int, channels: int, size: int) -> DiT | TextDiT:
    """A diffusion transformer: patches of 2 pixels (1 on small latents), spec.dit_layers blocks of
    spec.dit_width channels in heads of spec.attention_head_dim; classes through adaptive layer norm,
    text through cross-attention (PixArt's blocks)."""
    common = dict(num_attention_heads=spec.dit_width // spec.attention_head_dim,
                  attention_head_dim=spec.attention_head_dim, in_channels=channels, out_channels=channels,
                  num_layers=spec.dit_layers, sample_size=size, patch_size=2 if size >= 16 else 1)
    if spec.condition == "text":
        return TextDiT(**common, cross_attention_dim=spec.dit_width, caption_channels=TEXT_DIM,
                       use_additional_conditions=False)
    dit = DiT(**common, num_embeds_ada_norm=num_classes if spec.condition == "class" else 1)
    for block in dit.transformer_blocks:  # labels are dropped in training (conditioning.py), not here
        block.norm1.emb.class_embedder.dropout_prob = 0.0
    return dit


LATENT_CHANNELS = 4  # as Stable Diffusion's autoencoder


def build_vae(spec: ModelSpec) -> AutoencoderKL:
    """The autoencoder of latent diffusion (--backbone=vae): spec.block_out_channels levels, each
    halving the side after the first, down to LATENT_CHANNELS channels."""
    n = len(spec.block_out_channels)
    return AutoencoderKL(in_channels=spec.channels, out_channels=spec.channels,
                         down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n,
                         block_out_channels=spec.block_out_channels, layers_per_block=spec.layers_per_block,
                         latent_channels=LATENT_CHANNELS, norm_num_groups=spec.norm_num_groups,
                         sample_size=spec.image_size or DEFAULT_SIZE)


def vae_folder(where: str | Path) -> Path:
    """The autoencoder's weights in an autoencoder run, its export, or a latent model's export."""
    path = resolve_path(where)
    for p in (path / "model" / "vae", path / "vae", path):
        if (p / "config.json").is_file() and json.loads((p / "config.json").read_text()).get(
                "_class_name") == "AutoencoderKL":
            return p
    raise UserError(f"--latent={where}: no trained autoencoder there (train one with "
                    "train.py --preset=vae)")


def load_vae(where: str | Path) -> AutoencoderKL:
    return AutoencoderKL.from_pretrained(vae_folder(where), use_safetensors=True).eval().requires_grad_(False)


def denoiser_shape(spec: ModelSpec) -> tuple[int, int]:
    """(channels, side) of what the denoiser works on: the pixels, or the autoencoder's latents."""
    size = spec.image_size or DEFAULT_SIZE
    if not spec.latent:
        return spec.channels, size
    vae = json.loads((vae_folder(spec.latent) / "config.json").read_text())
    return vae["latent_channels"], size // 2 ** (len(vae["block_out_channels"]) - 1)


@torch.no_grad()
def encode(vae: AutoencoderKL, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """uint8 N,C,H,W -> the latents' means, scaled by the autoencoder's scaling factor (unit variance)."""
    x = to_unit(images)
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


def build_scheduler(spec: ModelSpec) -> DDPMScheduler:
    """The training noise schedule: the seed's 1000 steps from beta 1e-4 to 0.02; samplers share it.
    Estimates of the clean image are clipped to [-1, 1] in pixel space, not on latents."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule=spec.beta_schedule,
                         beta_start=1e-4, beta_end=0.02, prediction_type=spec.prediction_type,
                         clip_sample=not spec.latent)


def is_flow(scheduler) -> bool:
    """A rectified-flow model (prediction_type=flow_prediction): x_t = (1 - s) x0 + s noise at s = t / T,
    the network predicts noise - x0."""
    return scheduler.config.prediction_type == "flow_prediction"


def add_noise(scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x0 noised to timestep t, the way the model trains (a flow model's t may be fractional)."""
    if not is_flow(scheduler):
        return scheduler.add_noise(x0, noise, t)
    s = (t.float() / scheduler.config.num_train_timesteps).view(-1, 1, 1, 1).to(x0.device)
    return torch.lerp(x0, noise, s)


def noise_estimate(scheduler, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The network's output at (x_t, t) converted to its estimate of the noise, whatever its target."""
    kind = scheduler.config.prediction_type
    if kind == "flow_prediction":
        s = (t.float() / scheduler.config.num_train_timesteps).view(-1, 1, 1, 1)
        return x_t + (1 - s) * out
    a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    if kind == "v_prediction":
        return a.sqrt() * out + (1 - a).sqrt() * x_t
    if kind == "sample":
        return (x_t - a.sqrt() * out) / (1 - a).sqrt()
    return out


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


# ----------------------------------------------------------------------------- saving

def save_denoiser(net: torch.nn.Module, scheduler: DDPMScheduler, path: Path) -> None:
    """diffusers save_pretrained (safetensors + scheduler config): DDPMPipeline.from_pretrained loads
    a UNet's export; a DiT is saved as the stock diffusers class it wraps, so diffusers alone loads it."""
    path = Path(path)
    DDPMPipeline(unet=net, scheduler=scheduler).save_pretrained(path, safe_serialization=True)
    if isinstance(net, (DiT, TextDiT, ReferenceUNet)):
        stock = type(net).__bases__[0].__name__
        for file, key in ((path / "model_index.json", "unet"), (path / "unet" / "config.json", None)):
            conf = json.loads(file.read_text())
            conf.update({key: ["diffusers", stock]} if key else {"_class_name": stock})
            file.write_text(json.dumps(conf, indent=2) + "\n")


def save_meta(spec: ModelSpec, classes: list[str], palette: torch.Tensor, path: Path,
              captions: list[str] = (), **extra) -> None:
    """Beside the weights: the model spec, class names and `extra` (pixelart.json), the data's palette
    (palette.hex) and a text model's training captions (captions.txt), so that sampling needs this
    folder and nothing else."""
    from palette import save_hex
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"model": config_mod.to_dict(spec), "classes": classes, **extra}
    (path / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    save_hex(palette, path / PALETTE_FILE)
    if captions:
        (path / CAPTIONS_FILE).write_text("".join(c.replace("\n", " ") + "\n" for c in captions))


# ----------------------------------------------------------------------------- loading

@dataclass
class Loaded:
    net: torch.nn.Module  # the denoiser: UNet2DModel, UNet2DConditionModel, DiT or TextDiT
    scheduler: DDPMScheduler
    spec: ModelSpec
    classes: list[str]
    palette: torch.Tensor | None  # K x 3 uint8: the training data's colours
    source: Path  # what was loaded: an export folder or a checkpoint file
    vae: AutoencoderKL | None = None  # a latent model's decoder
    condition: NoCondition = NoCondition()  # what it is asked for by (conditioning.py)
    why: str = "given by --model"  # how it was chosen, for the first line a script prints
    data_dir: str = ""  # what it was trained on
    steps: int = 0  # optimiser steps it trained (0: not recorded)


def _read_folder_extras(folder: Path) -> tuple[torch.Tensor | None, list[str]]:
    """The palette and training captions saved beside a model, where there are any."""
    from palette import load_palette
    palette = load_palette(folder / PALETTE_FILE) if (folder / PALETTE_FILE).is_file() else None
    captions = ((folder / CAPTIONS_FILE).read_text().splitlines()
                if (folder / CAPTIONS_FILE).is_file() else [])
    return palette, captions


# the denoiser's class by (backbone, condition)
DENOISERS = {("unet", "none"): UNet2DModel, ("unet", "class"): UNet2DModel,
             ("unet", "text"): UNet2DConditionModel, ("unet", "character"): ReferenceUNet,
             ("dit", "none"): DiT, ("dit", "class"): DiT, ("dit", "text"): TextDiT}


def _check_denoiser(spec: ModelSpec, path: Path) -> None:
    if spec.backbone == "vae":
        raise UserError(f"{path} is an autoencoder, not a diffusion model: train one on its latents "
                        f"with train.py --latent={path.parent if path.is_file() else path}")


def _load_export(path: Path) -> Loaded:
    meta = json.loads((path / META_FILE).read_text())
    # models exported before the model/run split keep one flat "config"
    spec = config_mod.model_from_dict(config_mod.split(config_mod.from_legacy(meta["config"]))[0]
                                      if "config" in meta else meta["model"])
    _check_denoiser(spec, path)
    net = with_fast_attention(DENOISERS[spec.backbone, spec.condition].from_pretrained(
        path / "unet", use_safetensors=True))
    scheduler = DDPMScheduler.from_pretrained(path / "scheduler")
    vae = load_vae(path) if (path / "vae").is_dir() else None
    palette, captions = _read_folder_extras(path)
    classes = list(meta["classes"])
    data_dir = meta["config"]["data_dir"] if "config" in meta else meta.get("data_dir", "")
    return Loaded(net.eval(), scheduler, spec, classes, palette, path, vae,
                  for_model(spec, classes, captions), data_dir=data_dir, steps=meta.get("steps", 0))


def _load_checkpoint(path: Path) -> Loaded:
    """The EMA weights of a run's checkpoint (a run still training has no export yet)."""
    ckpt = load_checkpoint(path)
    cfg = config_mod.config_from_dict(ckpt["config"])
    spec = cfg.model
    _check_denoiser(spec, path)
    net = build(spec, len(ckpt["classes"]))
    net.load_state_dict(ckpt["ema"])
    palette, captions = _read_folder_extras(path.parent)
    classes = list(ckpt["classes"])
    return Loaded(net.eval(), build_scheduler(spec), spec, classes, palette, path,
                  load_vae(spec.latent) if spec.latent else None, for_model(spec, classes, captions),
                  data_dir=cfg.run.data_dir, steps=ckpt["step"])


def load_checkpoint(path: Path) -> dict:
    """torch.load with weights_only=True: tensors and plain containers only, never arbitrary pickles."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, or not a checkpoint: say which file
        raise UserError(f"cannot load checkpoint {path}: {type(e).__name__}: {e}") from None


def load_model(where: str | Path = "") -> Loaded:
    """Load a trained model from an export folder, a run folder (its export, else its checkpoint) or
    a folder of runs (the latest). "" means the latest run under runs/ if there is one, else the
    shipped model in pretrained/; Loaded.why says which and how to pick the other."""
    if str(where) == "":
        run = latest_run("runs", True)
        where = run or SHIPPED
        why = (f"the latest run under runs/ (--model={SHIPPED} for the shipped model)" if run else
               "the shipped model (no run under runs/ yet)")
    else:
        why = "given by --model"
    path = resolve_path(where)
    if not path.exists():
        raise UserError(f"model {where} does not exist (--model takes a run, an exported model or a "
                        f"folder of runs; {SHIPPED} is the shipped one)")
    if not (path / META_FILE).exists() and not (path / "config.json").exists() and latest_run(path, True):
        path = latest_run(path, True)  # a folder of runs
    if (path / META_FILE).exists():
        m = _load_export(path)
    elif (path / "model" / META_FILE).exists():
        m = _load_export(path / "model")
    elif (path / "checkpoint.pt").exists():
        m = _load_checkpoint(path / "checkpoint.pt")
    else:
        raise UserError(f"model {path} is not a run or model folder (no {META_FILE}, model/ or "
                        "checkpoint.pt)")
    m.why = why
    if 0 < m.steps < FEW_STEPS:
        m.why += (f"; it trained only {m.steps} steps, a toy: expect noise (--model={SHIPPED}: the "
                  "shipped model)")
    return m
