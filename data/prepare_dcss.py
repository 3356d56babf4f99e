"""Rebuild data/dcss_items/, dcss_items_more/, dcss_monsters/, dcss_doll/ and dcss_terrain/ from the
Dungeon Crawl Stone Soup tile sheets.

The sprites shipped in data/ were cut from `main.png` (items), `player.png` (monsters, doll
equipment), `floor.png` and `wall.png` (terrain) of the Debian package crawl-tiles-data 2:0.28.0-1.1
with the tables beside this script (a row's `sheet` column names its sheet; the items' is main.png).
dcss_items/ holds the 346 icons with cc0_vetted=1, the yardstick of the scores; dcss_items_more/ the
other item tiles that pass the licence rule (cc0=1, checked by provenance.py); dcss_doll/ the doll
tiles found by doll_tiles.py. The captions (metadata.jsonl) are written afterwards by captions.py.

Usage:
    apt-get download crawl-tiles-data && dpkg -x crawl-tiles-data_*.deb pkg
    python data/prepare_dcss.py pkg/usr/share/crawl/dat/tiles [--out=data]
"""
from __future__ import annotations

import csv
import hashlib
import sys
from pathlib import Path

from PIL import Image

SHEETS = {  # sha256 of each sheet in crawl-tiles-data 2:0.28.0-1.1
    "main.png": "89f404ae30ab05c91e96d50bd166169c0819bbe61951b31ed1517c7c0cd912df",
    "player.png": "b96b07ad9b48b2c7a7f57677d693701b5c4a2d2b0ade22b8fd7b9afa80495556",
    "floor.png": "69b40830a71dd58179d394274fd3e282b6a11cc95c4183d3783da1f7cec77d0a",
    "wall.png": "d008771a11358c2c7c736f35bfc144d4cbf1bb1e6250ee72c1ec2a6ea723e141",
}
# folder -> (its table, which rows)
FOLDERS = {"dcss_items": ("dcss_items.csv", lambda r: r["cc0_vetted"] == "1"),
           "dcss_items_more": ("dcss_items.csv", lambda r: r["cc0"] == "1" and r["cc0_vetted"] != "1"),
           "dcss_monsters": ("dcss_monsters.csv", lambda r: True),
           "dcss_doll": ("dcss_doll.csv", lambda r: True),
           "dcss_terrain": ("dcss_terrain.csv", lambda r: True)}
HERE = Path(__file__).resolve().parent


class BadSheet(Exception):
    pass


def open_sheet(tiles: Path, name: str, opened: dict) -> Image.Image:
    """The sheet, checked against its sha256 (once)."""
    if name not in opened:
        path = tiles / name
        if not path.is_file():
            raise BadSheet(f"{path} does not exist")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != SHEETS[name]:
            raise BadSheet(f"{path} has sha256 {digest}, expected {SHEETS[name]} "
                           "(crawl-tiles-data 2:0.28.0-1.1)")
        with Image.open(path) as sheet:
            opened[name] = sheet.convert("RGBA")
    return opened[name]


def cut(tiles: Path, table: Path, keep, out: Path, opened: dict) -> int:
    """Cut every sprite of the table that `keep` takes: crop (sx,sy)-(ex,ey) of its sheet, paste at
    (ox,oy) on a transparent w x h canvas."""
    count = 0
    with open(table, newline="") as f:
        for row in csv.DictReader(f):
            if not keep(row):
                continue
            sheet = open_sheet(tiles, row.get("sheet", "main.png"), opened)
            box = tuple(int(row[k]) for k in ("sx", "sy", "ex", "ey"))
            icon = Image.new("RGBA", (int(row["w"]), int(row["h"])), (0, 0, 0, 0))
            icon.paste(sheet.crop(box), (int(row["ox"]), int(row["oy"])))
            dest = out / row["file"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            icon.save(dest)
            count += 1
    return count


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--out=")]
    outs = [a.split("=", 1)[1] for a in argv if a.startswith("--out=")]
    if len(args) != 1:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    tiles, out, opened = Path(args[0]), Path(outs[-1] if outs else HERE), {}
    for name, (table, keep) in FOLDERS.items():
        try:
            n = cut(tiles, HERE / table, keep, out / name, opened)
        except BadSheet as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"wrote {n} sprites to {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
