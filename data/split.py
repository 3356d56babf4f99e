"""Write data/heldout.txt: a fixed 10% of the item icons and of the monsters, stratified by class, that
the shipped model never trains on (train.py --held_out=data/heldout.txt), so that evaluate.py
--held_out can judge it on sprites it was never shown.

Usage:
    python data/split.py
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FOLDERS = ("dcss_items", "dcss_items_more", "dcss_monsters")
SHARE = 0.1


def main() -> int:
    by_class: dict[str, list[str]] = {}
    for folder in FOLDERS:
        for path in sorted((HERE / folder).rglob("*.png")):
            cls = f"{'monsters' if folder == 'dcss_monsters' else 'items'}/{path.parent.name}"
            by_class.setdefault(cls, []).append(str(path.relative_to(HERE.parent)))
    chosen = []
    for cls, files in sorted(by_class.items()):
        chosen += random.Random(cls).sample(files, round(SHARE * len(files)))
    (HERE / "heldout.txt").write_text("".join(f"{f}\n" for f in sorted(chosen)))
    print(f"held out {len(chosen)} of {sum(map(len, by_class.values()))} sprites in data/heldout.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
