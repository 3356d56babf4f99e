"""Check, tile by tile, the licence rule of the item icons, and record where each one comes from.

A tile ships only if its source PNG in crawl 0.28.0 is byte-identical (the same git blob) to a file of
the crawl/tiles repository's cleared release `releases/Nov-2015`, and its name is not on that
repository's list of tiles of unclear licence (TILES_UNDER_UNKNOWN_LICENSE.md). A sheet tile is
matched to its source PNG by its pixels: every opaque pixel of the source is the sheet's, and the
sheet adds nothing but the black rim the game draws around some items. Tiles drawn from two
sources (a scroll on its coloured back) match none and are left out.

Usage:
    python data/provenance.py --crawl=CRAWL_GIT_DIR --tiles=TILES_GIT_DIR --sheets=pkg/usr/share/crawl/dat/tiles

Rewrites the columns src_path, blob, release_path and cc0 of data/dcss_items.csv (cc0 = 1: the rule
holds); data/prepare_dcss.py then cuts the passing tiles.
"""
from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
CRAWL_TAG, RELEASE = "0.28.0", "releases/Nov-2015"
SOURCES = "crawl-ref/source/rltiles/item"


def git(gitdir: str, *args: str, binary: bool = False):
    out = subprocess.run(["git", f"--git-dir={gitdir}", *args], capture_output=True, check=True).stdout
    return out if binary else out.decode()


def png_blobs(gitdir: str, ref: str, path: str) -> list[tuple[str, str]]:
    """(blob id, path) of every PNG under path at ref."""
    rows = [line.split("\t", 1) for line in git(gitdir, "ls-tree", "-r", ref, path).splitlines()]
    return [(meta.split()[2], p) for meta, p in rows if p.endswith(".png")]


def read_blobs(gitdir: str, blobs: list[str]) -> dict[str, bytes]:
    """The contents of many blobs in one `git cat-file --batch`."""
    out = subprocess.run(["git", f"--git-dir={gitdir}", "cat-file", "--batch"], check=True,
                         input="\n".join(blobs).encode() + b"\n", capture_output=True).stdout
    contents, pos = {}, 0
    for blob in blobs:
        header_end = out.index(b"\n", pos)
        size = int(out[pos:header_end].split()[2])
        contents[blob] = out[header_end + 1:header_end + 1 + size]
        pos = header_end + 2 + size
    return contents


def rgba(data: bytes, size: int = 32) -> np.ndarray | None:
    """A PNG as size x size RGBA, or None when it is another size (not one item icon)."""
    with Image.open(io.BytesIO(data)) as img:
        if img.size != (size, size):
            return None
        return np.asarray(img.convert("RGBA"))


def explains(src: np.ndarray, tile: np.ndarray) -> bool:
    """The sheet tile is this source: its opaque pixels exactly, and elsewhere nothing or black rim."""
    opaque = src[..., 3] > 0
    if tile.shape != src.shape or not (tile[opaque] == src[opaque]).all():
        return False
    rest = tile[~opaque]
    return bool(((rest[:, 3] == 0) | ((rest[:, :3] == 0).all(1) & (rest[:, 3] == 255))).all())


def cut(sheet: Image.Image, row: dict) -> np.ndarray:
    icon = Image.new("RGBA", (int(row["w"]), int(row["h"])), (0, 0, 0, 0))
    icon.paste(sheet.crop(tuple(int(row[k]) for k in ("sx", "sy", "ex", "ey"))), (int(row["ox"]), int(row["oy"])))
    return np.asarray(icon)


def main(argv: list[str]) -> int:
    args = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    if not {"crawl", "tiles", "sheets"} <= set(args):
        print(__doc__.split("Usage:")[1].strip().splitlines()[0].strip(), file=sys.stderr)
        return 2
    sources = png_blobs(args["crawl"], CRAWL_TAG, SOURCES)
    released = {blob: path for blob, path in png_blobs(args["tiles"], "HEAD", RELEASE)}
    unclear = set(re.findall(r"^- (\S+\.png)", git(args["tiles"], "show", "HEAD:TILES_UNDER_UNKNOWN_LICENSE.md"),
                             re.M))
    pixels = read_blobs(args["crawl"], [b for b, _ in sources])
    candidates = [(blob, path, img) for blob, path in sources
                  if (img := rgba(pixels[blob])) is not None]
    with Image.open(Path(args["sheets"]) / "main.png") as sheet:
        sheet = sheet.convert("RGBA")
        table = HERE / "dcss_items.csv"
        rows = list(csv.DictReader(table.open(newline="")))
        for row in rows:
            tile = cut(sheet, row)
            found = [(b, p) for b, p, img in candidates if explains(img, tile)]
            # a match that passes, if any does (identical drawings can sit in two files)
            blob, path = next(((b, p) for b, p in found if b in released), found[0] if found else ("", ""))
            row.update(src_path=path.removeprefix("crawl-ref/source/rltiles/"), blob=blob,
                       release_path=released.get(blob, ""))
            row["cc0"] = int(bool(row["release_path"]) and Path(path).name not in unclear)
    fields = list(rows[0].keys())
    with table.open("w", newline="") as f:
        w = csv.DictWriter(f, fields, lineterminator="\r\n")
        w.writeheader()
        w.writerows(rows)
    vetted = [r for r in rows if r["cc0_vetted"] == "1"]
    print(f"{sum(r['cc0'] for r in rows)} of {len(rows)} item tiles pass the rule "
          f"({sum(r['cc0'] for r in vetted)} of the {len(vetted)} shipped before); "
          f"{sum(not r['src_path'] for r in rows)} match no single source PNG")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
