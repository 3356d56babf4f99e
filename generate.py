"""Generate pixel-art sprites with a trained model; writes a sample grid, a sprite sheet and each sprite.

Usage:
    python generate.py                          # the latest run under runs/, else the shipped model
    python generate.py --model=pretrained --prompt="a blue book" --num_images=8   # the shipped model
    python generate.py --model=pretrained --prompt_file=prompts.txt --negative_prompt="grey"  # a row each
    python generate.py --model=runs/mine --num_images=32 --seed=1 --steps=20
    python generate.py --sampler=ddpm           # the seed's 1000-step DDPM sampler
    python generate.py --model=pretrained/terrain --class=floor,wall --guidance=3   # class models
    python generate.py --model=pretrained/terrain --class=all   # a row per class; --class=none: no class
    python generate.py --palette=my.hex         # snap to your palette (.hex or .gpl); none: raw colours
    python generate.py --model=pretrained --init=outputs/generated/0000.png --strength=0.5  # variations
    python generate.py --model=pretrained --init=outputs/generated/0000.png --mask=mask.png  # inpainting
    python generate.py --model=pretrained --init=outputs/generated/0000.png --extend=right --by=8
    python generate.py --model=pretrained/terrain --tileable   # sprites that wrap in x and y

Writes outputs/generated_images.png (the grid, upscaled with nearest-neighbour so pixels stay sharp),
outputs/generated_images_sheet.png (a sprite sheet at native size), outputs/generated/NNNN.png (each
sprite at native size; RGBA models keep transparency) and outputs/generated/raw/ (before snapping).
Without --prompt or --class a text model draws real captions of its training data, a class model its
classes in turn. Colours are snapped to the training data's palette (saved with the model) with no
dithering; alpha is always snapped to 0 or 255. Samplers: ddpm (1000 steps), ddim (50), dpm
(DPM-Solver++, 10: the default); --steps overrides the count.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from config import OUTPUTS, SamplingOptions, UserError, option, parse_args, picture_path, script


@dataclass
class GenerateOptions(SamplingOptions):
    prompt: str = option("", "text models: what to draw, e.g. 'a red potion' (a row); '' samples "
                             "unconditionally")
    prompt_file: str = option("", "text models: a text file, one prompt a row of the grid")
    init: str = option("", "start from this sprite (PNG): variations with --strength, inpainting with "
                           "--mask, outpainting with --extend")
    strength: float = option(1.0, "with --init: share of the noise schedule run from the noised sprite: "
                                  "0 gives it back, 1 ignores it (outside a mask)")
    mask: str = option("", "with --init: repaint where this image is white (or opaque, if it has "
                           "transparency)")
    extend: str = option("", "with --init, outpainting: left | right | up | down: move the sprite away "
                             "from that side and fill the strip")
    by: int = option(8, "pixels to extend by")
    resample: int = option(2, "inpainting and outpainting: RePaint resamplings of each step (0: plain "
                              "replacement of the rest; 2 agreed best with the surroundings, "
                              "RESULTS.md)")
    tileable: bool = option(False, "sprites that wrap in x and y (the image rolled by a random offset "
                                   "before each step); also writes each repeated 3x3")
    negative_prompt: str = option("", "text models: what to steer away from (guidance pushes from "
                                      "this instead of from no prompt)")
    num_images: int = option(16, "images in all; with --class or prompts, per row")
    out: str = option(f"{OUTPUTS}/generated_images.png", "the grid (.png, or a folder to put "
                                                         "generated_images.png in); the sheet and "
                                                         "single sprites go beside it")
    scale: int = option(4, "nearest-neighbour upscale of the grid")
    device: str = option("auto", "auto (a GPU if one is visible) | cpu | cuda")


def read_prompts(o: GenerateOptions, given: dict) -> tuple[str, ...]:
    """--prompt (one row) or --prompt_file (a row per non-blank line)."""
    if o.prompt_file:
        if "prompt" in given:
            raise UserError("--prompt and --prompt_file both give prompts: use one")
        path = Path(o.prompt_file)
        if not path.is_file():
            raise UserError(f"prompt file {path} does not exist")
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
        if not any(lines):
            raise UserError(f"prompt file {path} holds no prompt")
        return tuple(line for line in lines if line)
    return (o.prompt.strip(),) if "prompt" in given else ()


def check_options(o: GenerateOptions, given: dict) -> None:
    """Numbers out of range and options that would do nothing stop here, before the model loads."""
    for name, low in (("num_images", 1), ("scale", 1), ("steps", 0), ("resample", 0)):
        if getattr(o, name) < low:
            raise UserError(f"--{name} must be >= {low}, got {getattr(o, name)}")
    if not 0 <= o.strength <= 1:
        raise UserError(f"--strength must be in [0, 1], got {o.strength}")
    if not o.init:
        unused = [k for k in ("strength", "mask", "extend", "by", "resample") if k in given]
        if unused:
            raise UserError(f"--{unused[0]} works on a sprite: give it one with --init=sprite.png")
    if o.mask and o.extend:
        raise UserError("--mask and --extend both say what to repaint: give one")


@script
def main(argv: list[str]) -> None:
    o = GenerateOptions()
    _, given = parse_args(argv, __doc__, o, config=False)
    prompts = read_prompts(o, given)
    check_options(o, given)
    out = picture_path(o.out, "generated_images.png")
    from devices import choose_device
    from model import load_model
    from conditioning import unknown_words_line
    from sprites import SpriteRequest, check, generate, save, start_from
    req = SpriteRequest([], o.seed, o.sampler, o.steps, o.guidance, o.palette, o.negative_prompt,
                        tileable=o.tileable, progress=True, guidance_interval=o.guidance_interval)
    check(req)
    device = choose_device(o.device)
    m = load_model(o.model)
    print(f"model: {m.source} ({m.why})")
    m.net.to(device)
    rows, req.wanted = m.condition.request(o.classes, prompts, o.num_images)
    note = unknown_words_line(m.condition, prompts)
    if note:
        print(note)
    req.start = start_from(m.spec, o.init, o.mask, o.extend, o.by, o.strength, o.resample)
    images, raw = generate(m, req)
    written = save(images, raw, rows, o.num_images, out, o.scale, o.tileable)
    print(f"wrote {len(raw)} sprites (palette: {o.palette}): " + ", ".join(map(str, written)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
