"""One typed config for every script: what a model is (ModelSpec, saved with it), how a run goes
(RunSpec, what --resume may change), presets by name, `--key=value` options, and the defaults that
several scripts share.

Usage (in a script):
    opts = MyOptions()
    cfg, given = parse_args(argv, __doc__, opts)       # cfg.model, cfg.run from --preset plus options
    parse_args(argv, __doc__, opts, config=False)      # a script without a training config

Every option is a dataclass field declared with `option(default, "help")`: the field is the one place
that holds its type, its default and its description, and `--help` is built from it. Booleans take
true/false (a bare `--flag` means true); tuples take comma-separated values. An unknown key, a value of
the wrong type or a value out of range stops with one sentence. This module imports no torch, so
`--help` and option errors answer at once.
"""
from __future__ import annotations

import argparse
import atexit
import dataclasses
import difflib
import functools
import gc
import json
import re
import sys
import textwrap
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# At exit, Python's last garbage collection walks every object that torch, diffusers and transformers
# made: a second or two of each script's run. Frozen first, they are left for the system to free.
atexit.register(gc.freeze)

ROOT = Path(__file__).resolve().parent
DEFAULT_SIZE = 32  # the seed's image size, used when the data has no single size of its own
EPOCHS = 500  # the seed's training length, used when max_steps is 0
OUTPUTS = "outputs"  # where scripts write by default: ignored by git, so no committed file is touched
SHIPPED = "pretrained"  # the shipped prompt model (pretrained/terrain: the terrain model)

# Sampling defaults of every script. name -> default steps. DPM-Solver++ at 10 steps scored within 5%
# of DDPM-1000's FD-Lite0 (RESULTS.md: samplers); guidance 3 scored best (README).
SAMPLER_STEPS = {"ddpm": 1000, "ddim": 50, "dpm": 10}
SAMPLER, GUIDANCE, PALETTE = "dpm", 3.0, "data"
# Walk cycles: guidance towards the standing frame (and the caption); 2 drew colours within 24 of the
# truth for 27% of pixels against 20% without, with the same silhouettes (RESULTS.md, characters).
WALK_GUIDANCE = 2.0
# Colours a run's palette keeps at most (median cut may merge a few): 128
# scored better than 32, 64 and 256 (RESULTS.md, palettes) and gives about as many colours per sprite
# as the icons have.
PALETTE_COLOURS = 128


def resolve_path(path: str | Path) -> Path:
    """A relative path is looked up from the current folder, then from the repo root (so that
    data/dcss_items and pretrained/ work from anywhere)."""
    p = Path(path).expanduser()
    if not p.is_absolute() and not p.exists() and (ROOT / p).exists():
        return ROOT / p
    return p


class UserError(Exception):
    """A problem with the user's input: scripts print its message as one line and exit 2."""


def picture_path(out: str, default_name: str, option_name: str = "--out") -> Path:
    """Where a picture goes, checked before any work: a folder (existing, ending in '/', or a name
    without a suffix) gets default_name inside it; a file must be a .png (lossless, with
    transparency: what pixel art needs); its folder must be one that can be made."""
    path = Path(out)
    if path.is_dir() or out.endswith(("/", "\\")) or not path.suffix:
        path = path / default_name
    if path.suffix.lower() != ".png":
        raise UserError(f"{option_name}={out}: pictures are written as PNG (lossless, with "
                        f"transparency, as pixel art needs); name a .png file or a folder")
    return _in_a_folder_to_make(path, out, option_name)


def json_path(out: str, option_name: str = "--json") -> Path:
    """Where a JSON report goes, checked before any work: a .json file whose folder can be made."""
    path = Path(out)
    if path.suffix.lower() != ".json":
        raise UserError(f"{option_name}={out}: name a .json file")
    return _in_a_folder_to_make(path, out, option_name)


def write_json(out: str, report: dict) -> None:
    """A report where json_path checked it could go (its folder made now), and a line saying so."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


def _in_a_folder_to_make(path: Path, out: str, option_name: str) -> Path:
    """path, once its nearest existing folder is known to be a writable folder (the rest is made)."""
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    if not folder.is_dir():
        raise UserError(f"{option_name}={out}: {folder} is a file, not a folder")
    import os
    if not os.access(folder, os.W_OK):
        raise UserError(f"{option_name}={out}: {folder} is not writable")
    return path


def folder_path(out: str, option_name: str = "--out") -> Path:
    """A folder to write files into, checked before any work: not a file, inside a writable folder."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option_name}={out} is a file; it names the folder the files go to")
    picture_path(str(path / "x.png"), "x.png", option_name)
    return path


def option(default: Any, help: str, flag: str = "") -> Any:
    """A dataclass field that is also a command-line option (`flag`: its name when not the field's)."""
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass
class ModelSpec:
    """What a model is: saved with it, fixed for its life; all that loading it needs."""
    image_size: int = option(0, f"side in pixels the model works at; 0: the data's own size when all "
                                f"images share one, else {DEFAULT_SIZE} (resized with NEAREST)")
    channels: int = option(3, "3: RGB, transparency composited on --background; 4: RGBA, the model "
                              "learns transparency")
    background: str = option("#000000", "colour under transparent pixels for RGB models (#rrggbb)")
    backbone: str = option("unet", "unet (diffusers UNet2DModel) | dit (a diffusion transformer on "
                                   "patches of 2 pixels) | vae (the autoencoder of latent diffusion, "
                                   "for --latent)")
    block_out_channels: tuple[int, ...] = option((64, 128, 256), "channels of each UNet level")
    layers_per_block: int = option(2, "ResNet layers per UNet level")
    down_block_types: tuple[str, ...] = option(("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                                               "DownBlock2D or AttnDownBlock2D (self-attention) for "
                                               "each level; the up path mirrors it")
    attention_head_dim: int = option(8, "channels per attention head")
    norm_num_groups: int = option(32, "GroupNorm groups; must divide every block_out_channels entry")
    dit_width: int = option(128, "backbone=dit: channels of each token (a multiple of attention_head_dim)")
    dit_layers: int = option(4, "backbone=dit: transformer blocks")
    latent: str = option("", "latent diffusion: a trained autoencoder (a --backbone=vae run); the model "
                             "learns its latents, sampling decodes them")
    condition: str = option("none", "what a sprite is asked for by: none | class (its first-level "
                                    "folder) | text (its caption, through a frozen text encoder) | "
                                    "character (a frame of an LPC walk cycle from the standing frame "
                                    "and the caption: animate.py)")
    text_inputs: str = option("both", "condition=text: how the text enters: cross (cross-attention on "
                                      "its token embeddings) | pooled (its sentence vector added to "
                                      "the time embedding) | both; a DiT takes cross only")
    colours_apart: bool = option(False, "condition=text: the prompt's colour words encoded apart from "
                                        "the rest, so that a shape's tokens are the same whatever its "
                                        "colour ('a yellow helmet': 'yellow' and 'a helmet')")
    beta_schedule: str = option("linear", "noise schedule over 1000 steps: linear | scaled_linear | "
                                          "squaredcos_cap_v2")
    prediction_type: str = option("epsilon", "what the network predicts: epsilon | v_prediction | sample "
                                             "(of DDPM's noising) | flow_prediction (rectified flow: "
                                             "noise - image on the straight path between them)")


@dataclass
class RunSpec:
    """How a run goes: the data, the optimiser, the budget, logging; --resume may change any of it."""
    data_dir: str = option("data/dcss_items", "folder of sprites (recursive; several: comma-separated); "
                                              "the class of an image is its first-level subfolder, "
                                              "its caption is in metadata.jsonl")
    characters: int = option(1500, "condition=character: characters composed from the LPC layers "
                                   "in data_dir (36 walk frames each)")
    held_out: str = option("", "a file listing images never to train on (data/heldout.txt: the held-out "
                               "test of evaluate.py --held_out)")
    recolour: int = option(0, "recoloured copies of each sprite, hue turned in equal steps, their "
                              "captions' colour words named again from their pixels")
    flip_p: float = option(0.5, "probability of a horizontal flip, per image and step")
    cond_dropout: float = option(0.1, "share of classes or captions replaced by 'none' in training "
                                      "(for classifier-free guidance)")
    short_captions: float = option(0.0, "condition=text: share of captions replaced in training by a "
                                        "shorter one, half by the caption without its colour words, "
                                        "half by the image's class (its folder's name), so that a short "
                                        "prompt ('weapon') asks for the whole kind")
    min_snr_gamma: float = option(0.0, "min-SNR loss weighting with this gamma (Hang et al. 2023); "
                                       "0: unweighted MSE")
    repa: float = option(0.0, "weight of REPA, representation alignment (Yu et al. 2024): the UNet's "
                              "middle features, pooled, through a small trained projector, towards "
                              "EfficientNet-Lite1's features of the clean sprite; 0: off")
    init: str = option("", "start from this trained model's weights (a run or an export, e.g. "
                           "pretrained) with a fresh optimiser; the run keeps that model's options "
                           "(image_size may change)")
    lr: float = option(1e-4, "Adam learning rate (after warm-up)")
    warmup_steps: int = option(0, "steps of linear learning-rate warm-up")
    lr_decay: str = option("none", "none | cosine: after the warm-up the learning rate falls along a "
                                   "half cosine to 0 at max_steps")
    batch_size: int = option(16, "images per step (per process)")
    max_steps: int = option(0, f"training length in optimiser steps; 0: {EPOCHS} epochs (the seed's)")
    max_minutes: float = option(0.0, "also stop (and export) after this many minutes of training, "
                                     "counted over the whole run (resumes included); 0: no limit")
    ema_decay: float = option(0.999, "decay of the weights' moving average (the exported weights)")
    mixed_precision: str = option("auto", "auto (bf16 where the CPU has AVX512-BF16 or AMX, or the GPU "
                                          "supports it; else no) | no (fp32) | bf16 | fp16 (autocast)")
    compile: bool = option(False, "torch.compile the network's forward and backward (CUDA graphs on a "
                                  "GPU); minutes to compile on a CPU")
    seed: int = option(0, "seed of the model's initialisation and of every step's randomness")
    out_dir: str = option("runs", "folder that holds the runs")
    run_name: str = option("", "the run's folder under out_dir; default: a timestamp and the preset")
    device: str = option("auto", "auto (a GPU if one is visible) | cpu | cuda")
    threads: int = option(0, "CPU threads for torch; 0: one per core not already busy (the cores "
                             "less the load average, at least 1)")
    log_every: int = option(10, "steps between writes to losses.csv (and checks of max_minutes)")
    sample_every: int = option(1000, "steps between sample grids; 0: only at the end")
    ckpt_every: int = option(500, "steps between checkpoints")
    num_samples: int = option(16, "images in each sample grid; 0: no grids")


def same_as(spec: type, name: str) -> Any:
    """An option declared as the spec's field of that name: its default and help, defined once."""
    f = spec.__dataclass_fields__[name]
    return option(f.default, f.metadata["help"])


@dataclass
class LoaderOptions:
    """What the loader needs of a folder (dataset.py, palette.py): no network, no optimiser."""
    data_dir: str = same_as(RunSpec, "data_dir")
    image_size: int = same_as(ModelSpec, "image_size")
    channels: int = same_as(ModelSpec, "channels")
    background: str = same_as(ModelSpec, "background")

    def spec(self) -> ModelSpec:
        spec = ModelSpec(image_size=self.image_size, channels=self.channels, background=self.background,
                         block_out_channels=(1,), down_block_types=("DownBlock2D",), norm_num_groups=1)
        validate_model(spec)
        return spec


@dataclass
class Config:
    model: ModelSpec = field(default_factory=ModelSpec)
    run: RunSpec = field(default_factory=RunSpec)



@dataclass
class SamplingOptions:
    """The options of every script that samples a model (generate.py, evaluate.py), described once."""
    model: str = option("", f"a run, an exported model or a folder of runs (its latest); default: the "
                            f"latest run under runs/, else the shipped model ({SHIPPED}/)")
    seed: int = option(0, "seed of the starting noise")
    sampler: str = option(SAMPLER, f"{' | '.join(SAMPLER_STEPS)} (DPM-Solver++)")
    steps: int = option(0, "sampler steps; 0: the sampler's default (" + ", ".join(
        f"{k} {v}" for k, v in SAMPLER_STEPS.items()) + ")")
    classes: str = option("", "class models: class names (comma-separated), 'all' (a row each) or "
                              "'none' (unconditional); default: the classes in turn", flag="class")
    guidance: float = option(GUIDANCE, "classifier-free guidance scale for conditional models (1: plain "
                                       "conditional)")
    palette: str = option(PALETTE, "snap colours to: data (the training data's, saved with the model) | "
                                   "none | a .hex or .gpl file")
    guidance_interval: tuple[float, ...] = option((0.0, 1.0), "guide only at noise levels t/T in "
                                                              "low,high (elsewhere plain conditional)")

MODEL_KEYS = frozenset(f.name for f in fields(ModelSpec))
RUN_KEYS = frozenset(f.name for f in fields(RunSpec))

# Every sprite with a caption: the item icons (the 346 of the yardstick and the rest that pass the
# licence rule), the monsters and the player-doll equipment (data/README.md).
DATA_ALL = "data/dcss_items,data/dcss_items_more,data/dcss_monsters,data/dcss_doll"
# The small UNet every CPU preset shares: 2.6M parameters, v-prediction, lr 8e-4 (recipes.py chose it).
_CPU = dict(block_out_channels=(32, 64, 128), layers_per_block=1, lr=8e-4, warmup_steps=100,
            ema_decay=0.998, min_snr_gamma=5.0, prediction_type="v_prediction", max_steps=8000,
            ckpt_every=250)

# name: (what it is for, values that differ from the specs' defaults)
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "seed": ("the reference setup of the original script: 14.7M UNet, RGB, Adam 1e-4, batch 16, "
             "500 epochs (hours on a CPU)", {}),
    "cpu": ("a model to train on a CPU, 8,000 steps (about 66 min on one thread, README): 2.6M UNet, RGBA, "
            "class-conditional, v-prediction, lr 8e-4; chosen by recipes.py (RESULTS.md)",
            dict(_CPU, channels=4, condition="class")),
    "prompt": ("the shipped model's network and data: the cpu model conditioned on captions instead "
               "of classes, trained on the items, monsters and doll equipment less the held-out 10%, "
               "with 3 recoloured copies of each, as rectified flow (the lever study's winner; the "
               "shipped model predicts v, carried on from before it): generate.py --prompt='a blue book'",
               dict(_CPU, channels=4, condition="text", attention_head_dim=32, recolour=3,
                    data_dir=DATA_ALL, held_out="data/heldout.txt", prediction_type="flow_prediction")),
    "terrain": ("the cpu UNet on the 1,756 floor, wall and water tiles, RGB, one class each: the "
                "model for seamless tiles (generate.py --tileable)",
                dict(_CPU, condition="class", attention_head_dim=32, data_dir="data/dcss_terrain")),
    "vae": ("the autoencoder of latent diffusion (train.py --latent=runs/<this run>): 32x32 RGBA icons "
            "to 8x8x4 latents",
            dict(backbone="vae", block_out_channels=(32, 64, 64), layers_per_block=1, channels=4,
                 lr=1e-3, warmup_steps=100, ema_decay=0.998, max_steps=4000, ckpt_every=250,
                 num_samples=0)),
    "gpu": ("a larger prompt model for a GPU, not yet measured on one (bench.py --gpu_check measures "
            "it): 18.0M text UNet, batch 256 with lr 2e-3, bf16 autocast, compiled with CUDA graphs",
            dict(_CPU, channels=4, condition="text", attention_head_dim=32, recolour=3, data_dir=DATA_ALL,
                 held_out="data/heldout.txt", block_out_channels=(64, 128, 256), layers_per_block=2,
                 batch_size=256, lr=2e-3, warmup_steps=200, ema_decay=0.999, max_steps=100000,
                 ckpt_every=1000, sample_every=2000, mixed_precision="bf16", compile=True)),
    "character": ("the walk-cycle model of animate.py: a 5.8M UNet on 64x64 RGBA LPC frames, the "
                  "standing frame as 4 more input channels, the frame as a class, the caption by "
                  "cross-attention; bf16; data_dir: a clone of Universal-LPC-spritesheet",
                  dict(_CPU, channels=4, condition="character", image_size=64, attention_head_dim=32,
                       block_out_channels=(32, 64, 128, 128),
                       down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                       data_dir="Universal-LPC-spritesheet", flip_p=0.0, mixed_precision="bf16",
                       num_samples=36, max_steps=20000)),
    "smoke": ("seconds on a CPU: a 0.18M UNet and 6 steps, for tests and a first look",
              dict(block_out_channels=(16, 32), layers_per_block=1,
                   down_block_types=("DownBlock2D", "AttnDownBlock2D"), norm_num_groups=8,
                   batch_size=8, max_steps=6, lr=1e-3, ema_decay=0.9, log_every=1,
                   sample_every=3, ckpt_every=3, num_samples=4)),
}


def split(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flat key=value pairs -> (the model spec's, the run spec's); an unknown key is an error."""
    unknown = set(values) - MODEL_KEYS - RUN_KEYS
    if unknown:
        raise UserError(f"unknown config keys: {', '.join(sorted(unknown))}")
    return ({k: v for k, v in values.items() if k in MODEL_KEYS},
            {k: v for k, v in values.items() if k in RUN_KEYS})


def preset(name: str, with_model: bool = True, **overrides: Any) -> Config:
    """A Config from a named preset plus flat keyword overrides (validated; with_model=False: the
    run options that depend on the model are left to the caller, whose model is another's)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    model, run = split({**PRESETS[name][1], **overrides})
    cfg = Config(ModelSpec(**model), RunSpec(**run))
    validate(cfg, with_model)
    return cfg


def up_block_types(spec: ModelSpec) -> tuple[str, ...]:
    """The up path mirrors the down path: DownBlock2D -> UpBlock2D, AttnDownBlock2D -> AttnUpBlock2D."""
    return tuple(t.replace("Down", "Up") for t in reversed(spec.down_block_types))


def downsampling(spec: ModelSpec) -> int:
    return 2 ** (len(spec.block_out_channels) - 1)


CHOICES = {"beta_schedule": ("linear", "scaled_linear", "squaredcos_cap_v2"),
           "prediction_type": ("epsilon", "v_prediction", "sample", "flow_prediction"),
           "mixed_precision": ("auto", "no", "bf16", "fp16"),
           "lr_decay": ("none", "cosine"),
           "device": ("auto", "cpu", "cuda"), "condition": ("none", "class", "text", "character"),
           "text_inputs": ("cross", "pooled", "both"), "backbone": ("unet", "dit", "vae")}


def validate(cfg: Config, with_model: bool = True) -> None:
    """Reject values that would fail later, deep inside torch, with a message naming the key;
    with_model: also the run options that depend on the model."""
    validate_model(cfg.model)
    r = cfg.run

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise UserError(msg)

    for key in ("lr", "batch_size", "log_every", "ckpt_every"):
        need(getattr(r, key) > 0, f"{key} must be positive, got {getattr(r, key)}")
    for key in ("max_steps", "max_minutes", "warmup_steps", "sample_every", "threads", "num_samples",
                "min_snr_gamma", "recolour", "repa"):
        need(getattr(r, key) >= 0, f"{key} must be >= 0, got {getattr(r, key)}")
    for key in ("flip_p", "cond_dropout", "short_captions", "ema_decay"):
        need(0 <= getattr(r, key) <= 1, f"{key} must be in [0, 1], got {getattr(r, key)}")
    for key in ("mixed_precision", "device", "lr_decay"):
        need(getattr(r, key) in CHOICES[key], f"{key} must be one of {', '.join(CHOICES[key])}; "
                                              f"got {getattr(r, key)!r}")
    if not with_model:
        return
    need(not r.repa or (cfg.model.backbone, cfg.model.latent) == ("unet", ""),
         "--repa aligns a pixel UNet's middle features: --backbone=unet, no --latent")
    need(not r.short_captions or cfg.model.condition == "text",
         f"short_captions shortens captions: it needs condition=text, not {cfg.model.condition}")
    need(cfg.model.condition != "character" or (r.flip_p, r.recolour) == (0, 0),
         "a character model's frames keep their direction: --flip_p=0 --recolour=0")


def validate_model(s: ModelSpec) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise UserError(msg)

    for key in ("norm_num_groups", "attention_head_dim", "dit_width", "dit_layers"):
        need(getattr(s, key) > 0, f"{key} must be positive, got {getattr(s, key)}")
    need(s.image_size >= 0, f"image_size must be >= 0, got {s.image_size}")
    for key in ("beta_schedule", "prediction_type", "condition", "text_inputs", "backbone"):
        need(getattr(s, key) in CHOICES[key], f"{key} must be one of {', '.join(CHOICES[key])}; "
                                              f"got {getattr(s, key)!r}")
    need(s.channels in (3, 4), f"channels must be 3 (RGB) or 4 (RGBA), got {s.channels}")
    need(s.backbone != "dit" or s.dit_width % s.attention_head_dim == 0,
         f"dit_width {s.dit_width} is not a multiple of attention_head_dim {s.attention_head_dim}")
    need(s.backbone != "dit" or s.condition != "text" or s.text_inputs == "cross",
         "a DiT takes text through cross-attention only: add --text_inputs=cross")
    need(not s.colours_apart or s.condition == "text",
         f"colours_apart splits a prompt: it needs condition=text, not {s.condition}")
    need(s.condition != "character" or (s.backbone, s.channels, s.latent) == ("unet", 4, ""),
         "a character model (condition=character) is an RGBA pixel UNet: --backbone=unet --channels=4, "
         "no --latent")
    need(not (s.backbone == "vae" and s.latent), "an autoencoder (backbone=vae) works on pixels: "
                                                 "drop --latent")
    need(s.backbone != "vae" or s.condition == "none", "an autoencoder (backbone=vae) takes no "
                                                       "condition: drop --condition")
    need(len(s.block_out_channels) == len(s.down_block_types),
         f"block_out_channels has {len(s.block_out_channels)} entries but down_block_types has "
         f"{len(s.down_block_types)}")
    for t in s.down_block_types:
        need(t in ("DownBlock2D", "AttnDownBlock2D"),
             f"down_block_types: {t!r} is not DownBlock2D or AttnDownBlock2D")
    need(all(c % s.norm_num_groups == 0 for c in s.block_out_channels),
         f"every block_out_channels entry must be divisible by norm_num_groups={s.norm_num_groups}")
    need(s.image_size % downsampling(s) == 0,
         f"image_size {s.image_size} is not divisible by {downsampling(s)}, the UNet's "
         "downsampling factor")
    parse_color(s.background)


def parse_color(text: str) -> tuple[int, int, int]:
    """'#rrggbb' or 'rrggbb' -> (r, g, b)."""
    h = text.strip().lstrip("#")
    try:
        if len(h) != 6:
            raise ValueError
        return tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    except ValueError:
        raise UserError(f"not a colour: {text!r} (expected #rrggbb)") from None


# ----------------------------------------------------------------------------- the command line

def _field_types(obj: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(obj if isinstance(obj, type) else type(obj))
    return {f.name: hints[f.name] for f in fields(obj)}


def _convert(text: str, typ: Any, key: str) -> Any:
    """Parse one option string into the field's declared type."""
    if typing.get_origin(typ) is tuple:
        inner = typing.get_args(typ)[0]
        return tuple(_convert(p.strip(), inner, key) for p in text.split(",") if p.strip())
    if typ is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise UserError(f"--{key} takes true or false, got {text!r}")
    try:
        return typ(text)
    except ValueError:
        kind = {int: "an integer", float: "a number"}.get(typ, typ.__name__)
        raise UserError(f"--{key} takes {kind}, got {text!r}") from None


def _metavar(typ: Any) -> str:
    if typing.get_origin(typ) is tuple:
        return _metavar(typing.get_args(typ)[0]) + ",..."
    return {int: "INT", float: "FLOAT", bool: "BOOL", str: "STR"}[typ]


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return repr(value) if value == "" else str(value)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one sentence, no usage block
        raise UserError(message)


GROUPS = {ModelSpec: "model (what it is: saved with it)",
          RunSpec: "run (how training goes: --resume may change these)"}


def build_parser(doc: str, targets: tuple[Any, ...], config: bool) -> _Parser:
    """An argparse parser whose options are the targets' fields, each with its type, default and help."""
    named = re.search(r"python (\w+\.py)", doc)  # the script, as its usage docstring names it
    script = named.group(1) if named else Path(sys.argv[0]).name
    epilog = None
    if config:
        lines = ["presets (--preset=NAME starts from these values; options override them):"]
        for name, (what, values) in PRESETS.items():
            lines.append(textwrap.fill(what, 98, initial_indent=f"  {name}: ", subsequent_indent="    ",
                                       break_on_hyphens=False))
            if values:
                lines.append(textwrap.fill(" ".join(f"--{k}={_show(v)}" for k, v in values.items()), 98,
                                           initial_indent="    ", subsequent_indent="    "))
        epilog = "\n".join(lines)
    parser = _Parser(prog=f"python {script}", usage=f"python {script} [--key=value ...]",
                     description=doc, epilog=epilog, allow_abbrev=False, add_help=True,
                     formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(
                         prog, max_help_position=28, width=100))
    if config:
        parser.add_argument("--preset", default=argparse.SUPPRESS, metavar="NAME",
                            help=f"start from a preset: {', '.join(PRESETS)} (default: seed)")
    for target in targets:
        group = parser.add_argument_group(GROUPS.get(type(target), f"{script} options"))
        for f in fields(target):
            typ = _field_types(target)[f.name]
            name = f.metadata.get("flag") or f.name
            group.add_argument(
                f"--{name}", dest=f.name, default=argparse.SUPPRESS, metavar=_metavar(typ),
                type=lambda s, typ=typ, name=name: _convert(s, typ, name),
                nargs="?" if typ is bool else None, const=True if typ is bool else None,
                help=f"{f.metadata.get('help', '')} (default: {_show(f.default)})")
    return parser


def _unknown(arg: str, parser: _Parser) -> UserError:
    """One sentence for an option the script does not take: the closest ones, else them all."""
    if not arg.startswith("--"):
        return UserError(f"arguments look like --key=value, got {arg!r}")
    name = arg.split("=")[0]
    valid = sorted(s for a in parser._actions for s in a.option_strings if s.startswith("--")
                   and s != "--help")
    names = [v[2:] for v in valid]
    close = [v for v in names if len(name) > 4 and v.startswith(name[2:])][:3] or \
        difflib.get_close_matches(name[2:], names, n=3, cutoff=0.75)
    if close:
        return UserError(f"unknown option {name}; did you mean {' or '.join('--' + c for c in close)}?")
    return UserError(f"unknown option {name}; valid options: {', '.join(valid)}")


def parse_args(argv: list[str], doc: str, *targets: Any, config: bool = True,
               default_preset: str = "seed") -> tuple[Config | None, dict[str, Any]]:
    """Set the targets' fields from `--key=value` options and return the Config (from `--preset`, else
    default_preset, with the overrides applied; None when config=False) and the options given.
    `-h` / `--help` prints the help and exits."""
    specs = (ModelSpec(), RunSpec()) if config else ()
    parser = build_parser(doc, (*specs, *targets), config)
    ns, extra = parser.parse_known_args(argv)
    if extra:
        raise _unknown(extra[0], parser)
    given = dict(vars(ns))
    cfg = None
    if config:
        # a run from --init takes that model's options, a resumed run its own (train.py checks the
        # ones given against them)
        spec_keys = RUN_KEYS if given.get("init") else MODEL_KEYS | RUN_KEYS
        cfg = preset(given.get("preset", default_preset),
                     with_model=not (given.get("init") or given.get("resume")),
                     **{k: v for k, v in given.items() if k in spec_keys})
    for key, value in given.items():
        target = next((t for t in targets if key in _field_types(t)), None)
        if target is not None:
            setattr(target, key, value)
    return cfg, given


def script(main: typing.Callable[[list[str]], int | None]) -> typing.Callable[[list[str]], int]:
    """Wrap a script's main(argv): a UserError becomes one line on stderr and exit status 2."""
    @functools.wraps(main)
    def wrapped(argv: list[str]) -> int:
        try:
            return main(argv) or 0
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return wrapped


# ----------------------------------------------------------------------------- saved specs

def _typed(cls: type, values: dict[str, Any]) -> Any:
    """A spec dataclass from saved JSON values; tuples come back from lists."""
    types_ = _field_types(cls)
    unknown = set(values) - set(types_)
    if unknown:
        raise UserError(f"{cls.__name__} has no keys {', '.join(sorted(unknown))}")
    return cls(**{k: tuple(v) if typing.get_origin(types_[k]) is tuple else v for k, v in values.items()})


def from_legacy(flat: dict[str, Any]) -> dict[str, Any]:
    """The one flat config of models saved before the model/run split (the shipped ones among them):
    `conditional` and `prompts` become `condition` and `text_inputs`."""
    flat = dict(flat)
    conditional, prompts = flat.pop("conditional", False), flat.pop("prompts", "none")
    flat["condition"] = "text" if prompts != "none" else "class" if conditional else "none"
    if prompts != "none":
        flat["text_inputs"] = prompts
    return flat


def model_from_dict(d: dict[str, Any]) -> ModelSpec:
    spec = _typed(ModelSpec, d)
    validate_model(spec)
    return spec


def config_from_dict(d: dict[str, Any]) -> Config:
    """{"model": ..., "run": ...}, or a legacy flat config."""
    if "model" not in d:
        model, run = split(from_legacy(d))
        d = {"model": model, "run": run}
    cfg = Config(_typed(ModelSpec, d["model"]), _typed(RunSpec, d["run"]))
    validate(cfg)
    return cfg


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save(cfg: Config, path: Path) -> None:
    path.write_text(json.dumps(to_dict(cfg), indent=2) + "\n")


def latest_run(out_dir: str | Path = "runs", samplers_only: bool = False) -> Path | None:
    """The most recently changed run folder (one with a config.json) under out_dir; with
    samplers_only, of the runs that can sample (not an autoencoder's)."""
    root = Path(out_dir)
    runs = [p.parent for p in root.glob("*/config.json")] if root.is_dir() else []
    if samplers_only:
        runs = [r for r in runs if load(r / "config.json").model.backbone != "vae"]
    return max(runs, key=lambda p: p.stat().st_mtime, default=None)


def load(path: Path) -> Config:
    try:
        return config_from_dict(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise UserError(f"cannot read config {path}: {e}") from None
