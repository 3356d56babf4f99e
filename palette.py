"""Palettes for pixel-perfect output: extract one from the training data (train.py saves it with the
model as palette.hex), read .hex / .gpl files, and snap images to it (the nearest colour as the eye
judges it, in OKLab; no dithering); alpha snaps to 0 or 255.

Usage:
    python palette.py --data_dir=path/to/my/sprites --colors=16 --out=my.hex   # extract and save
    pal = load_palette("my.gpl"); snapped = snap(images_uint8, pal)
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from config import PALETTE_COLOURS, LoaderOptions, UserError, option, parse_args, script


def parse_hex(text: str, name: str = "palette") -> torch.Tensor:
    """One colour a line: 'rrggbb' or '#rrggbb'; blank lines and ';' or '#' comments are ignored."""
    colours = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith(";") or (s.startswith("#") and len(s) != 7):
            continue
        h = s.lstrip("#")
        if len(h) != 6 or any(c not in "0123456789abcdefABCDEF" for c in h):
            raise UserError(f"{name} line {n}: {s!r} is not a colour (expected rrggbb)")
        colours.append([int(h[i:i + 2], 16) for i in (0, 2, 4)])
    return _checked(colours, name)


def parse_gpl(text: str, name: str = "palette") -> torch.Tensor:
    """GIMP palette: 'GIMP Palette' header, optional Name:/Columns: lines and # comments, then
    'R G B [name]' lines with values 0-255."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "GIMP Palette":
        raise UserError(f"{name}: not a GIMP palette (the first line must be 'GIMP Palette')")
    colours = []
    for n, line in enumerate(lines[1:], 2):
        s = line.strip()
        if not s or s.startswith("#") or s.split(":")[0] in ("Name", "Columns"):
            continue
        parts = s.split()
        try:
            rgb = [int(p) for p in parts[:3]]
        except ValueError:
            rgb = []
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise UserError(f"{name} line {n}: {s!r} is not 'R G B' with values 0-255")
        colours.append(rgb)
    return _checked(colours, name)


def _checked(colours: list[list[int]], name: str) -> torch.Tensor:
    if not colours:
        raise UserError(f"{name}: no colours found")
    return torch.tensor(colours, dtype=torch.uint8)


def load_palette(path: str | Path) -> torch.Tensor:
    """K x 3 uint8 from a .hex or .gpl file (parsed, never evaluated)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"palette file {p} does not exist")
    parse = {".hex": parse_hex, ".gpl": parse_gpl}.get(p.suffix.lower())
    if parse is None:
        raise UserError(f"palette {p}: use a .hex or .gpl file")
    return parse(p.read_text(errors="replace"), p.name)


def save_hex(palette: torch.Tensor, path: Path) -> None:
    path.write_text("".join(f"{r:02x}{g:02x}{b:02x}\n" for r, g, b in palette.tolist()))


def extract(images: torch.Tensor, colors: int = PALETTE_COLOURS) -> torch.Tensor:
    """The data's own palette: median cut over the opaque pixels of all images (uint8 N,C,H,W)."""
    rgb = images[:, :3].permute(0, 2, 3, 1).reshape(-1, 3)
    if images.shape[1] == 4:
        rgb = rgb[images[:, 3].reshape(-1) > 127]
    strip = Image.fromarray(rgb[None].numpy(), "RGB")
    q = strip.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    used = np.unique(np.asarray(q)).tolist()  # the palette entries in use
    pal = torch.tensor(q.getpalette()[:3 * (max(used) + 1)], dtype=torch.uint8).view(-1, 3)
    return pal[used]


# OKLab: linear sRGB -> cone responses, then their cube roots -> lightness and two opponent axes
_LMS = torch.tensor([[0.4122214708, 0.5363325363, 0.0514459929], [0.2119034982, 0.6806995451, 0.1073969566],
                     [0.0883024619, 0.2817188376, 0.6299787005]])
_LAB = torch.tensor([[0.2104542553, 0.7936177850, -0.0040720468], [1.9779984951, -2.4285922050, 0.4505937099],
                     [0.0259040371, 0.7827717662, -0.8086757660]])


def oklab(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 sRGB colours (..., 3) in OKLab (Ottosson 2020), where distance follows what the eye sees:
    a gold stays nearer gold than brown, which RGB distance does not promise."""
    c = rgb.float() / 255
    linear = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    lms = (linear @ _LMS.T.to(c.device)).clamp(min=0) ** (1 / 3)
    return lms @ _LAB.T.to(c.device)


def snap(images: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """Each pixel to its nearest palette colour (OKLab distance, no dithering); alpha to 0 or 255."""
    out, palette = images.clone(), palette.to(images.device)  # a latent run's reconstructions are on its GPU
    rgb = images[:, :3].permute(0, 2, 3, 1).reshape(-1, 3)
    nearest = torch.cdist(oklab(rgb), oklab(palette)).argmin(dim=1)
    out[:, :3] = palette[nearest].view(images.shape[0], *images.shape[2:], 3).permute(0, 3, 1, 2)
    if images.shape[1] == 4:
        out[:, 3] = snap_alpha(images[:, 3])
    return out


def snap_alpha(alpha: torch.Tensor) -> torch.Tensor:
    return torch.where(alpha > 127, 255, 0).to(torch.uint8)


# ----------------------------------------------------------------------------- colour names

COLOUR_NAMES = ("black", "grey", "white", "brown", "red", "orange", "yellow", "green", "cyan", "blue",
                "purple", "pink")


def hue_sextants(x: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hue in sixths of a turn, in [0, 6); value; max - min) of float RGB in [0, 1] along `dim`."""
    v, lo = x.max(dim).values, x.min(dim).values
    r, g, b = x.unbind(dim)
    delta = v - lo
    safe = delta.clamp(min=1e-6)
    hue = torch.where(v == r, ((g - b) / safe) % 6, torch.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4))
    return hue, v, delta


def name_colours(rgb: torch.Tensor) -> torch.Tensor:
    """The name (an index into COLOUR_NAMES) of each uint8 colour (..., 3), by one fixed rule on hue,
    saturation and value: value under 0.2 is black; saturation under 0.2 is grey, or white above
    value 0.8; otherwise the hue decides (red under 15 or from 345 degrees, orange to 45 (brown when
    value is under 0.6), yellow to 70, green to 165, cyan to 200, blue to 260, purple to 320, pink)."""
    sextant, v, delta = hue_sextants(rgb.float() / 255)
    s, hue = delta / v.clamp(min=1e-6), sextant * 60
    bounds = torch.tensor([15.0, 45, 70, 165, 200, 260, 320, 345])
    by_hue = torch.tensor([4, 5, 6, 7, 8, 9, 10, 11, 4])[torch.bucketize(hue, bounds, right=True)]
    by_hue = torch.where((by_hue == 5) & (v < 0.6), 3, by_hue)
    return torch.where(v < 0.2, 0, torch.where(s < 0.2, torch.where(v > 0.8, 2, 1), by_hue))


def main_colours(images: torch.Tensor, most: int = 2) -> list[list[str]]:
    """The main colours of each uint8 N,C,H,W sprite, by name: over its opaque pixels, leaving out
    black (pixel art's outlines) unless nothing else is there, the commonest name, then the next ones
    while each covers at least half as many pixels as the first."""
    names = name_colours(images[:, :3].permute(0, 2, 3, 1)).flatten(1)
    opaque = (images[:, 3] > 127).flatten(1) if images.shape[1] == 4 else torch.ones_like(names)
    counts = torch.zeros(len(images), len(COLOUR_NAMES), dtype=torch.long)
    counts.scatter_add_(1, names, opaque.long())
    counts[:, 0] *= counts[:, 1:].sum(1) == 0
    chosen = []
    for row in counts:
        order, row = row.argsort(descending=True)[:most].tolist(), row.tolist()
        chosen.append([COLOUR_NAMES[i] for i in order if row[i] > 0 and row[i] * 2 >= row[order[0]]])
    return chosen


@dataclass
class PaletteOptions(LoaderOptions):
    colors: int = option(PALETTE_COLOURS, "number of colours to extract (median cut)")
    out: str = option("palette.hex", "the .hex file to write")


def hue_turned(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """uint8 N,C,H,W with their hue turned by `degrees` (HSV; saturation, value and alpha kept):
    greys stay grey, red becomes another colour of the same lightness."""
    h, v, delta = hue_sextants(images[:, :3].float() / 255, dim=1)
    h = (h + degrees / 60) % 6
    k = torch.stack([(5 + h) % 6, (3 + h) % 6, (1 + h) % 6], 1)  # HSV -> RGB by the k-formula
    out = v[:, None] - delta[:, None] * (torch.minimum(k, 4 - k).clamp(0, 1))
    turned = (out * 255).round().to(torch.uint8)
    return torch.cat([turned, images[:, 3:]], 1)


def recoloured(data, copies: int):
    """The data (a dataset.PixelData) plus `copies` recoloured copies of each sprite (hue turned by
    360/(copies+1) degree steps), each with its caption's colour words named again from its own
    pixels by the captions' rule (main_colours): "red potion" -> "blue potion". A sprite whose caption does not
    start with its colour words (a caption of its own) gets no copies."""
    if not copies:
        return data
    prefixes = [" and ".join(c) for c in main_colours(data.images)]
    keep = torch.tensor([c.startswith(p) and bool(p) for c, p in zip(data.captions, prefixes)])
    images, labels, captions = [data.images], [data.labels], list(data.captions)
    for i in range(1, copies + 1):
        turned = hue_turned(data.images[keep], 360 * i / (copies + 1))
        images.append(turned)
        labels.append(data.labels[keep])
        old = [(c, p) for c, p, k in zip(data.captions, prefixes, keep) if k]
        captions += [" and ".join(m) + c[len(p):] for m, (c, p) in zip(main_colours(turned), old)]
    files = data.files + [f for f, k in zip(data.files, keep) if k] * copies
    return dataclasses.replace(data, images=torch.cat(images), labels=torch.cat(labels), files=files,
                               captions=captions)


def prompt_palette(data, copies: int = 3) -> torch.Tensor:
    """The palette of a model asked by prompts and trained without recoloured copies: the data's own
    colours, and those of its recoloured copies that lie farther from every one of them than its
    colours lie from each other (the median nearest-neighbour distance in OKLab). A prompt may name
    a colour the data lacks ("a green sword"); snapped to the data's own colours alone, the green the
    model draws turns grey or brown. The copies' own median cut instead would spend the colours the
    data has plenty of and lose its yellows (RESULTS.md: *A twelfth session*)."""
    own, turned = extract(data.images), extract(recoloured(data, copies).images)
    lab = oklab(own)
    gap = torch.cdist(lab, lab).fill_diagonal_(float("inf")).min(1).values.median()
    return torch.cat([own, turned[torch.cdist(oklab(turned), lab).min(1).values > gap]])


@script
def main(argv: list[str]) -> None:
    from dataset import load_folder
    opts = PaletteOptions()
    parse_args(argv, __doc__, opts, config=False)
    pal = extract(load_folder(opts.data_dir, opts.spec()).images, opts.colors)
    save_hex(pal, Path(opts.out))
    print(f"wrote {len(pal)} colours to {opts.out}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
