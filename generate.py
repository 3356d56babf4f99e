"""Generate pixel-art icons with a trained model; writes a sample grid and the single images.

Usage:
    python generate.py                          # latest run under runs/, else the shipped model
    python generate.py --model=runs/mine --num_images=32 --seed=1 --sampler=dpm --steps=20
    python generate.py --sampler=ddpm           # the seed's 1000-step DDPM sampler
    python generate.py --class=potion,book --guidance=3   # conditional models; --class=all: a row per class
    python generate.py --class=none             # a conditional model sampled without a class

Writes samples/generated_images.png (the grid, upscaled with nearest-neighbour so pixels stay sharp),
samples/generated_images_sheet.png (a sprite sheet at native size), samples/generated/NNNN.png (each
icon at native size; RGBA models keep transparency) and samples/generated/raw/ (before snapping).
Colours are snapped to the training data's palette (--colors=32) or to --palette=my.hex / my.gpl, with
no dithering; --palette=none keeps the raw colours. Alpha is always snapped to 0 or 255.
Samplers: ddpm (default 1000 steps), ddim (50), dpm (DPM-Solver++, 10: the default); --steps overrides.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from config import UserError, apply_overrides, split_argv
from dataset import make_grid, to_uint8
from model import SAMPLERS, Loaded, load_model, make_sampler, sample
from palette import data_palette, load_palette, snap, snap_alpha


@dataclass
class GenerateOptions:
    model: str = ""  # run folder or exported model folder; default: latest run, else pretrained/
    out_dir: str = "runs"  # where to look for the latest run
    num_images: int = 16  # in all; with --class, per class
    seed: int = 0
    sampler: str = "dpm"  # the fastest within 5% of DDPM-1000's FD-Lite0 (README: samplers)
    steps: int = 0  # 0: the sampler's default
    classes: str = ""  # conditional models: names (comma-separated), 'all' (a row each), 'none'
    #                    (unconditional); default: the classes in turn
    guidance: float = 3.0  # classifier-free guidance scale (1: plain conditional)
    palette: str = "data"  # snap colours to: data (the training data's palette) | none | a .hex / .gpl file
    colors: int = 32  # size of the data palette
    out: str = "samples/generated_images.png"
    scale: int = 4  # nearest-neighbour upscale of the grid
    device: str = "auto"


def parse(argv: list[str]) -> GenerateOptions:
    opts = GenerateOptions()
    pairs = split_argv(argv)
    if "class" in pairs:  # `class` is a Python keyword; the CLI uses it anyway
        pairs["classes"] = pairs.pop("class")
    apply_overrides([opts], pairs)
    if opts.num_images < 1 or opts.scale < 1 or opts.steps < 0:
        raise UserError("num_images and scale must be >= 1 and steps >= 0")
    if opts.palette not in ("data", "none"):
        load_palette(opts.palette)  # a bad palette file fails now, not after minutes of sampling
    if opts.sampler not in SAMPLERS:
        raise UserError(f"sampler must be one of {', '.join(SAMPLERS)}; got {opts.sampler!r}")
    return opts


def class_rows(m: Loaded, spec: str) -> list[str | None]:
    """The class of each grid row: names from --class, every class for 'all'; [None] for one unlabelled
    block ('' cycles through the classes, 'none' is unconditional)."""
    if not m.cfg.conditional:
        if spec and spec != "none":
            raise UserError(f"this model is unconditional (trained without --conditional); "
                            f"drop --class={spec}")
        return [None]
    if spec in ("", "none"):
        return [None]
    names = m.classes if spec == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in m.classes]
    if unknown:
        raise UserError(f"unknown class {', '.join(unknown)}; known classes: {', '.join(m.classes)}")
    return names


def class_labels(m: Loaded, spec: str, rows: list[str | None], n: int) -> torch.Tensor | None:
    """The label of each image: per row for named classes; for a conditional model without --class,
    the classes in turn (guided, so the grid shows a bit of everything); 'none': the "no class" label."""
    if not m.cfg.conditional:
        return None
    if rows != [None]:
        return torch.tensor([m.classes.index(r) for r in rows]).repeat_interleave(n)
    if spec == "none":
        return torch.full((n,), len(m.classes))
    return torch.arange(n) % len(m.classes)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA GPU is visible")
    return torch.device(name)


def generate(m: Loaded, opts: GenerateOptions) -> tuple[torch.Tensor, list[str | None]]:
    """Raw uint8 N,C,H,W images, row by row, and the class of each row."""
    rows = class_rows(m, opts.classes)
    labels = class_labels(m, opts.classes, rows, opts.num_images)
    n = opts.num_images * len(rows)
    sampler = make_sampler(m.scheduler, opts.sampler, opts.steps)
    bar = lambda ts: tqdm(ts, desc=f"{opts.sampler} x{len(ts)}", unit="step")  # noqa: E731
    guidance = 1.0 if opts.classes == "none" else opts.guidance
    x = sample(m.unet.to(resolve_device(opts.device)), sampler, n, seed=opts.seed, labels=labels,
               guidance=guidance, progress=bar)
    return to_uint8(x), rows


def postprocess(images: torch.Tensor, m: Loaded, opts: GenerateOptions) -> torch.Tensor:
    """Pixel-perfect output: colours snapped to the palette (unless --palette=none), alpha to 0/255."""
    if opts.palette == "none":
        return images if images.shape[1] == 3 else torch.cat([images[:, :3], snap_alpha(images[:, 3:])], 1)
    pal = data_palette(m, opts.colors) if opts.palette == "data" else load_palette(opts.palette)
    return snap(images, pal)


def labelled_grid(images: torch.Tensor, rows: list[str | None], per_row: int, scale: int) -> Image.Image:
    """The grid, with the class name left of each row when rows are classes."""
    grid = make_grid(images, ncols=per_row if rows != [None] else 0, scale=scale)
    if rows == [None]:
        return grid
    font = ImageFont.load_default()
    margin = max(int(ImageDraw.Draw(grid).textlength(r, font=font)) for r in rows) + 8
    out = Image.new(grid.mode, (grid.width + margin, grid.height), (255, 255, 255, 255)[:len(grid.mode)])
    out.paste(grid, (margin, 0))
    draw, row_h = ImageDraw.Draw(out), grid.height / len(rows)
    for i, r in enumerate(rows):
        draw.text((4, int((i + 0.5) * row_h) - 6), r, fill=(0, 0, 0, 255)[:len(grid.mode)], font=font)
    return out


def save(images: torch.Tensor, raw: torch.Tensor, rows: list[str | None],
         opts: GenerateOptions) -> list[Path]:
    """The upscaled preview grid, a native-size sprite sheet, the single icons, and the raw output."""
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    per_row = opts.num_images if rows != [None] else 0
    labelled_grid(images, rows, per_row, opts.scale).save(out)
    sheet = out.with_name(out.stem + "_sheet.png")
    make_grid(images, ncols=per_row, scale=1, pad=0).save(sheet)
    singles = out.parent / out.stem.replace("_images", "")
    for folder, batch in ((singles, images), (singles / "raw", raw)):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):  # a smaller run must not leave older icons behind
            old.unlink()
        for i, img in enumerate(batch):
            make_grid(img[None], scale=1, pad=0).save(folder / f"{i:04d}.png")
    return [out, sheet, singles, singles / "raw"]


def main(argv: list[str]) -> int:
    try:
        opts = parse(argv)
        m = load_model(opts.model or None, opts.out_dir)
        print(f"model: {m.source}")
        raw, rows = generate(m, opts)
        written = save(postprocess(raw, m, opts), raw, rows, opts)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(raw)} icons (palette: {opts.palette}): " + ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
