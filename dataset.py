"""Load a folder of sprites once into one uint8 tensor; augment per batch on the training device.

Usage:
    python dataset.py --data_dir=path/to/my/sprites --channels=4    # what the loader makes of a folder
    data = load_folder("data/dcss_items", spec)    # PixelData(images uint8 N,C,H,W, labels, classes)
    x = augment(data.images[idx].to(device), cfg.flip_p, generator)   # float in [-1, 1]

Pixel art rules: images are trained at their own size when they all share one (else 32x32, see
Config.image_size); resize with NEAREST only; non-square images are centred on a square transparent
canvas (padded, never stretched); transparency is kept (channels=4) or composited on a background
colour (channels=3). Bad files are skipped with one warning line each.
"""
from __future__ import annotations

import json
import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from config import (DEFAULT_SIZE, LoaderOptions, ModelSpec, UserError, downsampling, parse_args, parse_color,
                    resolve_path, script)

EXTENSIONS = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"}
# A 32x32 sprite set has no business holding a 20000x20000 image; refusing above this keeps a
# malicious or mistaken file from eating all memory (PIL raises DecompressionBombError past 2x).
MAX_PIXELS = 4096 * 4096


class BadImage(Exception):
    """A file that cannot be used; its message says why, in a few words."""


@dataclass
class PixelData:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N: index into classes
    classes: list[str]
    files: list[Path]
    captions: list[str]  # from metadata.jsonl; an image without one has its class name
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things done to some images (padding, resizing)
    references: torch.Tensor | None = None  # character data: uint8 the standing frame of each character
    ref_index: torch.Tensor | None = None  # character data: the reference of each image


def data_dirs(data_dir: str) -> list[Path]:
    """The folders of a data_dir option: one, or several separated by commas."""
    return [resolve_path(d.strip()) for d in data_dir.split(",") if d.strip()]


def list_images(root: Path) -> list[tuple[Path, str]]:
    """Every image under root (recursive, case-insensitive extensions) with its class: the
    first-level subfolder's name; images directly in root take the root folder's name."""
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist" if not root.exists()
                        else f"data_dir {root} is a file, not a folder")
    found = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in EXTENSIONS and p.is_file():
            rel = p.relative_to(root).parts
            found.append((p, rel[0] if len(rel) > 1 else root.name))
    if not found:
        raise UserError(f"no images ({', '.join(sorted(EXTENSIONS))}) found under {root}")
    return found


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit greyscale ('I;16', 'I', 'F') to 'L' by scaling, not clipping."""
    arr = np.asarray(img, dtype=np.float64)
    top = 65535.0 if arr.max(initial=0) > 255 else 255.0
    return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def to_rgba(img: Image.Image) -> Image.Image:
    """Any PIL mode to RGBA; images without transparency get alpha 255."""
    if img.mode.startswith("I") or img.mode == "F":
        img = _to_8bit(img)
    if _has_alpha(img):
        return img.convert("RGBA")
    return img.convert("RGB").convert("RGBA")


def fit_square(img: Image.Image, size: int) -> tuple[Image.Image, str]:
    """Centre a non-square image on a transparent square, then resize with NEAREST.
    Returns the image and a note of what was done ('' when nothing)."""
    note = ""
    w, h = img.size
    if w != h:
        side = max(w, h)
        canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        canvas.paste(img, ((side - w) // 2, (side - h) // 2))
        img, note = canvas, f"padded {w}x{h} to {side}x{side}"
    if img.size != (size, size):
        note = (note + ", " if note else "") + f"resized {img.size[0]} -> {size} (nearest)"
        img = img.resize((size, size), Image.NEAREST)
    return img, note


def to_array(img: Image.Image, channels: int, background: tuple[int, int, int]) -> np.ndarray:
    """RGBA image -> H x W x channels uint8. RGB composites over the background colour; RGBA sets the
    colour of fully transparent pixels to the background so the model is not asked to learn noise."""
    rgba = np.asarray(img, dtype=np.float32)
    alpha = rgba[..., 3:4] / 255.0
    bg = np.asarray(background, dtype=np.float32)
    if channels == 3:
        return np.rint(rgba[..., :3] * alpha + bg * (1 - alpha)).astype(np.uint8)
    rgb = np.where(alpha > 0, rgba[..., :3], bg)
    return np.concatenate([rgb, rgba[..., 3:4]], axis=-1).astype(np.uint8)


def open_rgba(path: Path) -> Image.Image:
    """One file as RGBA (an animation's first frame); raises BadImage with the reason."""
    if path.stat().st_size == 0:
        raise BadImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise BadImage(f"{img.width}x{img.height} is too large (limit {MAX_PIXELS} "
                                   "pixels, a decompression-bomb guard)")
                img.seek(0)  # animated GIF/WebP/APNG: the first frame
                img.load()
                return to_rgba(img)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"too large ({e})") from None
    except Image.UnidentifiedImageError:
        raise BadImage("not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # truncated, corrupt chunks, ...
        raise BadImage(f"cannot decode ({e})") from None


def load_image(path: Path, size: int, channels: int,
               background: tuple[int, int, int]) -> tuple[np.ndarray, str]:
    """One sprite file (--init, a mask) -> (H x W x C uint8 array, note) at the model's size, padded
    to a square and resized with NEAREST when it must be; raises BadImage with the reason."""
    rgba, note = fit_square(open_rgba(path), size)
    return to_array(rgba, channels, background), note


def pixel_scale(img: Image.Image) -> int:
    """The largest k such that the image is made of k x k blocks of one colour (pixel-doubled art
    saved upscaled); 1 when it is not."""
    arr = np.asarray(img)
    h, w = arr.shape[:2]
    for k in sorted({d for d in range(2, min(h, w) + 1) if h % d == 0 and w % d == 0}, reverse=True):
        if np.array_equal(np.repeat(np.repeat(arr[::k, ::k], k, 0), k, 1), arr):
            return k
    return 1


def frames_at(img: Image.Image, size: int) -> tuple[list[Image.Image], str]:
    """A training image as size x size frames, never resampled by a non-integer factor: the image
    itself; a strip of equal frames split (empty frames left out); a smaller image upscaled by a whole
    factor (each pixel k x k) or else centred on a transparent canvas; a pixel-doubled one reduced
    exactly. Returns (frames, what was done: '' when nothing); raises BadImage when none applies."""
    w, h = img.size
    if (w, h) == (size, size):
        return [img], ""
    if size in (w, h) and w % size == 0 and h % size == 0:
        boxes = [(x, y, x + size, y + size) for y in range(0, h, size) for x in range(0, w, size)]
        frames = [f for f in (img.crop(b) for b in boxes) if f.getextrema()[3][1] > 0]
        return frames, f"strip {w}x{h} split into {len(frames)} frames"
    if w == h and size % w == 0:
        return [img.resize((size, size), Image.NEAREST)], f"upscaled {w} -> {size} (x{size // w}, each pixel)"
    if max(w, h) <= size:
        canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        canvas.paste(img, ((size - w) // 2, (size - h) // 2))
        return [canvas], f"{w}x{h} centred on a transparent {size}x{size} canvas"
    k = pixel_scale(img)
    if k > 1 and (w // k, h // k) != (w, h):
        small = img.resize((w // k, h // k), Image.NEAREST)
        if max(small.size) <= size:
            frames, note = frames_at(small, size)
            return frames, f"reduced {w}x{h} exactly (pixel-doubled x{k})" + (f", {note}" if note else "")
    raise BadImage(f"{w}x{h}: not {size}x{size}, a strip of {size}x{size} frames, a whole fraction or "
                   f"a pixel-doubled multiple of it (--image_size=N trains at another size)")


def read_captions(root: Path, log=print) -> dict[Path, str]:
    """Captions from root/metadata.jsonl: one JSON object a line with "file_name" (relative to root)
    and "text". Bad lines and captions of files that are not there are reported, one line for each
    kind of problem, and skipped; the rest is used."""
    path = root / "metadata.jsonl"
    if not path.is_file():
        return {}
    captions, bad, missing = {}, [], []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            name, text = entry["file_name"], entry["text"]
            if not isinstance(name, str) or not isinstance(text, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            bad.append(n)
            continue
        file = root / name
        if file.is_file():
            captions[file] = text.strip()
        else:
            missing.append(name)
    if bad:
        log(f"warning: {path}: {len(bad)} lines are not JSON objects with a file_name and a text "
            f"(first: line {bad[0]}); skipped")
    if missing:
        log(f"warning: {path}: {len(missing)} captions name files that are not there (first: "
            f"{missing[0]}); skipped")
    return captions


def common_size(entries: list[tuple[Path, str]]) -> int:
    """The commonest side of the images: of the square ones, else of the shorter side (strips)."""
    from collections import Counter
    sizes = []
    for path, _ in entries:
        try:
            with Image.open(path) as img:
                sizes.append(img.size)
        except Exception:  # unreadable: load_folder reports it
            continue
    square = Counter(w for w, h in sizes if w == h) or Counter(min(s) for s in sizes)
    return square.most_common(1)[0][0] if square else 0


def pick_size(spec: ModelSpec, entries: list[tuple[Path, str]]) -> int:
    """spec.image_size, else the data's commonest size (common_size), else DEFAULT_SIZE."""
    if spec.image_size:
        return spec.image_size
    own, factor = common_size(entries), downsampling(spec)
    if own and own % factor:
        up = -(-own // factor) * factor
        raise UserError(f"the images are mostly {own}x{own}, which this UNet (downsampling factor "
                        f"{factor}) cannot take: pass --image_size={up} or {up - factor}, or fewer "
                        "block_out_channels")
    return own or DEFAULT_SIZE


def read_list(path: str) -> set[Path]:
    """The images a list file names (one path a line, relative to the current folder or the repo
    root), resolved; an empty path names none."""
    if not path:
        return set()
    file = resolve_path(path)
    if not file.is_file():
        raise UserError(f"held-out list {path} does not exist")
    return {resolve_path(line.strip()).resolve() for line in file.read_text().splitlines() if line.strip()}


def load_folder(data_dir: str, spec: ModelSpec, log=print, exclude: set[Path] = frozenset(),
                only: set[Path] | None = None) -> PixelData:
    """Decode every image under data_dir (comma-separated folders) once, at pick_size(), in the
    model's channels; leave out the files of `exclude`, or keep only those of `only`. Bad files are
    reported (one line each) and skipped; padding and resizing are reported in one line each."""
    roots = data_dirs(data_dir)
    entries = [(p, c) for root in roots for p, c in list_images(root)
               if p.resolve() not in exclude and (only is None or p.resolve() in only)]
    if not entries:
        raise UserError(f"no images left under {data_dir} (all of them are held out, or none listed)")
    captions = {f: t for root in roots for f, t in read_captions(root, log).items()}
    size = pick_size(spec, entries)
    background = parse_color(spec.background)
    arrays, names, files, skipped, notes = [], [], [], [], []
    unfit = []  # readable, but not at this size without resampling: one line for them all
    for path, cls in entries:
        try:
            img = open_rgba(path)
        except BadImage as e:
            log(f"warning: skipping {path}: {e}")
            skipped.append((path, str(e)))
            continue
        try:
            frames, note = frames_at(img, size)
        except BadImage as e:
            unfit.append((path, str(e)))
            continue
        for frame in frames:
            arrays.append(to_array(frame, spec.channels, background))
            names.append(cls)
            files.append(path)
        if note:
            notes.append(f"{path.name}: {note}")
    if unfit:
        first = ", ".join(f"{p.name} ({why.split(':')[0]})" for p, why in unfit[:3])
        log(f"skipped {len(unfit)} images that cannot be {size}x{size} without resampling (first: "
            f"{first}); --image_size=N trains at another size")
    skipped += unfit
    if len(skipped) > len(unfit):
        log(f"skipped {len(skipped)} of {len(entries)} files")
    if not arrays:
        raise UserError(f"none of the {len(entries)} image files under {data_dir} could be used at "
                        f"{size}x{size} (first: {skipped[0][0].name}: {skipped[0][1]})")
    uncaptioned = [f for f in files if f not in captions]
    if captions and uncaptioned:
        log(f"warning: {len(uncaptioned)} images have no caption in metadata.jsonl (first: "
            f"{uncaptioned[0].name}); their class name is their caption")
    for kind, what in (("strip", "strips were split into frames"),
                       ("upscaled", f"images were upscaled to {size}x{size} by a whole factor"),
                       ("centred", f"smaller images were centred on transparent {size}x{size} canvases, "
                                   "never stretched"),
                       ("reduced", "pixel-doubled images were reduced exactly")):
        done = [n for n in notes if kind in n]
        if done:
            log(f"{len(done)} {what} (first: {done[0]})")
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([index[c] for c in names], dtype=torch.long)
    texts = [captions.get(f, c) for f, c in zip(files, names)]
    return PixelData(images, labels, classes, files, texts, skipped, notes)


def augment(batch: torch.Tensor, flip_p: float, generator: torch.Generator) -> torch.Tensor:
    """uint8 N,C,H,W -> float in [-1, 1] (float input, a latent model's latents, is kept as it is),
    each image flipped left-right with probability flip_p."""
    x = to_unit(batch) if batch.dtype == torch.uint8 else batch
    flip = torch.rand(x.shape[0], generator=generator, device=generator.device) < flip_p
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [-1, 1], as the networks see pixels."""
    return images.float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Model output in [-1, 1] -> uint8 N,C,H,W (the inverse of augment's scaling)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def make_grid(images: torch.Tensor, ncols: int = 0, scale: int = 4, pad: int = 1) -> Image.Image:
    """uint8 N,C,H,W -> one PIL image: a grid with `pad`-pixel gaps (grey for RGB, transparent for
    RGBA), upscaled by an integer factor with nearest-neighbour so every pixel stays a sharp square."""
    n, c, h, w = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    canvas = torch.full((c, nrows * (h + pad) + pad, ncols * (w + pad) + pad), 96, dtype=torch.uint8)
    if c == 4:
        canvas[3] = 0
    for i, img in enumerate(images):
        r, col = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        canvas[:, y:y + h, x:x + w] = img
    return upscale(to_pil(canvas), scale)


def to_pil(image: torch.Tensor) -> Image.Image:
    """uint8 C,H,W (3 or 4 channels) -> PIL RGB or RGBA."""
    return Image.fromarray(image.permute(1, 2, 0).cpu().numpy(), "RGBA" if image.shape[0] == 4 else "RGB")


def upscale(img: Image.Image, scale: int) -> Image.Image:
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


@script
def main(argv: list[str]) -> None:
    o = LoaderOptions()
    parse_args(argv, __doc__, o, config=False)
    data = load_folder(o.data_dir, o.spec())
    counts = torch.bincount(data.labels, minlength=len(data.classes)).tolist()
    print(f"{len(data.files)} images from {o.data_dir} -> tensor "
          f"{tuple(data.images.shape)} uint8, {len(data.classes)} classes:")
    print(", ".join(f"{c} ({n})" for c, n in zip(data.classes, counts)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
