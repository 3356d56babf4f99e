"""Rebuild data/dcss_items/ and data/dcss_monsters/ from the Dungeon Crawl Stone Soup tile sheets.

The sprites shipped in data/ were cut from `main.png` (items) and `player.png` (monsters) of the Debian
package crawl-tiles-data 2:0.28.0-1.1 with the tables dcss_items.csv and dcss_monsters.csv beside
this script. Only item rows with cc0_vetted=1 (346 icons) are written; the others are listed for
reference. The captions (metadata.jsonl) are written afterwards by captions.py.

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

SHEETS = {  # sheet -> (sha256 in crawl-tiles-data 2:0.28.0-1.1, its table, the folder it fills)
    "main.png": ("89f404ae30ab05c91e96d50bd166169c0819bbe61951b31ed1517c7c0cd912df", "dcss_items"),
    "player.png": ("b96b07ad9b48b2c7a7f57677d693701b5c4a2d2b0ade22b8fd7b9afa80495556", "dcss_monsters"),
}
HERE = Path(__file__).resolve().parent


def cut_icons(sheet: Image.Image, table: Path, out: Path) -> int:
    """Cut every vetted sprite: crop (sx,sy)-(ex,ey), paste at (ox,oy) on a transparent w x h canvas."""
    count = 0
    with open(table, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("cc0_vetted", "1").strip() != "1":
                continue
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
    tiles, out = Path(args[0]), Path(outs[-1] if outs else HERE)
    for sheet_name, (sha256, name) in SHEETS.items():
        sheet_path = tiles / sheet_name
        if not sheet_path.is_file():
            print(f"error: {sheet_path} does not exist", file=sys.stderr)
            return 2
        digest = hashlib.sha256(sheet_path.read_bytes()).hexdigest()
        if digest != sha256:
            print(f"error: {sheet_path} has sha256 {digest}, expected {sha256} "
                  "(crawl-tiles-data 2:0.28.0-1.1)", file=sys.stderr)
            return 2
        with Image.open(sheet_path) as sheet:
            n = cut_icons(sheet.convert("RGBA"), HERE / f"{name}.csv", out / name)
        print(f"wrote {n} sprites to {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
