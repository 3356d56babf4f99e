"""Generate pixel-art sprites with a trained model; writes a sample grid, a sprite sheet and each sprite.

Usage:
    python generate.py                          # the latest run under runs/, else the shipped model
    python generate.py --model=runs/mine --num_images=32 --seed=1 --steps=20
    python generate.py --sampler=ddpm           # the seed's 1000-step DDPM sampler
    python generate.py --class=potion,book --guidance=3   # conditional models; --class=all: a row per class
    python generate.py --class=none             # a conditional model sampled without a class
    python generate.py --prompt="a blue book" --num_images=8   # prompt models (train.py --prompts)
    python generate.py --prompt_file=prompts.txt --negative_prompt="grey"   # a row per prompt
    python generate.py --palette=my.hex         # snap to your palette (.hex or .gpl); none: raw colours
    python generate.py --init=samples/generated/0000.png --strength=0.5   # variations of a sprite
    python generate.py --init=samples/generated/0000.png --mask=mask.png  # repaint the mask's white
    python generate.py --init=samples/generated/0000.png --extend=right --by=8   # outpainting
    python generate.py --tileable               # sprites that wrap in x and y

Writes samples/generated_images.png (the grid, upscaled with nearest-neighbour so pixels stay sharp),
samples/generated_images_sheet.png (a sprite sheet at native size), samples/generated/NNNN.png (each
sprite at native size; RGBA models keep transparency) and samples/generated/raw/ (before snapping).
Colours are snapped to the training data's palette (saved with the model) with no dithering; alpha
is always snapped to 0 or 255. Samplers: ddpm (1000 steps), ddim (50), dpm (DPM-Solver++, 10: the
default); --steps overrides the count.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from config import Config, UserError, option, parse_args, parse_color, script
from dataset import make_grid, to_uint8
from model import (GUIDANCE, PALETTE, SAMPLER, SAMPLERS, Loaded, class_conditions, load_model, sample,
                   text_conditions)
from palette import load_palette, snap, snap_alpha

@dataclass
class SamplingOptions:
    """The options of every script that samples a model (generate.py, evaluate.py), described once."""
    model: str = option("", "a run, an exported model or a folder of runs (its latest); default: the "
                            "latest run under runs/, else pretrained/")
    seed: int = option(0, "seed of the starting noise")
    sampler: str = option(SAMPLER, f"{' | '.join(SAMPLERS)} (DPM-Solver++)")
    steps: int = option(0, "sampler steps; 0: the sampler's default (" + ", ".join(
        f"{k} {v[1]}" for k, v in SAMPLERS.items()) + ")")
    classes: str = option("", "conditional models: class names (comma-separated), 'all' (a row each) "
                              "or 'none' (unconditional); default: the classes in turn", flag="class")
    guidance: float = option(GUIDANCE, "classifier-free guidance scale for conditional models (1: plain "
                                       "conditional)")
    palette: str = option(PALETTE, "snap colours to: data (the training data's, saved with the model) | "
                                   "none | a .hex or .gpl file")


@dataclass
class GenerateOptions(SamplingOptions):
    prompt: str = option("", "prompt models: what to draw, e.g. 'a red potion' (a row); '' samples "
                             "unconditionally")
    prompt_file: str = option("", "prompt models: a text file, one prompt a row of the grid")
    init: str = option("", "start from this sprite (PNG): variations with --strength, inpainting with "
                           "--mask, outpainting with --extend")
    strength: float = option(1.0, "share of the noise schedule run from the noised --init: 0 gives it "
                                  "back, 1 ignores it (outside a mask)")
    mask: str = option("", "repaint where this image is white (or opaque, if it has transparency)")
    extend: str = option("", "outpainting: left | right | up | down: move the sprite away from that "
                             "side and fill the strip")
    by: int = option(8, "pixels to extend by")
    resample: int = option(2, "inpainting and outpainting: RePaint resamplings of each step (0: plain "
                              "replacement of the rest; 2 agreed best with the surroundings, "
                              "RESULTS.md)")
    tileable: bool = option(False, "sprites that wrap in x and y (the image rolled by a random offset "
                                   "before each step); also writes each repeated 3x3")
    negative_prompt: str = option("", "prompt models: what to steer away from (guidance pushes from "
                                      "this instead of from no prompt)")
    num_images: int = option(16, "images in all; with --class or prompts, per row")
    out: str = option("samples/generated_images.png", "the grid; the sheet and single sprites go beside it")
    scale: int = option(4, "nearest-neighbour upscale of the grid")
    device: str = option("auto", "auto | cpu | cuda")


def check_sampling(num_images: int, sampler: str, steps: int, palette: str) -> None:
    """Bad sampling options fail at once, not after minutes of sampling."""
    if num_images < 1 or steps < 0:
        raise UserError(f"num_images must be >= 1 and steps >= 0 (got {num_images}, {steps})")
    if sampler not in SAMPLERS:
        raise UserError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    if palette not in ("data", "none"):
        load_palette(palette)


def class_rows(m: Loaded, spec: str) -> list[str | None]:
    """The class of each grid row: names from --class, every class for 'all'; [None] for one unlabelled
    block ('' cycles through the classes, 'none' is unconditional)."""
    if not (m.cfg.conditional or m.cfg.prompts != "none"):
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


def class_labels(m: Loaded, spec: str, rows: list[str | None], n: int) -> torch.Tensor:
    """The class of each image: per row for named classes; without --class, the classes in turn
    (guided, so the grid shows a bit of everything); 'none': the "no class" label."""
    if rows != [None]:
        return torch.tensor([m.classes.index(r) for r in rows]).repeat_interleave(n)
    if spec == "none":
        return torch.full((n,), len(m.classes))
    return torch.arange(n) % len(m.classes)


def conditions(m: Loaded, rows: list[str | None], classes: str, prompts: list[str], n: int,
               negative: str) -> tuple[dict, dict]:
    """(cond, null) for sample(), n images a row: the prompts of each image for a prompt model (class
    names when no prompt is given, '' for --class=none), else the classes of class_labels."""
    if m.cfg.prompts != "none":
        if not prompts:
            labels = class_labels(m, classes, rows, n).tolist()
            prompts = [m.classes[i] if i < len(m.classes) else "" for i in labels]
        return text_conditions(m.cfg, prompts, negative)
    if prompts:
        raise UserError("this model does not take prompts (trained without --prompts); use --class")
    if not m.cfg.conditional:
        return {}, {}
    return class_conditions(class_labels(m, classes, rows, n), len(m.classes))


@dataclass
class Start:
    """A sprite to start from: variations (strength < 1), inpainting and outpainting (mask)."""
    init: torch.Tensor  # uint8 C,H,W at the model's size and channels
    mask: torch.Tensor | None = None  # bool 1,H,W: True = repaint
    strength: float = 1.0  # share of the noise schedule run from the noised init (0: the init itself)
    resample: int = 2  # RePaint resamplings of each step, when there is a mask


def generate(m: Loaded, num_images: int, classes: str = "", seed: int = 0, sampler: str = SAMPLER,
             steps: int = 0, guidance: float = GUIDANCE, palette: str = PALETTE,
             prompts: tuple[str, ...] = (), negative: str = "", start: Start | None = None,
             tileable: bool = False,
             progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[str | None]]:
    """Sprites as generate.py makes them: (snapped uint8 N,C,H,W, raw uint8, the label of each row).
    With classes or prompts, num_images is per class or prompt, a row each. Outside a start's mask
    the init comes back exactly, palette or not."""
    check_sampling(num_images, sampler, steps, palette)
    if m.vae is not None and (start is not None or tileable):
        raise UserError("a latent model (trained with --latent) cannot start from a sprite or make "
                        "tiles: use a pixel model for --init, --mask, --extend and --tileable")
    rows = list(prompts) if prompts else class_rows(m, classes)
    per_image = [p for p in prompts for _ in range(num_images)]
    n = num_images * len(rows)
    cond, null = conditions(m, rows, classes, per_image, num_images, negative)
    unconditional = classes == "none" or (prompts and not any(prompts) and not negative)
    init = mask = None
    if start is not None:
        init = (start.init.float() / 127.5 - 1).expand(n, -1, -1, -1)
        mask = None if start.mask is None else start.mask.float().expand(n, -1, -1, -1)
    raw = to_uint8(sample(m.unet, m.scheduler, n, cond, null, seed, sampler, steps,
                          1.0 if unconditional else guidance, init, start.strength if start else 1.0,
                          mask, start.resample if start else 0, tileable, progress, m.vae))
    images = postprocess(raw, m, palette)
    if start is not None:  # what is not repainted is the init itself, not its snapped colours
        repaint = start.mask if start.mask is not None else torch.tensor(start.strength > 0)
        images = torch.where(repaint, images, start.init)
    return images, raw, rows


def read_start(o: GenerateOptions, cfg: Config) -> Start | None:
    """The Start of --init, --mask, --extend and --strength, checked; None without --init."""
    if not o.init:
        if o.mask or o.extend:
            raise UserError(f"--{'mask' if o.mask else 'extend'} needs --init, the sprite to work on")
        return None
    if not 0 <= o.strength <= 1:
        raise UserError(f"--strength must be in [0, 1], got {o.strength}")
    init = read_sprite(o.init, "init", cfg)
    if o.mask and o.extend:
        raise UserError("--mask and --extend both say what to repaint: give one")
    mask = read_mask(o.mask, cfg.image_size) if o.mask else None
    if o.extend:
        init, mask = shifted(init, o.extend, o.by)
    if o.resample < 0:
        raise UserError(f"--resample must be >= 0, got {o.resample}")
    return Start(init, mask, o.strength, o.resample)


def read_image(path: str, what: str, size: int, channels: int, background: str) -> np.ndarray:
    """An image file as H,W,C uint8 at the model's size (NEAREST, with one warning line if resized)."""
    from dataset import BadImage, load_image
    if not Path(path).is_file():
        raise UserError(f"{what} {path} does not exist")
    try:
        arr, note = load_image(Path(path), size, channels, parse_color(background))
    except BadImage as e:
        raise UserError(f"{what} {path}: {e}") from None
    if note:
        print(f"warning: {what} {path}: {note}")
    return arr


def read_sprite(path: str, what: str, cfg: Config) -> torch.Tensor:
    """A sprite file as uint8 C,H,W at the model's size and channels (transparency on its background
    for an RGB model)."""
    arr = read_image(path, what, cfg.image_size, cfg.channels, cfg.background)
    return torch.from_numpy(arr).permute(2, 0, 1)


def read_mask(path: str, size: int) -> torch.Tensor:
    """bool 1,H,W, True = repaint: the opaque pixels of a mask with transparency, else its white ones."""
    rgba = read_image(path, "mask", size, 4, "#000000")
    alpha = rgba[..., 3]
    mask = torch.from_numpy(alpha > 127 if (alpha < 255).any() else rgba[..., :3].mean(-1) > 127)[None]
    if not mask.any():
        raise UserError(f"mask {path} repaints nothing: it has no white or opaque pixel")
    if mask.all():
        raise UserError(f"mask {path} repaints every pixel: drop --mask and --init for a new sprite, "
                        "or keep --init with --strength for variations")
    return mask


def shifted(init: torch.Tensor, side: str, by: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Outpainting: the sprite moved `by` pixels away from `side`, and a mask of the strip it left."""
    size = init.shape[-1]
    if side not in ("left", "right", "up", "down"):
        raise UserError(f"--extend must be left, right, up or down; got {side!r}")
    if not 0 < by < size:
        raise UserError(f"--by must be between 1 and {size - 1} pixels, got {by}")
    dim = -1 if side in ("left", "right") else -2
    sign = 1 if side in ("left", "up") else -1  # the content moves right or down to extend left or up
    mask = torch.zeros(1, size, size, dtype=torch.bool)
    strip = slice(0, by) if sign == 1 else slice(size - by, size)
    if dim == -1:
        mask[..., strip] = True
    else:
        mask[:, strip, :] = True
    moved = torch.roll(init, sign * by, dims=dim)
    return torch.where(mask, torch.zeros_like(moved), moved), mask


def read_prompts(prompt: str | None, prompt_file: str) -> tuple[str, ...]:
    """--prompt (one row) or --prompt_file (a row per non-blank line)."""
    if prompt_file:
        path = Path(prompt_file)
        if not path.is_file():
            raise UserError(f"prompt file {path} does not exist")
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
        if not any(lines):
            raise UserError(f"prompt file {path} holds no prompt")
        return tuple(line for line in lines if line)
    return (prompt.strip(),) if prompt is not None else ()


def postprocess(images: torch.Tensor, m: Loaded, palette: str) -> torch.Tensor:
    """Pixel-perfect output: colours snapped to the palette (unless 'none'), alpha to 0 or 255."""
    if palette == "none":
        return images if images.shape[1] == 3 else torch.cat([images[:, :3], snap_alpha(images[:, 3:])], 1)
    if palette == "data" and m.palette is None:
        raise UserError(f"{m.source} has no palette.hex (models exported before palettes were saved "
                        "with them); use --palette=none or --palette=FILE")
    return snap(images, m.palette if palette == "data" else load_palette(palette))


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


def save(images: torch.Tensor, raw: torch.Tensor, rows: list[str | None], per_row: int, out: Path,
         scale: int, tiled: bool = False) -> list[Path]:
    """The upscaled preview grid, a native-size sprite sheet, the single sprites, and the raw output;
    for tileable sprites also each repeated 3x3 (..._3x3.png), to see that they wrap."""
    out.parent.mkdir(parents=True, exist_ok=True)
    per_row = per_row if rows != [None] else 0
    labelled_grid(images, rows, per_row, scale).save(out)
    written = [out]
    if tiled:
        written.append(out.with_name(out.stem + "_3x3.png"))
        make_grid(images.repeat(1, 1, 3, 3), ncols=per_row, scale=max(1, scale // 2)).save(written[-1])
    sheet = out.with_name(out.stem + "_sheet.png")
    make_grid(images, ncols=per_row, scale=1, pad=0).save(sheet)
    singles = out.parent / out.stem.replace("_images", "")
    for folder, batch in ((singles, images), (singles / "raw", raw)):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):  # a smaller run must not leave older sprites behind
            old.unlink()
        for i, img in enumerate(batch):
            make_grid(img[None], scale=1, pad=0).save(folder / f"{i:04d}.png")
    return [*written, sheet, singles, singles / "raw"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA GPU is visible")
    if name != "cpu":
        raise UserError(f"device must be auto, cpu or cuda; got {name!r}")
    return torch.device(name)


@script
def main(argv: list[str]) -> None:
    o = GenerateOptions()
    _, given = parse_args(argv, __doc__, o, config=False)
    prompts = read_prompts(o.prompt if "prompt" in given else None, o.prompt_file)
    if o.scale < 1:
        raise UserError(f"scale must be >= 1, got {o.scale}")
    check_sampling(o.num_images, o.sampler, o.steps, o.palette)
    device = resolve_device(o.device)
    m = load_model(o.model)
    m.unet.to(device)
    print(f"model: {m.source}")
    start = read_start(o, m.cfg)
    images, raw, rows = generate(m, o.num_images, o.classes, o.seed, o.sampler, o.steps, o.guidance,
                                 o.palette, prompts, o.negative_prompt, start, o.tileable, progress=True)
    written = save(images, raw, rows, o.num_images, Path(o.out), o.scale, o.tileable)
    print(f"wrote {len(raw)} sprites (palette: {o.palette}): " + ", ".join(map(str, written)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
