"""One typed config for every script: presets by name, `--key=value` overrides, JSON beside each run.

Usage (from any script):
    python train.py --preset=smoke --lr=3e-4 --block_out_channels=32,64
    cfg = parse_args(sys.argv[1:], opts)   # in a script: Config, plus fields of its own options dataclass

Booleans take true/false/1/0 (a bare `--flag` means true); tuples take comma-separated values.
An unknown key, a value of the wrong type or a value out of range stops with one clear message.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent


class UserError(Exception):
    """A problem with the user's input: scripts print its message as one line and exit 2."""


@dataclass
class Config:
    # data
    data_dir: str = "data/dcss_items"  # relative: from the current folder, else the repo root
    image_size: int = 32
    channels: int = 3  # 3: RGB composited on `background`; 4: RGBA, the model learns transparency
    background: str = "#000000"  # where RGB images show through transparency
    flip_p: float = 0.5  # random horizontal flip
    # model (diffusers UNet2DModel); up blocks mirror the down blocks
    block_out_channels: tuple[int, ...] = (64, 128, 256)
    layers_per_block: int = 2
    down_block_types: tuple[str, ...] = ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D")
    attention_head_dim: int = 8
    norm_num_groups: int = 32  # GroupNorm groups; must divide every entry of block_out_channels
    dropout: float = 0.0
    conditional: bool = False  # class-conditional (classes = first-level folders)
    class_dropout: float = 0.1  # share of labels replaced by "no class" for classifier-free guidance
    # diffusion
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"  # linear | scaled_linear | squaredcos_cap_v2
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction_type: str = "epsilon"  # epsilon | v_prediction | sample
    loss_weighting: str = "none"  # none | min_snr (Hang et al. 2023, gamma below)
    min_snr_gamma: float = 5.0
    # optimisation
    optimizer: str = "adam"  # adam | adamw
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    batch_size: int = 16  # per process
    grad_accum: int = 1
    epochs: int = 500
    max_steps: int = 0  # > 0 overrides epochs
    max_minutes: float = 0.0  # > 0: also stop (and export) after this many minutes of training steps
    grad_clip: float = 1.0  # 0 disables
    ema_decay: float = 0.999
    mixed_precision: str = "no"  # no | bf16 | fp16 (GPU)
    compile: bool = False
    channels_last: bool = False
    # run
    seed: int = 0
    out_dir: str = "runs"
    run_name: str = ""  # default: a timestamp
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # CPU threads for torch; 0 = torch's default
    log_every: int = 10  # steps between CSV flushes and progress-bar updates
    sample_every: int = 1000  # steps between sample grids (0: only at the end)
    ckpt_every: int = 500  # steps between checkpoints
    num_samples: int = 16  # images in each training-time sample grid
    sampler: str = "dpm"  # sampler of the training-time grids
    sample_steps: int = 10


PRESETS: dict[str, dict[str, Any]] = {
    # The reference setup of the original seed script.
    "seed": {},
    # About 90 minutes on 2 CPU cores (about 88 steps a minute): the 2.6M UNet that learned fastest in
    # the probes (PROBES.md); v-prediction and lr 8e-4 chosen by recipes.py (README: choosing the recipe).
    "cpu": dict(
        block_out_channels=(32, 64, 128), layers_per_block=1, channels=4, conditional=True,
        optimizer="adamw", lr=8e-4, warmup_steps=100, ema_decay=0.998, loss_weighting="min_snr",
        prediction_type="v_prediction",
        max_steps=8000, sample_every=1000, ckpt_every=250,
    ),
    # Seconds on a CPU: a tiny model for tests and a first look at the pipeline.
    "smoke": dict(
        block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), norm_num_groups=8,
        batch_size=8, max_steps=6, lr=1e-3, ema_decay=0.9, log_every=1,
        sample_every=3, ckpt_every=3, num_samples=4, sample_steps=4,
    ),
}


def preset(name: str, **overrides: Any) -> Config:
    """A Config from a named preset plus keyword overrides (validated)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    cfg = dataclasses.replace(Config(), **{**PRESETS[name], **overrides})
    validate(cfg)
    return cfg


def up_block_types(cfg: Config) -> tuple[str, ...]:
    """The up path mirrors the down path: DownBlock2D -> UpBlock2D, AttnDownBlock2D -> AttnUpBlock2D."""
    return tuple(t.replace("Down", "Up") for t in reversed(cfg.down_block_types))


def validate(cfg: Config) -> None:
    """Reject values that would fail later, deep inside torch, with a message naming the key."""
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise UserError(msg)

    for key in ("lr", "batch_size", "norm_num_groups", "attention_head_dim", "image_size",
                "num_train_timesteps", "grad_accum",
                "log_every", "ckpt_every", "num_samples", "sample_steps"):
        need(getattr(cfg, key) > 0, f"{key} must be positive, got {getattr(cfg, key)}")
    for key in ("epochs", "max_steps", "max_minutes", "warmup_steps", "weight_decay", "grad_clip",
                "sample_every", "threads", "dropout"):
        need(getattr(cfg, key) >= 0, f"{key} must be >= 0, got {getattr(cfg, key)}")
    for key in ("flip_p", "class_dropout", "ema_decay"):
        need(0 <= getattr(cfg, key) <= 1, f"{key} must be in [0, 1], got {getattr(cfg, key)}")
    need(cfg.epochs > 0 or cfg.max_steps > 0, "set epochs or max_steps above 0")
    need(cfg.channels in (3, 4), f"channels must be 3 (RGB) or 4 (RGBA), got {cfg.channels}")
    need(len(cfg.block_out_channels) == len(cfg.down_block_types),
         f"block_out_channels has {len(cfg.block_out_channels)} entries but down_block_types has "
         f"{len(cfg.down_block_types)}")
    for t in cfg.down_block_types:
        need(t in ("DownBlock2D", "AttnDownBlock2D"),
             f"down_block_types: {t!r} is not DownBlock2D or AttnDownBlock2D")
    need(all(c % cfg.norm_num_groups == 0 for c in cfg.block_out_channels),
         f"every block_out_channels entry must be divisible by norm_num_groups={cfg.norm_num_groups}")
    factor = 2 ** (len(cfg.block_out_channels) - 1)
    need(cfg.image_size % factor == 0,
         f"image_size {cfg.image_size} is not divisible by {factor}, the UNet's downsampling factor")
    choices = {"beta_schedule": ("linear", "scaled_linear", "squaredcos_cap_v2"),
               "prediction_type": ("epsilon", "v_prediction", "sample"),
               "loss_weighting": ("none", "min_snr"), "optimizer": ("adam", "adamw"),
               "mixed_precision": ("no", "bf16", "fp16"), "device": ("auto", "cpu", "cuda"),
               "sampler": ("ddpm", "ddim", "dpm")}
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


def _convert(text: str, typ: Any, key: str) -> Any:
    """Parse one override string into the field's declared type."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):  # Optional[...]: the one non-None member
        typ = next(t for t in typing.get_args(typ) if t is not type(None))
        origin = typing.get_origin(typ)
    if origin is tuple:
        inner = typing.get_args(typ)[0]
        return tuple(_convert(p, inner, key) for p in text.split(",") if p.strip())
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


def _field_types(obj: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(obj))
    return {f.name: hints[f.name] for f in fields(obj)}


def apply_overrides(targets: list[Any], pairs: dict[str, str], also: tuple[str, ...] = ()) -> None:
    """Set each key on whichever dataclass in `targets` has that field; unknown keys are rejected."""
    for key, text in pairs.items():
        owner = next((t for t in targets if key in _field_types(t)), None)
        if owner is None:
            valid = sorted([*also, *(k for t in targets for k in _field_types(t))])
            raise UserError(f"unknown option --{key}; valid options: "
                            + ", ".join(f"--{k}" for k in valid))
        setattr(owner, key, _convert(text, _field_types(owner)[key], key))


def split_argv(argv: list[str]) -> dict[str, str]:
    """['--a=1', '--flag'] -> {'a': '1', 'flag': 'true'}; anything else is an error."""
    pairs: dict[str, str] = {}
    for arg in argv:
        if not arg.startswith("--") or len(arg) < 3:
            raise UserError(f"arguments look like --key=value, got {arg!r}")
        key, eq, value = arg[2:].partition("=")
        pairs[key] = value if eq else "true"
    return pairs


def parse_args(argv: list[str], *extra: Any, default_preset: str = "seed") -> Config:
    """Config from `--preset=NAME` (else default_preset), then every `--key=value` override.

    Keys that belong to a script's own options dataclasses (`extra`) are set on those instead.
    """
    pairs = split_argv(argv)
    cfg = preset(pairs.pop("preset", default_preset))
    apply_overrides([cfg, *extra], pairs, also=("preset",))
    validate(cfg)
    return cfg


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
