"""Find the player-doll equipment tiles in the game's sheet, for the tiles that pass the licence rule.

The doll's helmets, body armour, cloaks, boots, gloves, shields and hand weapons are drawn alone on
transparent 32x32 canvases; the game packs each one, trimmed to its opaque pixels, into player.png.
For every source PNG of those folders in crawl 0.28.0 that passes the rule of data/provenance.py
(byte-identical to a file of crawl/tiles' releases/Nov-2015, and not on its list of tiles of unclear
licence), this finds where its pixels sit in player.png, exactly, and writes a row of
data/dcss_doll.csv: the source box in the sheet, where the drawing sits on the doll's canvas
(doll_ox, doll_oy) and the offset that centres it on a 32x32 tile like an item icon (ox, oy: shifted,
never scaled; a helmet drawn as a band at the top of the doll is a helmet in the middle of the tile),
which data/prepare_dcss.py cuts as it cuts the other tables.

Usage:
    python data/doll_tiles.py --crawl=CRAWL_GIT_DIR --tiles=TILES_GIT_DIR --sheets=pkg/usr/share/crawl/dat/tiles
"""
from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from provenance import CRAWL_TAG, RELEASE, git, png_blobs, read_blobs, rgba

HERE = Path(__file__).resolve().parent
# source folder -> class folder of data/dcss_doll
PARTS = {"head": "helmet", "body": "body_armour", "cloak": "cloak", "boots": "boots", "gloves": "gloves",
         "hand2": "shield", "hand1": "hand_weapon"}


def packed(image: np.ndarray) -> np.ndarray:
    """H x W x 4 uint8 -> H x W uint32, one number a pixel."""
    return image.astype(np.uint32) @ np.array([1 << 24, 1 << 16, 1 << 8, 1], np.uint32)


def locate(sheet: np.ndarray, where: dict, trimmed: np.ndarray) -> tuple[int, int] | None:
    """(x, y) of the trimmed tile's top-left in the sheet (uint32 pixels), found through its
    rarest pixel value; None when its pixels are nowhere exactly."""
    h, w = trimmed.shape
    ys, xs = np.nonzero(trimmed)
    values = trimmed[ys, xs]
    rarest = min(range(len(values)), key=lambda i: len(where.get(int(values[i]), ())))
    ty, tx = ys[rarest], xs[rarest]
    for sy, sx in where.get(int(values[rarest]), ()):
        y, x = sy - ty, sx - tx
        if 0 <= y and 0 <= x and y + h <= sheet.shape[0] and x + w <= sheet.shape[1] and \
                np.array_equal(sheet[y:y + h, x:x + w], trimmed):
            return int(x), int(y)
    return None


def main(argv: list[str]) -> int:
    args = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    if not {"crawl", "tiles", "sheets"} <= set(args):
        print(__doc__.split("Usage:")[1].strip().splitlines()[0].strip(), file=sys.stderr)
        return 2
    released = {b: p for b, p in png_blobs(args["tiles"], "HEAD", RELEASE)}
    unclear = set(re.findall(r"^- (\S+\.png)", git(args["tiles"], "show",
                                                   "HEAD:TILES_UNDER_UNKNOWN_LICENSE.md"), re.M))
    sources = [(b, p) for part in PARTS for b, p in
               png_blobs(args["crawl"], CRAWL_TAG, f"crawl-ref/source/rltiles/player/{part}")
               if b in released and Path(p).name not in unclear]
    pixels = read_blobs(args["crawl"], [b for b, _ in sources])
    with Image.open(Path(args["sheets"]) / "player.png") as img:
        sheet = packed(np.asarray(img.convert("RGBA")))
    sheet = np.where(sheet & 0xFF, sheet, 0)  # transparent pixels compare as 0, whatever their colour
    order = np.argsort(sheet, axis=None, kind="stable")
    values, starts = np.unique(sheet.ravel()[order], return_index=True)
    coords = np.stack(np.unravel_index(order, sheet.shape), 1)
    where = {int(v): coords[s:e] for v, s, e in zip(values, starts, [*starts[1:], len(order)]) if v}
    rows, seen, missing = [], set(), 0
    for blob, path in sources:
        image = rgba(pixels[blob])
        if image is None:
            continue
        tile = np.where(image[..., 3:] > 0, image, 0)
        ys, xs = np.nonzero(tile[..., 3])
        if not len(ys) or tile.tobytes() in seen:  # empty, or a drawing already kept
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        found = locate(sheet, where, packed(tile[y0:y1, x0:x1]))
        if found is None:
            missing += 1
            continue
        seen.add(tile.tobytes())
        part = path.split("/player/")[1].split("/")[0]
        name = Path(path).stem
        rows.append({"file": f"{PARTS[part]}/{name}.png", "tile": name.upper(), "sheet": "player.png",
                     "sx": found[0], "sy": found[1], "ex": found[0] + x1 - x0, "ey": found[1] + y1 - y0,
                     "ox": (32 - (x1 - x0)) // 2, "oy": (32 - (y1 - y0)) // 2, "doll_ox": x0,
                     "doll_oy": y0, "w": 32, "h": 32,
                     "src_path": path.removeprefix("crawl-ref/source/rltiles/"), "blob": blob,
                     "release_path": released[blob]})
    with (HERE / "dcss_doll.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} doll tiles pass the rule and were found in player.png ({missing} that pass are "
          f"not there exactly; drawings kept once)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
