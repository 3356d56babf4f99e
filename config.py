"""One typed config for every script: presets by name, `--key=value` overrides, JSON beside each run.

Usage (in a script):
    opts = MyOptions()
    cfg, given = parse_args(argv, __doc__, opts)       # Config from --preset plus overrides; opts set too
    parse_args(argv, __doc__, opts, config=False)      # a script without a training config

Every option is a dataclass field declared with `option(default, "help")`: the field is the one place
that holds its type, its default and its description, and `--help` is built from it. Booleans take
true/false (a bare `--flag` means true); tuples take comma-separated values. An unknown key, a value of
the wrong type or a value out of range stops with one sentence.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import re
import sys
import textwrap
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
DEFAULT_SIZE = 32  # the seed's image size, used when the data has no single size of its own


def resolve_path(path: str | Path) -> Path:
    """A relative path is looked up from the current folder, then from the repo root (so that
    data/dcss_items and pretrained/ work from anywhere)."""
    p = Path(path).expanduser()
    if not p.is_absolute() and not p.exists() and (ROOT / p).exists():
        return ROOT / p
    return p


class UserError(Exception):
    """A problem with the user's input: scripts print its message as one line and exit 2."""


def option(default: Any, help: str, flag: str = "") -> Any:
    """A dataclass field that is also a command-line option (`flag`: its name when not the field's)."""
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass
class Config:
    # data
    data_dir: str = option("data/dcss_items", "folder of sprites (recursive; several: comma-separated); "
                                              "the class of an image is its first-level subfolder, "
                                              "its caption is in metadata.jsonl")
    image_size: int = option(0, f"side in pixels the model works at; 0: the data's own size when all "
                                f"images share one, else {DEFAULT_SIZE} (resized with NEAREST)")
    channels: int = option(3, "3: RGB, transparency composited on --background; 4: RGBA, the model "
                              "learns transparency")
    background: str = option("#000000", "colour under transparent pixels for RGB models (#rrggbb)")
    flip_p: float = option(0.5, "probability of a horizontal flip, per image and step")
    # model: diffusers UNet2DModel; the up blocks mirror the down blocks
    backbone: str = option("unet", "unet | dit (a diffusion transformer on patches of 2 pixels) | vae "
                                   "(the autoencoder of latent diffusion, for --latent)")
    block_out_channels: tuple[int, ...] = option((64, 128, 256), "channels of each UNet level")
    layers_per_block: int = option(2, "ResNet layers per UNet level")
    down_block_types: tuple[str, ...] = option(("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                                               "DownBlock2D or AttnDownBlock2D (self-attention) for "
                                               "each level")
    attention_head_dim: int = option(8, "channels per attention head (32: same parameters, 1.2x faster "
                                        "on CPU)")
    norm_num_groups: int = option(32, "GroupNorm groups; must divide every block_out_channels entry")
    dit_width: int = option(128, "backbone=dit: channels of each token (a multiple of attention_head_dim)")
    dit_layers: int = option(4, "backbone=dit: transformer blocks (4 x 128 trains as fast as the cpu "
                                "preset's UNet)")
    latent: str = option("", "latent diffusion: a trained autoencoder (a --backbone=vae run); the model "
                             "learns its latents, sampling decodes them")
    conditional: bool = option(False, "class-conditional: one embedding per class folder, plus "
                                      "'no class'")
    prompts: str = option("none", "condition on captions through a frozen text encoder: none | cross "
                                  "(cross-attention on its token embeddings) | pooled (its sentence "
                                  "vector added to the time embedding) | both")
    cond_dropout: float = option(0.1, "share of class labels or captions replaced by 'none' (for "
                                      "classifier-free guidance)")
    # diffusion: 1000 timesteps, betas 1e-4..0.02 (the seed's; model.build_scheduler)
    beta_schedule: str = option("linear", "noise schedule: linear | scaled_linear | squaredcos_cap_v2")
    prediction_type: str = option("epsilon", "what the UNet predicts: epsilon | v_prediction | sample")
    min_snr_gamma: float = option(0.0, "min-SNR loss weighting with this gamma (Hang et al. 2023); "
                                       "0: unweighted MSE")
    # optimisation: Adam, gradients clipped to norm 1
    lr: float = option(1e-4, "Adam learning rate (after warm-up)")
    warmup_steps: int = option(0, "steps of linear learning-rate warm-up")
    batch_size: int = option(16, "images per step (per process)")
    max_steps: int = option(0, "training length in optimiser steps; 0: 500 epochs (the seed's length)")
    max_minutes: float = option(0.0, "also stop (and export) after this many minutes of training steps; "
                                     "0: no limit")
    ema_decay: float = option(0.999, "decay of the weights' moving average (the exported weights)")
    mixed_precision: str = option("no", "no | bf16 | fp16 (GPU; bf16 is 15x slower on this CPU)")
    compile: bool = option(False, "torch.compile the UNet (GPU; minutes to compile on a CPU)")
    # run
    seed: int = option(0, "seed of the model's initialisation and of every step's randomness")
    out_dir: str = option("runs", "folder that holds the runs")
    run_name: str = option("", "the run's folder under out_dir; default: a timestamp and the preset")
    device: str = option("auto", "auto | cpu | cuda")
    threads: int = option(0, "CPU threads for torch; 0: torch's default")
    log_every: int = option(10, "steps between writes to losses.csv (and checks of max_minutes)")
    sample_every: int = option(1000, "steps between sample grids; 0: only at the end")
    ckpt_every: int = option(500, "steps between checkpoints")
    num_samples: int = option(16, "images in each sample grid; 0: no grids")


EPOCHS = 500  # the seed's training length, used when max_steps is 0

# name: (what it is for, values that differ from Config's defaults)
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "seed": ("the reference setup of the original script: 14.7M UNet, RGB, Adam 1e-4, batch 16, "
             "500 epochs (about 6 h on 2 CPU cores)", {}),
    "cpu": ("the model to train on a CPU, about 90 minutes on 2 cores: 2.6M UNet, RGBA, "
            "class-conditional, v-prediction, lr 8e-4; chosen by recipes.py (RESULTS.md)",
            dict(block_out_channels=(32, 64, 128), layers_per_block=1, channels=4, conditional=True,
                 lr=8e-4, warmup_steps=100, ema_decay=0.998, min_snr_gamma=5.0,
                 prediction_type="v_prediction", max_steps=8000, ckpt_every=250)),
    "prompt": ("the cpu model conditioned on captions instead of classes, trained on the item icons "
               "and the monsters: generate.py --prompt='a blue book'",
               dict(block_out_channels=(32, 64, 128), layers_per_block=1, channels=4, prompts="both",
                    attention_head_dim=32, data_dir="data/dcss_items,data/dcss_monsters", lr=8e-4,
                    warmup_steps=100, ema_decay=0.998, min_snr_gamma=5.0,
                    prediction_type="v_prediction", max_steps=8000, ckpt_every=250)),
    "terrain": ("the cpu UNet on the 1,756 floor, wall and water tiles, RGB, one class each: the "
                "model for seamless tiles (generate.py --tileable)",
                dict(block_out_channels=(32, 64, 128), layers_per_block=1, conditional=True,
                     attention_head_dim=32, data_dir="data/dcss_terrain", lr=8e-4, warmup_steps=100,
                     ema_decay=0.998, min_snr_gamma=5.0, prediction_type="v_prediction",
                     max_steps=8000, ckpt_every=250)),
    "vae": ("the autoencoder of latent diffusion (train.py --latent=runs/<this run>): 32x32 RGBA icons "
            "to 8x8x4 latents",
            dict(backbone="vae", block_out_channels=(32, 64, 64), layers_per_block=1, channels=4,
                 lr=1e-3, warmup_steps=100, ema_decay=0.998, max_steps=4000, ckpt_every=250,
                 num_samples=0)),
    "smoke": ("seconds on a CPU: a 0.18M UNet and 6 steps, for tests and a first look",
              dict(block_out_channels=(16, 32), layers_per_block=1,
                   down_block_types=("DownBlock2D", "AttnDownBlock2D"), norm_num_groups=8,
                   batch_size=8, max_steps=6, lr=1e-3, ema_decay=0.9, log_every=1,
                   sample_every=3, ckpt_every=3, num_samples=4)),
}


def preset(name: str, **overrides: Any) -> Config:
    """A Config from a named preset plus keyword overrides (validated)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    cfg = dataclasses.replace(Config(), **{**PRESETS[name][1], **overrides})
    validate(cfg)
    return cfg


def up_block_types(cfg: Config) -> tuple[str, ...]:
    """The up path mirrors the down path: DownBlock2D -> UpBlock2D, AttnDownBlock2D -> AttnUpBlock2D."""
    return tuple(t.replace("Down", "Up") for t in reversed(cfg.down_block_types))


def downsampling(cfg: Config) -> int:
    return 2 ** (len(cfg.block_out_channels) - 1)


def validate(cfg: Config) -> None:
    """Reject values that would fail later, deep inside torch, with a message naming the key."""
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise UserError(msg)

    for key in ("lr", "batch_size", "norm_num_groups", "attention_head_dim", "log_every", "ckpt_every",
                "dit_width", "dit_layers"):
        need(getattr(cfg, key) > 0, f"{key} must be positive, got {getattr(cfg, key)}")
    for key in ("image_size", "max_steps", "max_minutes", "warmup_steps", "sample_every", "threads",
                "num_samples", "min_snr_gamma"):
        need(getattr(cfg, key) >= 0, f"{key} must be >= 0, got {getattr(cfg, key)}")
    for key in ("flip_p", "cond_dropout", "ema_decay"):
        need(0 <= getattr(cfg, key) <= 1, f"{key} must be in [0, 1], got {getattr(cfg, key)}")
    need(cfg.channels in (3, 4), f"channels must be 3 (RGB) or 4 (RGBA), got {cfg.channels}")
    need(cfg.backbone != "dit" or cfg.dit_width % cfg.attention_head_dim == 0,
         f"dit_width {cfg.dit_width} is not a multiple of attention_head_dim {cfg.attention_head_dim}")
    need(cfg.backbone != "dit" or cfg.prompts in ("none", "cross"),
         "a DiT takes prompts through cross-attention only: use --prompts=cross")
    need(not (cfg.backbone == "vae" and cfg.latent), "an autoencoder (backbone=vae) works on pixels: "
                                                     "drop --latent")
    need(not (cfg.conditional and cfg.prompts != "none"),
         "a model takes classes (--conditional) or prompts (--prompts), not both")
    need(len(cfg.block_out_channels) == len(cfg.down_block_types),
         f"block_out_channels has {len(cfg.block_out_channels)} entries but down_block_types has "
         f"{len(cfg.down_block_types)}")
    for t in cfg.down_block_types:
        need(t in ("DownBlock2D", "AttnDownBlock2D"),
             f"down_block_types: {t!r} is not DownBlock2D or AttnDownBlock2D")
    need(all(c % cfg.norm_num_groups == 0 for c in cfg.block_out_channels),
         f"every block_out_channels entry must be divisible by norm_num_groups={cfg.norm_num_groups}")
    need(cfg.image_size % downsampling(cfg) == 0,
         f"image_size {cfg.image_size} is not divisible by {downsampling(cfg)}, the UNet's "
         "downsampling factor")
    choices = {"beta_schedule": ("linear", "scaled_linear", "squaredcos_cap_v2"),
               "prediction_type": ("epsilon", "v_prediction", "sample"),
               "mixed_precision": ("no", "bf16", "fp16"), "device": ("auto", "cpu", "cuda"),
               "prompts": ("none", "cross", "pooled", "both"), "backbone": ("unet", "dit", "vae")}
    for key, allowed in choices.items():
        need(getattr(cfg, key) in allowed, f"{key} must be one of {', '.join(allowed)}; "
                                           f"got {getattr(cfg, key)!r}")
    parse_color(cfg.background)


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
    hints = typing.get_type_hints(type(obj))
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
        group = parser.add_argument_group(
            "training config" if isinstance(target, Config) else f"{script} options")
        for f in fields(target):
            typ = _field_types(target)[f.name]
            name = f.metadata.get("flag") or f.name
            group.add_argument(
                f"--{name}", dest=f.name, default=argparse.SUPPRESS, metavar=_metavar(typ),
                type=lambda s, typ=typ, name=name: _convert(s, typ, name),
                nargs="?" if typ is bool else None, const=True if typ is bool else None,
                help=f"{f.metadata.get('help', '')} (default: {_show(f.default)})")
    return parser


def parse_args(argv: list[str], doc: str, *targets: Any, config: bool = True,
               default_preset: str = "seed") -> tuple[Config | None, dict[str, Any]]:
    """Set the targets' fields from `--key=value` options and return the Config (from `--preset`, else
    default_preset, with the overrides applied; None when config=False) and the options given.
    `-h` / `--help` prints the help and exits."""
    if config:
        targets = (Config(), *targets)
    parser = build_parser(doc, targets, config)
    ns, extra = parser.parse_known_args(argv)
    for arg in extra:
        if not arg.startswith("--"):
            raise UserError(f"arguments look like --key=value, got {arg!r}")
        valid = sorted(["preset"] * config + [a.option_strings[0][2:] for a in parser._actions
                                              if a.option_strings and a.dest not in ("help", "preset")])
        raise UserError(f"unknown option {arg.split('=')[0]}; valid options: "
                        + ", ".join(f"--{k}" for k in valid))
    given = dict(vars(ns))
    cfg = None
    if config:
        cfg = preset(given.pop("preset", default_preset))
        targets = (cfg, *targets[1:])
    for key, value in given.items():
        setattr(next(t for t in targets if key in _field_types(t)), key, value)
    if cfg is not None:
        validate(cfg)
    return cfg, vars(ns)


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


# ----------------------------------------------------------------------------- saved configs

def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(d: dict[str, Any]) -> Config:
    """Config from saved JSON; tuples come back from lists. Keys this version does not know are an error."""
    types_ = _field_types(Config())
    unknown = set(d) - set(types_)
    if unknown:
        raise UserError(f"config has unknown keys: {', '.join(sorted(unknown))}")
    values = {k: tuple(v) if typing.get_origin(types_[k]) is tuple else v for k, v in d.items()}
    cfg = Config(**values)
    validate(cfg)
    return cfg


def save(cfg: Config, path: Path) -> None:
    path.write_text(json.dumps(to_dict(cfg), indent=2) + "\n")


def load(path: Path) -> Config:
    try:
        return from_dict(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise UserError(f"cannot read config {path}: {e}") from None
