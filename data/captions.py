"""Write metadata.jsonl (the Hugging Face imagefolder convention: one {"file_name", "text"} a line)
beside the shipped sprites, from what is known of each: its main colours, named from its own pixels
by palette.main_colours; the words of its tile name where they mean something; its class folder.

    WPN_HAND_AXE in weapon/      -> "grey hand axe, weapon"
    POTION_OFFSET_4 in potion/   -> "red and yellow potion"
    MONS_WOLF_SPIDER in animals/ -> "brown and grey wolf spider, animal"

Usage:
    python data/captions.py            # rewrites the metadata.jsonl of data/dcss_items/, dcss_monsters/, ...
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from palette import main_colours  # noqa: E402

# Tile-name words that say nothing of what the sprite shows (variants, sheet positions, states).
NOISE = {"offset", "normal", "first", "last", "ego", "art", "inert", "inventory", "base"}
SYNONYMS = {"thelm": "helmet", "bhelm": "helmet", "lbl": ""}  # the game's abbreviations
PREFIXES = {"wpn", "arm", "mi", "misc", "food", "mons", "rune", "unrand"}
# Colour words in a doll tile's name: its colours are named from its pixels instead (so that a
# recoloured sprite's caption stays true), and number words of variants.
DOLL = {"helmet", "body_armour", "cloak", "boots", "gloves", "shield", "hand_weapon"}
COLOURISH = {"red", "blue", "green", "gray", "grey", "lightgreen", "lightblue", "teal", "white", "black",
             "brown", "yellow", "purple", "pink", "cyan", "orange", "dark", "light", "darkgreen",
             "magenta", "gold", "silver", "one", "two", "three", "four", "fe"}
# Proper names: an artefact's or a unique monster's name is not a description.
NAMELESS = {"artefact", "unique", "player", "sprint"}


def name_words(tile: str, folder: str) -> str:
    """'WPN_HAND_AXE' -> 'hand axe'; '' when the name says nothing of the picture."""
    if folder in NAMELESS:
        return ""
    words = [SYNONYMS.get(w, w) for w in tile.lower().split("_")
             if w not in NOISE and not (folder in DOLL and w in COLOURISH) and not w.isdigit()]
    words = words[1:] if words and words[0] in PREFIXES else words
    return " ".join(w for w in words if w and not any(c.isdigit() for c in w))


def singular(folder: str) -> str:
    """'animals' -> 'animal', 'fungi_plants' -> 'fungi plant'; 'abyss', 'amorphous' stay."""
    word = folder.replace("_", " ")
    return word[:-1] if word.endswith("s") and not word.endswith(("ss", "us")) else word


def caption(image: Image.Image, tile: str, folder: str) -> str:
    """'<colours> <name>, <class>', the class left out when the name already says it."""
    rgba = torch.from_numpy(np.array(image.convert("RGBA"))).permute(2, 0, 1)
    cls = singular(folder)
    name = name_words(tile, folder) or cls
    text = f"{' and '.join(main_colours(rgba[None])[0])} {name}".strip()
    return text if cls in name else f"{text}, {cls}"


def write_metadata(folder: Path, table: Path, keep) -> int:
    """metadata.jsonl for every sprite of `folder` listed in `table` (columns file, tile) that `keep`
    takes."""
    lines = []
    with open(table, newline="") as f:
        for row in csv.DictReader(f):
            if not keep(row):
                continue
            path = folder / row["file"]
            with Image.open(path) as img:
                text = caption(img, row["tile"], row["file"].split("/")[0])
            lines.append(json.dumps({"file_name": row["file"], "text": text}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return len(lines)


def main() -> int:
    from prepare_dcss import FOLDERS
    for name, (table, keep) in FOLDERS.items():
        if name == "dcss_terrain":  # tiles, chosen by class: no captions
            continue
        n = write_metadata(HERE / name, HERE / table, keep)
        print(f"wrote {n} captions to {HERE / name / 'metadata.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
