"""Draw a character's walk cycle in four directions from one standing frame, or from a caption.

Usage:
    python animate.py --init=hero.png          # a 64x64 RGBA sprite standing, facing down (LPC's way)
    python animate.py --prompt="a man with blond hair, a red shirt and teal pants"
    python animate.py --init=hero.png --seed=3 --out=outputs/hero
    python animate.py --init=lpc_sheet.png     # a whole LPC sheet: its standing frame facing down

Writes, under outputs/animate/ by default: sheet.png (9 columns x 4 rows of 64x64 frames at native
size; rows up, left, down, right, as LPC's walk rows), walk_up.gif, walk_left.gif, walk_down.gif and
walk_right.gif (looping, upscaled 4x with nearest-neighbour), sheet.json (Aseprite's JSON sheet format,
a frame tag per direction) and sheet.tres (a Godot 4 SpriteFrames resource, an animation per
direction). With --prompt and no --init the standing frame is drawn from the caption first. The
drawn frames take the standing frame's own colours (--palette=reference).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from config import OUTPUTS, SAMPLER, SAMPLER_STEPS, WALK_GUIDANCE, folder_path, option, parse_args, script

CHARACTERS = "pretrained/characters"  # the shipped character model


@dataclass
class AnimateOptions:
    init: str = option("", "the standing frame facing down: a PNG with transparency, 64x64 or smaller "
                           "(centred), or a whole LPC sheet")
    prompt: str = option("", "what the character looks like, e.g. 'a woman with long red hair, a "
                             "white shirt, teal pants and brown shoes'; without --init the standing "
                             "frame is drawn from it")
    model: str = option(CHARACTERS, "a character model: a run of train.py --preset=character or its "
                                    "export")
    seed: int = option(0, "seed of the starting noise")
    sampler: str = option(SAMPLER, f"{' | '.join(SAMPLER_STEPS)}")
    steps: int = option(0, "sampler steps; 0: the sampler's default")
    guidance: float = option(WALK_GUIDANCE, "classifier-free guidance towards the caption and the "
                                            "standing frame (1: none)")
    palette: str = option("reference", "reference (the standing frame's own colours) | data | none | a "
                                       ".hex or .gpl file")
    out: str = option(f"{OUTPUTS}/animate", "the folder the files go to")
    device: str = option("auto", "auto (a GPU if one is visible) | cpu | cuda")


@script
def main(argv: list[str]) -> None:
    o = AnimateOptions()
    _, given = parse_args(argv, __doc__, o, config=False)
    from config import UserError
    if not o.init and not o.prompt.strip():
        raise UserError("give the standing frame (--init=sprite.png) or a --prompt")
    if o.steps < 0:
        raise UserError(f"--steps must be >= 0, got {o.steps}")
    out = folder_path(o.out)
    from animation import WalkRequest, check_model, read_reference, walk_cycle, write_walk
    from devices import choose_device
    from model import load_model
    ref = read_reference(o.init) if o.init else None
    device = choose_device(o.device)
    m = load_model(o.model)
    check_model(m)
    why = m.why if "model" in given else "the shipped character model; --model picks another"
    print(f"model: {m.source} ({why})")
    m.net.to(device)
    walk = walk_cycle(m, WalkRequest(ref, o.prompt, o.seed, o.sampler, o.steps, o.guidance, o.palette,
                                     progress=True))
    written = write_walk(walk, out)
    print("wrote " + ", ".join(map(str, written)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
