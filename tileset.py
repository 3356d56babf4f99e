"""Make a tileset of two terrains that joins in every placement, for Tiled: the 16-tile corner Wang set
and the 47-tile blob set, their .tsx tilesets (with Wang sets), a random map (.tmx) and its picture.

Usage:
    python tileset.py                                   # the shipped terrain model: floor and water
    python tileset.py --terrains=floor,wall --seed=3    # any two classes (or prompts) of a tile model
    python tileset.py --compare                         # also: seams of tiles drawn alone, corner fidelity

Writes outputs/tileset/: A-B_corner.png (4 x 4 tiles) and A-B_blob.png (8 x 6, 47 tiles) at native
size, A-B_corner.tsx and A-B_blob.tsx (Tiled tilesets: a Wang set naming the two terrains, every tile's
Wang id), map.tmx (a --width x --height map laid by the corner rule, using A-B_corner.tsx) and map.png
(that map as the project renders it; Tiled's tmxrasterizer draws the same). Prints the map's seam
ratio: the mean colour jump across tile boundaries over the jump inside tiles (1: invisible).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from config import OUTPUTS, SAMPLER, SAMPLER_STEPS, UserError, folder_path, option, parse_args, script


@dataclass
class TilesetOptions:
    model: str = option("pretrained/terrain", "a model of opaque RGB tiles with classes or prompts")
    terrains: tuple[str, ...] = option(("floor", "water"), "the two terrains: classes (or prompts) of "
                                                           "the model, comma-separated")
    seed: int = option(0, "seed of the textures, the cuts and the sampling")
    sampler: str = option(SAMPLER, " | ".join(SAMPLER_STEPS))
    steps: int = option(0, "sampler steps; 0: the sampler's default")
    width: int = option(16, "the sample map's width in tiles")
    height: int = option(16, "the sample map's height in tiles")
    out: str = option(f"{OUTPUTS}/tileset", "the folder to write")
    compare: bool = option(False, "also measure the same tiles drawn each on its own (no shared "
                                  "borders), seamless single tiles, and how often a probe calls each "
                                  "tile corner its terrain")


@script
def main(argv: list[str]) -> None:
    o = TilesetOptions()
    parse_args(argv, __doc__, o, config=False)
    if len(o.terrains) != 2:
        raise UserError(f"--terrains takes two terrains, comma-separated; got {len(o.terrains)}")
    if not (1 <= o.width <= 256 and 1 <= o.height <= 256):
        raise UserError(f"--width and --height must be between 1 and 256 tiles, got {o.width}x{o.height}")
    if o.steps < 0 or o.sampler not in SAMPLER_STEPS:
        raise UserError(f"--sampler must be one of {', '.join(SAMPLER_STEPS)} and --steps >= 0")
    out = folder_path(o.out)
    import autotile
    from model import load_model
    m = load_model(o.model)
    print(f"model: {m.source} ({m.why})")
    req = autotile.TilesetRequest(*o.terrains, o.seed, o.sampler, o.steps, progress=True)
    t = autotile.tileset(m, req, o.width, o.height, out)
    print(t.summary())
    print("wrote " + ", ".join(map(str, t.written)))
    if o.compare:
        for line in autotile.compare(m, req, t.cells, t.sets, t.textures):
            print(line)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
