"""Sprites as the scripts make them: a request sampled, colours snapped to a palette, saved as a grid,
a sheet and single PNGs; sprites read from files to start from.

Usage:
    m = load_model("pretrained")
    rows, wanted = m.condition.request("", ("a blue book",), 8)   # what each sprite is asked for
    images, raw = generate(m, SpriteRequest(wanted, seed=0))       # snapped and raw uint8 N,C,H,W
    save(images, raw, rows, 8, Path("outputs/generated_images.png"))
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from config import GUIDANCE, PALETTE, SAMPLER, ModelSpec, UserError, parse_color
from dataset import make_grid, to_uint8, to_unit
from model import Loaded
from palette import load_palette, snap, snap_alpha
from sampling import SAMPLERS, SampleRequest, sample


@dataclass
class Start:
    """A sprite to start from: variations (strength < 1), inpainting and outpainting (mask)."""
    init: torch.Tensor  # uint8 C,H,W at the model's size and channels
    mask: torch.Tensor | None = None  # bool 1,H,W: True = repaint
    strength: float = 1.0  # share of the noise schedule run from the noised init (0: the init itself)
    resample: int = 2  # RePaint resamplings of each step, when there is a mask


@dataclass
class SpriteRequest:
    wanted: list  # what each sprite is asked for: a class name, a prompt, or None (the model's
    # condition.request makes it from --class / --prompt)
    seed: int = 0
    sampler: str = SAMPLER
    steps: int = 0
    guidance: float = GUIDANCE
    palette: str = PALETTE  # data (the model's) | none | a .hex or .gpl file
    negative: str = ""  # text models: what guidance steers away from
    start: Start | None = None
    tileable: bool = False
    progress: bool = False
    guidance_interval: tuple[float, float] = (0.0, 1.0)  # as sampling.SampleRequest's


def check(req: SpriteRequest) -> None:
    """Bad sampling options fail at once, not after minutes of sampling."""
    if req.steps < 0:
        raise UserError(f"--steps must be >= 0 (0: the sampler's default), got {req.steps}")
    if req.guidance < 0:
        raise UserError(f"--guidance must be >= 0 (1: plain conditional, 0: unconditional), got "
                        f"{req.guidance}")
    if len(req.guidance_interval) != 2 or not 0 <= req.guidance_interval[0] < req.guidance_interval[1] <= 1:
        raise UserError("--guidance_interval must be two noise levels 0 <= low < high <= 1, got "
                        + ",".join(f"{v:g}" for v in req.guidance_interval))
    if req.sampler not in SAMPLERS:
        raise UserError(f"--sampler must be one of {', '.join(SAMPLERS)}; got {req.sampler!r}")
    if req.palette not in ("data", "none"):
        load_palette(req.palette)


def generate(m: Loaded, req: SpriteRequest) -> tuple[torch.Tensor, torch.Tensor]:
    """(snapped uint8 N,C,H,W, raw uint8): a sprite for each of req.wanted. Outside a start's mask
    the init comes back exactly, palette or not."""
    check(req)
    if m.vae is not None and (req.start is not None or req.tileable):
        raise UserError("a latent model (trained with --latent) cannot start from a sprite or make "
                        "tiles: use a pixel model for --init, --mask, --extend and --tileable")
    n, start = len(req.wanted), req.start
    cond, null = m.condition.encode(req.wanted, req.negative)
    unconditional = all(w is None for w in req.wanted) and not req.negative
    sreq = SampleRequest(n, cond, null, req.seed, req.sampler, req.steps,
                         1.0 if unconditional else req.guidance, req.guidance_interval,
                         tileable=req.tileable, progress=req.progress)
    if start is not None:
        sreq.init, sreq.strength = to_unit(start.init).expand(n, -1, -1, -1), start.strength
        if start.mask is not None:
            sreq.mask, sreq.resample = start.mask.float().expand(n, -1, -1, -1), start.resample
    raw = to_uint8(sample(m.net, m.scheduler, sreq, m.vae))
    images = postprocess(raw, m, req.palette)
    if start is not None:  # what is not repainted is the init itself, not its snapped colours
        repaint = start.mask if start.mask is not None else torch.tensor(start.strength > 0)
        images = torch.where(repaint, images, start.init)
    return images, raw


def postprocess(images: torch.Tensor, m: Loaded, palette: str) -> torch.Tensor:
    """Pixel-perfect output: colours snapped to the palette (unless 'none'), alpha to 0 or 255."""
    if palette == "none":
        return images if images.shape[1] == 3 else torch.cat([images[:, :3], snap_alpha(images[:, 3:])], 1)
    if palette == "data" and m.palette is None:
        raise UserError(f"{m.source} has no palette.hex (models exported before palettes were saved "
                        "with them); use --palette=none or --palette=FILE")
    return snap(images, m.palette if palette == "data" else load_palette(palette))


# ----------------------------------------------------------------------------- sprites from files

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


def read_sprite(path: str, what: str, spec: ModelSpec) -> torch.Tensor:
    """A sprite file as uint8 C,H,W at the model's size and channels (transparency on its background
    for an RGB model)."""
    arr = read_image(path, what, spec.image_size, spec.channels, spec.background)
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


def start_from(spec: ModelSpec, init: str, mask: str = "", extend: str = "", by: int = 8,
               strength: float = 1.0, resample: int = 2) -> Start | None:
    """The Start of a sprite file (--init) with a mask file (--mask), or an outpainting side
    (--extend, --by), checked; None without a sprite."""
    if not init:
        return None
    image = read_sprite(init, "init", spec)
    repaint = read_mask(mask, spec.image_size) if mask else None
    if extend:
        image, repaint = shifted(image, extend, by)
    return Start(image, repaint, strength, resample)


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


# ----------------------------------------------------------------------------- saving

def labelled_grid(images: torch.Tensor, rows: list[str | None], per_row: int, scale: int) -> Image.Image:
    """The grid, with the class name or prompt left of each row when there are rows."""
    grid = make_grid(images, ncols=per_row if rows != [None] else 0, scale=scale)
    if rows == [None]:
        return grid
    font = ImageFont.load_default()
    margin = max(int(ImageDraw.Draw(grid).textlength(r or "", font=font)) for r in rows) + 8
    out = Image.new(grid.mode, (grid.width + margin, grid.height), (255, 255, 255, 255)[:len(grid.mode)])
    out.paste(grid, (margin, 0))
    draw, row_h = ImageDraw.Draw(out), grid.height / len(rows)
    for i, r in enumerate(rows):
        draw.text((4, int((i + 0.5) * row_h) - 6), r or "", fill=(0, 0, 0, 255)[:len(grid.mode)], font=font)
    return out


def save(images: torch.Tensor, raw: torch.Tensor, rows: list[str | None], per_row: int, out: Path,
         scale: int = 4, tiled: bool = False) -> list[Path]:
    """The upscaled preview grid, a native-size sprite sheet, the single sprites, and the raw output;
    for tileable sprites also each repeated 3x3 (..._3x3.png), to see that they wrap."""
    out.parent.mkdir(parents=True, exist_ok=True)
    per_row = per_row if rows != [None] else 0
    singles = out.parent / out.stem.replace("_images", "")
    for folder, batch in ((singles, images), (singles / "raw", raw)):  # the sprites first: the work
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):  # a smaller run must not leave older sprites behind
            old.unlink()
        for i, img in enumerate(batch):
            make_grid(img[None], scale=1, pad=0).save(folder / f"{i:04d}.png")
    labelled_grid(images, rows, per_row, scale).save(out)
    written = [out]
    if tiled:
        written.append(out.with_name(out.stem + "_3x3.png"))
        make_grid(images.repeat(1, 1, 3, 3), ncols=per_row, scale=max(1, scale // 2)).save(written[-1])
    sheet = out.with_name(out.stem + "_sheet.png")
    make_grid(images, ncols=per_row, scale=1, pad=0).save(sheet)
    return [*written, sheet, singles, singles / "raw"]
