"""Walk cycles from a character model: one standing frame in (or a caption), the 36 frames of the
four-direction walk out, and the files a game engine or editor reads.

Usage:
    m = load_model("pretrained/characters")
    ref = read_reference("hero.png")                        # uint8 4 x 64 x 64, checked (one line)
    walk = walk_cycle(m, WalkRequest(reference=ref, seed=0))  # uint8 4 x 9 x 4 x 64 x 64
    walk = walk_cycle(m, WalkRequest(prompt="a man with blond hair, a red shirt and teal pants"))
    files = write_walk(walk, Path("outputs/animate"))       # sheet.png, GIFs, sheet.json, sheet.tres

Rows are LPC's walk rows (up, left, down, right), 9 frames each, frame 0 standing; the standing frame
facing down is the reference itself. Colours of the drawn frames are snapped to the reference's own
colours (palette="reference"), so that the character keeps its colours in every frame.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from characters import DIRECTIONS, DOWN, FRAME, FRAME_NAMES, SHEET, WALK_FRAMES, WALK_ROW, sheet_of
from config import SAMPLER, WALK_GUIDANCE, UserError
from conditioning import STANDING
from dataset import to_unit
from devices import autocast
from model import Loaded
from palette import load_palette, snap

GIF_SCALE, FPS = 4, 10  # the animated GIFs: nearest-neighbour upscale and frames a second
FILES = ("sheet.png", "sheet.json", "sheet.tres", *(f"walk_{d}.gif" for d in DIRECTIONS))


@dataclass
class WalkRequest:
    """A walk cycle: from a reference (uint8 4 x 64 x 64, the standing frame facing down), or drawn
    from the prompt first when there is none. palette: reference (its own colours) | data (the
    model's training colours) | none | a .hex or .gpl file."""
    reference: torch.Tensor | None = None
    prompt: str = ""
    seed: int = 0
    sampler: str = SAMPLER
    steps: int = 0
    guidance: float = WALK_GUIDANCE  # towards the caption and, for the walk, the standing frame
    palette: str = "reference"
    progress: bool = False


def check_model(m: Loaded) -> None:
    if m.spec.condition != "character":
        raise UserError(f"{m.source} is not a character model (condition={m.spec.condition}): train "
                        "one with train.py --preset=character, or use --model=pretrained/characters")


def walk_cycle(m: Loaded, req: WalkRequest) -> torch.Tensor:
    """uint8 4 x 9 x 4 x H x W: rows up, left, down, right; the standing frame facing down is the
    reference (drawn from the prompt when there is none). Sampled under bf16 autocast where that is
    fast (devices.autocast)."""
    check_model(m)
    with autocast(next(m.net.parameters()).device):  # the model trained in bf16
        return _walk_cycle(m, req)


def _walk_cycle(m: Loaded, req: WalkRequest) -> torch.Tensor:
    from sprites import SpriteRequest, generate
    if req.palette not in ("reference", "data", "none"):
        load_palette(req.palette)
    if req.reference is None and not req.prompt.strip():
        raise UserError("a walk cycle needs a standing frame (--init=sprite.png) or a --prompt")
    standing = FRAME_NAMES.index(STANDING)
    prompt = req.prompt.strip() or None
    common = dict(seed=req.seed, sampler=req.sampler, steps=req.steps, progress=req.progress)
    ref = req.reference
    if ref is None:
        images, _ = generate(m, SpriteRequest([(prompt, standing, None)], guidance=req.guidance,
                                              palette="data" if req.palette == "reference" else req.palette,
                                              **common))
        ref = images[0]
    others = [f for f in range(len(FRAME_NAMES)) if f != standing]
    wanted = [(prompt, f, to_unit(ref)) for f in others]
    frames, raw = generate(m, SpriteRequest(wanted, guidance=req.guidance,
                                            palette="none" if req.palette == "reference" else req.palette,
                                            **common))
    if req.palette == "reference":
        frames = snap(raw, colours_of(ref))
    out = torch.empty(len(FRAME_NAMES), *ref.shape, dtype=torch.uint8)
    out[others], out[standing] = frames, ref
    return out.view(len(DIRECTIONS), WALK_FRAMES, *ref.shape)


def colours_of(sprite: torch.Tensor) -> torch.Tensor:
    """K x 3 uint8: the distinct colours of a sprite's opaque pixels."""
    rgb = sprite[:3].reshape(3, -1).T
    opaque = rgb[sprite[3].reshape(-1) > 127] if sprite.shape[0] == 4 else rgb
    return torch.unique(opaque if len(opaque) else rgb, dim=0)


# ----------------------------------------------------------------------------- the input sprite

def read_reference(path: str | Path, log=print, what: str = "--init") -> torch.Tensor:
    """A standing frame facing down as uint8 4 x 64 x 64, from a PNG (or GIF, WebP) with
    transparency: smaller sprites are centred on a transparent 64 x 64 canvas and a whole LPC sheet
    gives its standing frame facing down, each said in one line; anything else is refused in one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    if path.stat().st_size == 0:
        raise UserError(f"{what} {path} is an empty file")
    try:
        with Image.open(path) as im:
            fmt = im.format
            im.seek(0)
            im.load()
            rgba = im.convert("RGBA")
            alpha_kept = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{what} {path} is not an image PIL can read ({e})") from None
    if fmt == "JPEG":
        raise UserError(f"{what} {path} is a JPEG, which holds no transparency: a character model needs "
                        "the sprite's outline, so give a PNG with a transparent background")
    w, h = rgba.size
    if (w, h) == SHEET:
        row = WALK_ROW + DOWN
        rgba = rgba.crop((0, row * FRAME, FRAME, (row + 1) * FRAME))
        log(f"{path} is a whole LPC sheet: took its standing frame facing down (row {row}, frame 0)")
    elif w > FRAME or h > FRAME:
        raise UserError(f"{what} {path} is {w}x{h}, larger than the model's {FRAME}x{FRAME} frame: give "
                        "one frame (the character standing, facing down) or a whole LPC sheet")
    elif (w, h) != (FRAME, FRAME):
        canvas = Image.new("RGBA", (FRAME, FRAME), (0, 0, 0, 0))
        canvas.paste(rgba, ((FRAME - w) // 2, (FRAME - h) // 2))
        rgba = canvas
        log(f"{path} is {w}x{h}: centred on a transparent {FRAME}x{FRAME} canvas")
    arr = np.asarray(rgba).copy()
    opaque = arr[..., 3] > 127
    if not alpha_kept or opaque.all():
        raise UserError(f"{what} {path} has no transparent pixels: the model needs the character on a "
                        "transparent background (its outline), as LPC frames are")
    if not opaque.any():
        raise UserError(f"{what} {path} is empty: every pixel is transparent")
    arr[..., 3] = np.where(opaque, 255, 0)
    arr[~opaque, :3] = 0  # as the training frames store their transparent pixels
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


# ----------------------------------------------------------------------------- the files

def write_walk(walk: torch.Tensor, folder: Path, name: str = "sheet") -> list[Path]:
    """sheet.png (9 x 4 frames at native size), walk_<direction>.gif (upscaled, looping),
    sheet.json (Aseprite's JSON array format, a frame tag per direction) and sheet.tres (a Godot 4
    SpriteFrames resource, an animation per direction) in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = walk.permute(0, 1, 3, 4, 2).numpy()  # rows, frames, H, W, C
    rows, cols, h, w, _ = frames.shape
    png = folder / f"{name}.png"
    Image.fromarray(sheet_of(frames), "RGBA").save(png)
    written = [png]
    for r, direction in enumerate(DIRECTIONS):
        gif = folder / f"walk_{direction}.gif"
        write_gif([Image.fromarray(f, "RGBA") for f in frames[r]], gif)
        written.append(gif)
    written.append(folder / f"{name}.json")
    written[-1].write_text(json.dumps(aseprite_json(png.name, rows, cols, w, h), indent=1) + "\n")
    written.append(folder / f"{name}.tres")
    written[-1].write_text(godot_sprite_frames(png.name, rows, cols, w, h))
    return written


def write_gif(frames: list[Image.Image], path: Path, scale: int = GIF_SCALE, fps: int = FPS) -> None:
    """An animated GIF that loops, with index 0 transparent; upscaled with nearest-neighbour."""
    big = [f.resize((f.width * scale, f.height * scale), Image.NEAREST) for f in frames]
    sheet = Image.new("RGBA", (big[0].width * len(big), big[0].height))
    for i, f in enumerate(big):
        sheet.paste(f, (i * f.width, 0))
    rgb = sheet.convert("RGB").quantize(colors=255, method=Image.Quantize.MEDIANCUT,
                                         dither=Image.Dither.NONE)
    pal = rgb.getpalette()[:255 * 3]
    idx = np.asarray(rgb, dtype=np.uint8) + 1  # 0 is the transparent index
    idx[np.asarray(sheet)[..., 3] < 128] = 0
    paletted = []
    for i in range(len(big)):
        p = Image.fromarray(np.ascontiguousarray(idx[:, i * big[0].width:(i + 1) * big[0].width]), "P")
        p.putpalette([0, 0, 0] + pal)
        paletted.append(p)
    paletted[0].save(path, save_all=True, append_images=paletted[1:], duration=1000 // fps, loop=0,
                     transparency=0, disposal=2, optimize=False)


def directions_of(rows: int, cols: int) -> list[tuple[str, int]]:
    """(animation name, index of its first frame) per row."""
    return [(f"walk_{d}", r * cols) for r, d in enumerate(DIRECTIONS[:rows])]


def aseprite_json(image: str, rows: int, cols: int, w: int, h: int) -> dict:
    """Aseprite's sprite-sheet JSON (array format): every frame's rectangle, a tag per direction."""
    frames = [{"filename": f"{name} {i}", "frame": {"x": i * w, "y": r * h, "w": w, "h": h},
               "rotated": False, "trimmed": False, "spriteSourceSize": {"x": 0, "y": 0, "w": w, "h": h},
               "sourceSize": {"w": w, "h": h}, "duration": 1000 // FPS}
              for r, (name, _) in enumerate(directions_of(rows, cols)) for i in range(cols)]
    tags = [{"name": name, "from": first, "to": first + cols - 1, "direction": "forward"}
            for name, first in directions_of(rows, cols)]
    return {"frames": frames, "meta": {"app": "pixel-art-diffusion animate.py", "version": "1.0",
                                       "image": image, "format": "RGBA8888",
                                       "size": {"w": cols * w, "h": rows * h}, "scale": "1",
                                       "frameTags": tags, "layers": [], "slices": []}}


def godot_sprite_frames(image: str, rows: int, cols: int, w: int, h: int) -> str:
    """A Godot 4 SpriteFrames resource (.tres): an AtlasTexture per frame of the sheet (a path
    relative to the .tres), an animation per direction at FPS frames a second, looping."""
    parts = [f'[gd_resource type="SpriteFrames" load_steps={rows * cols + 2} format=3]\n',
             f'[ext_resource type="Texture2D" path="{image}" id="1_sheet"]\n']
    for r in range(rows):
        for i in range(cols):
            parts.append(f'[sub_resource type="AtlasTexture" id="AtlasTexture_{r * cols + i}"]\n'
                         f'atlas = ExtResource("1_sheet")\nregion = Rect2({i * w}, {r * h}, {w}, {h})\n')
    anims = []
    for name, first in directions_of(rows, cols):
        frames = ", ".join('{\n"duration": 1.0,\n"texture": SubResource("AtlasTexture_%d")\n}' % (first + i)
                           for i in range(cols))
        anims.append('{\n"frames": [%s],\n"loop": true,\n"name": &"%s",\n"speed": %.1f\n}'
                     % (frames, name, FPS))
    parts.append("[resource]\nanimations = [" + ", ".join(anims) + "]\n")
    return "\n".join(parts)
