"""LPC characters: random valid combinations of the Liberated Pixel Cup's layer sheets, composited into
one character with its caption and its walk cycle in four directions, deterministic by seed; the
held-out split; the walk sheet read back and written out.

Usage:
    lib = Layers("path/to/Universal-LPC-spritesheet")      # checks the folder is LPC's layout
    chars = lib.characters("train", 500, seed=0)           # Character(layers, caption)
    frames = lib.walk(chars[0])                             # uint8 4 x 9 x 64 x 64 x 4 (RGBA)
    ref = frames[DOWN, 0]                                   # the standing frame, facing down

An LPC layer is an 832x1344 sheet of 64x64 frames; its walk rows are 8-11 (up, left, down, right), 9
frames each, frame 0 standing. Layers of one body type align frame for frame, so alpha-compositing a
body, feet, legs, torso, hair... in that order gives one character in every pose. The licence of
the art (CC-BY-SA 3.0 / GPL 3.0, credits in the folder's AUTHORS.txt) carries over to every
character made from it and to any model trained on them.
"""
from __future__ import annotations

import fnmatch
import functools
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from conditioning import STANDING
from config import UserError, resolve_path

FRAME = 64  # LPC's frame side
SHEET = (832, 1344)  # 13 x 21 frames
WALK_ROW, WALK_FRAMES = 8, 9  # the first walk row, and frames per direction
DIRECTIONS = ("up", "left", "down", "right")  # LPC's row order
DOWN = DIRECTIONS.index("down")
HELD_OUT = "data/lpc_heldout.txt"  # layers no training character wears

# Hair colours and styles as a caption names them (the rest keep their file names).
HAIR_COLOURS = {"blonde": "blond", "blonde2": "blond", "light-blonde": "light blond",
                "light-blonde2": "light blond", "dark-blonde": "dark blond", "white-blonde": "platinum",
                "white-blonde2": "platinum", "brunette": "brown", "brunette2": "brown", "brown2": "brown",
                "raven": "black", "raven2": "black", "redhead": "red", "redhead2": "red",
                "ruby-red": "ruby red", "white-cyan": "cyan", "blue2": "blue", "gray2": "grey",
                "gray": "grey", "green2": "green", "pink2": "pink"}
HAIR_STYLES = {"plain": "short", "xlong": "very long", "xlongknot": "long knotted", "longknot": "knotted",
               "shortknot": "short knotted", "messy1": "messy", "messy2": "messy", "jewfro": "curly",
               "page": "bob-cut", "page2": "bob-cut", "ponytail2": "ponytail", "bangslong": "long-fringed",
               "bangslong2": "long-fringed", "bangsshort": "short-fringed", "bangs": "fringed",
               "longhawk": "long mohawk", "shorthawk": "mohawk", "shoulderl": "shoulder-length",
               "shoulderr": "shoulder-length", "swoop": "swept", "bedhead": "tousled",
               "unkempt": "unkempt", "parted": "parted", "pixie": "pixie-cut", "princess": "princess",
               "loose": "loose", "long": "long", "bunches": "bunched"}
SKINS = {"light": "", "tanned": "tanned", "tanned2": "tanned", "dark": "dark-skinned",
         "dark2": "dark-skinned", "darkelf": "dark elf", "darkelf2": "dark elf", "orc": "orc",
         "red_orc": "red orc", "skeleton": "skeleton"}


@dataclass(frozen=True)
class Slot:
    """One kind of layer a character wears: the sheets it may take (globs, {sex} for the body type),
    how likely it is worn, and the body types that wear it."""
    name: str
    globs: tuple[str, ...]
    p: float
    sexes: tuple[str, ...] = ("male", "female")


# In compositing order, back to front.
SLOTS = (
    Slot("body", ("body/{sex}/*.png",), 1.0),
    Slot("feet", ("feet/shoes/{sex}/*.png", "feet/armor/{sex}/*.png", "feet/slippers_{sex}/*.png"), 0.95),
    Slot("legs", ("legs/pants/{sex}/*.png", "legs/armor/{sex}/*.png"), 1.0),
    Slot("torso", ("torso/shirts/*/{sex}/*.png", "torso/tunics/{sex}/*.png", "torso/chain/mail_{sex}.png",
                   "torso/leather/chest_{sex}.png", "torso/plate/chest_{sex}.png",
                   "torso/robes_{sex}_no_th-sh/*.png"), 1.0),
    Slot("cape", ("torso/back/cape/normal/{sex}/*.png",), 0.15),
    Slot("belt", ("belt/leather/{sex}/*.png", "belt/cloth/{sex}/*.png"), 0.25),
    Slot("beard", ("facial/{sex}/beard/*.png", "facial/{sex}/mustache/*.png"), 0.15, ("male",)),
    Slot("hair", ("hair/{sex}/*/*.png",), 0.92),
    Slot("head", ("head/helms/{sex}/*.png", "head/caps/{sex}/*.png", "head/bandanas/{sex}/*.png"), 0.15),
)
# Drawn behind the body: the back half of a cape (same file name under behind_body/).
BEHIND = {"cape": "behind_body/cape/normal/{sex}/{name}"}
SEXES = {"male": "man", "female": "woman"}
CAPTION_ORDER = ("hair", "beard", "head", "torso", "cape", "belt", "legs", "feet")


@dataclass(frozen=True)
class Character:
    sex: str
    layers: tuple[str, ...]  # sheet paths relative to the LPC folder, in compositing order
    caption: str


def _words(path: str) -> str:
    """A layer's file name as caption words: 'teal_pants_male.png' -> 'teal pants'."""
    stem = Path(path).stem
    for cut in ("_no_th-sh", "_female", "_male", "_incomplete", "_cloth"):
        stem = stem.replace(cut, "")
    return stem.replace("_", " ").replace("longsleeve", "long-sleeved shirt").replace(
        "sleeveless", "sleeveless shirt").replace("pirate", "pirate shirt")


def describe(sex: str, chosen: dict[str, str]) -> str:
    """'a woman with long red hair, a white shirt, teal pants and brown shoes'."""
    skin = SKINS.get(Path(chosen["body"]).stem, "")
    who = f"{'an' if skin[:1] in 'aeiou' and skin else 'a'} {skin + ' ' if skin else ''}{SEXES[sex]}"
    parts = []
    for slot in (s for s in CAPTION_ORDER if s in chosen):
        path = chosen[slot]
        p = Path(path)
        if slot == "hair":
            parts.append(f"{HAIR_STYLES.get(p.parent.name, p.parent.name)} "
                         f"{HAIR_COLOURS.get(p.stem, p.stem)} hair")
        elif slot == "beard":
            parts.append(f"a {HAIR_COLOURS.get(p.stem, p.stem)} {p.parent.name}")
        elif slot == "torso":
            kind = p.parts[1]
            w = _words(path)
            parts.append({"chain": "chain mail", "leather": "a leather chestpiece", "plate": "plate armour"}
                         .get(kind) or (f"a {w} robe" if kind.startswith("robes") else
                                        f"a {w}" if "shirt" in w or "tunic" in w else f"a {w} shirt"))
        elif slot == "legs":
            w = _words(path)
            parts.append(w.replace("metal pants", "metal leg armour"))
        elif slot == "feet":
            parts.append(_words(path).replace("gray", "grey") + (" slippers" if "slippers" in path else ""))
        elif slot == "head":
            parts.append("a " + _words(path).replace("chainhat", "chain hood")
                         + (" bandana" if "bandanas" in p.parts else ""))
        elif slot in ("cape", "belt"):
            w = _words(path).replace("cape ", "")
            parts.append(f"a {w} {slot}" if slot not in w else f"a {w}")
    text = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1] if parts else ""
    return f"{who} with {text}" if text else who


def read_held_out(path: str | Path = HELD_OUT) -> tuple[str, ...]:
    """The held-out layer patterns (fnmatch, relative to the LPC folder), one a line; # comments."""
    p = resolve_path(path)
    if not p.is_file():
        return ()
    return tuple(line.split("#")[0].strip() for line in p.read_text().splitlines()
                 if line.split("#")[0].strip())


class Layers:
    """The layer sheets of an LPC folder, checked once: every body type with a body sheet of LPC's
    size; each slot's candidate sheets per body type."""

    def __init__(self, root: str | Path, held_out: tuple[str, ...] | None = None):
        self.root = resolve_path(root)
        if not self.root.is_dir():
            raise UserError(f"LPC folder {root} does not exist (clone it with git clone "
                            "https://github.com/makrohn/Universal-LPC-spritesheet)")
        self.held_out = read_held_out() if held_out is None else held_out
        self.options: dict[str, dict[str, list[str]]] = {}
        for sex in SEXES:
            bodies = sorted((self.root / "body" / sex).glob("*.png"))
            if not bodies:
                continue
            with Image.open(bodies[0]) as im:
                if im.size != SHEET:
                    raise UserError(f"{bodies[0]} is {im.size[0]}x{im.size[1]}, not LPC's {SHEET[0]}x"
                                    f"{SHEET[1]} sheet: {root} is not an LPC layer folder")
            self.options[sex] = {
                s.name: sorted({str(p.relative_to(self.root)) for g in s.globs
                                for p in self.root.glob(g.format(sex=sex))
                                if "shadows" not in p.name and sex in s.sexes})
                for s in SLOTS}
        self.seen_pools = {sex: {k: [p for p in v if not self.is_held_out(p)] for k, v in o.items()}
                           for sex, o in self.options.items()}
        if not self.options:
            raise UserError(f"{root} is not an LPC layer folder: it has no body/male/*.png or "
                            "body/female/*.png sheets of 832x1344 (LPC's layout: "
                            "https://github.com/makrohn/Universal-LPC-spritesheet)")

    def is_held_out(self, path: str) -> bool:
        return any(fnmatch.fnmatch(path, pat) for pat in self.held_out)

    def draw(self, rng: random.Random, held: bool | None) -> Character:
        """One random character. held: False, no held-out layer; True, at least one; None, any."""
        sex, chosen, layers = self._pick(rng, held)
        return Character(sex, layers, describe(sex, chosen))

    def _pick(self, rng: random.Random, held: bool | None) -> tuple[str, dict[str, str], tuple[str, ...]]:
        """draw's choice without its caption (sex, layer of each slot, compositing order): the combo
        split compares 10,000 of them by their layers alone."""
        while True:
            sex = rng.choice(sorted(self.options))
            chosen = {}
            for s in SLOTS:
                pool = (self.seen_pools if held is False else self.options)[sex][s.name]
                if pool and (s.p >= 1 or rng.random() < s.p):
                    chosen[s.name] = rng.choice(pool)
            if "body" not in chosen:
                continue
            if held and not any(self.is_held_out(p) for p in chosen.values()):
                continue
            layers = []
            for slot, path in chosen.items():
                if slot in BEHIND:
                    behind = BEHIND[slot].format(sex=sex, name=Path(path).name)
                    if (self.root / behind).is_file():
                        layers.insert(0, behind)
                layers.append(path)
            return sex, chosen, tuple(layers)

    def characters(self, split: str, n: int, seed: int = 0) -> list[Character]:
        """n characters of a split, deterministic by (split, seed): train (no held-out layer),
        combo (new combinations of the training layers, none equal to a training character of the
        same seed's first 10,000) or layer (each wears a held-out layer)."""
        if split not in ("train", "combo", "layer"):
            raise UserError(f"split must be train, combo or layer; got {split!r}")
        rng = random.Random(f"{split}-{seed}")
        seen = set()
        if split == "combo":
            train_rng = random.Random(f"train-{seed}")
            seen = {self._pick(train_rng, False)[2] for _ in range(10_000)}
        if split == "layer" and not any(map(self.is_held_out, self.all_layers())):
            raise UserError(f"no layer of {self.root} is held out ({HELD_OUT}): the layer split is empty")
        out: list[Character] = []
        for _ in range(1000 * n):
            if len(out) == n:
                return out
            c = self.draw(rng, split == "layer" if split != "combo" else False)
            if c.layers not in seen:  # empty but for the combo split
                out.append(c)
        raise UserError(f"{self.root} has too few layers for {n} {split} characters (found {len(out)})")

    def all_layers(self) -> list[str]:
        return [p for o in self.options.values() for pool in o.values() for p in pool]

    @functools.lru_cache(maxsize=512)
    def _walk_rows(self, path: str) -> np.ndarray:
        """A sheet's walk rows as float32 4 x 9 x 64 x 64 x 4 in [0, 1] (premultiplied alpha)."""
        with Image.open(self.root / path) as im:
            if im.size != SHEET:
                raise UserError(f"{self.root / path} is {im.size[0]}x{im.size[1]}, not LPC's "
                                f"{SHEET[0]}x{SHEET[1]} sheet")
            box = (0, WALK_ROW * FRAME, WALK_FRAMES * FRAME, (WALK_ROW + 4) * FRAME)
            a = np.asarray(im.convert("RGBA").crop(box), dtype=np.float32) / 255.0
        a = a.reshape(4, FRAME, WALK_FRAMES, FRAME, 4).transpose(0, 2, 1, 3, 4).copy()
        a[..., :3] *= a[..., 3:]
        return a

    def walk(self, c: Character) -> np.ndarray:
        """The character's walk cycle: uint8 4 x 9 x 64 x 64 x 4, rows up, left, down, right, each
        layer alpha-composited over the ones before it ("over", in premultiplied alpha)."""
        out = np.zeros((4, WALK_FRAMES, FRAME, FRAME, 4), np.float32)
        for path in c.layers:
            layer = self._walk_rows(path)
            out = layer + out * (1 - layer[..., 3:])
        alpha = out[..., 3:]
        rgb = np.where(alpha > 0, out[..., :3] / np.maximum(alpha, 1e-6), 0)
        return np.rint(np.concatenate([rgb, alpha], -1) * 255).clip(0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- training data

FRAME_NAMES = [f"{d} {i}" for d in DIRECTIONS for i in range(WALK_FRAMES)]  # a character model's classes
STANDING_COPIES = 3  # extra copies of each standing frame: the caption-only task gets a tenth of steps


def training_data(root: str, n: int, seed: int, log=print):
    """PixelData of n training characters: each walk frame an image (class: its frame, caption: its
    character's), the standing frame STANDING_COPIES more times, and each character's standing frame
    as its reference."""
    from dataset import PixelData
    import torch
    lib = Layers(root)
    chars = lib.characters("train", n, seed)
    log(f"composing {n} LPC characters from {lib.root} (walk cycles, 36 frames each)")
    walks = np.stack([lib.walk(c) for c in chars])  # n, 4, 9, H, W, 4
    frames = torch.from_numpy(walks).reshape(n, 36, FRAME, FRAME, 4).permute(0, 1, 4, 2, 3)
    standing = FRAME_NAMES.index(STANDING)
    order = list(range(36)) + [standing] * STANDING_COPIES
    images = frames[:, order].reshape(-1, 4, FRAME, FRAME).contiguous()
    labels = torch.tensor(order).repeat(n)
    ref_index = torch.arange(n).repeat_interleave(len(order))
    captions = [c.caption for c in chars for _ in order]
    return PixelData(images, labels, FRAME_NAMES, [], captions,
                     references=frames[:, standing].contiguous(), ref_index=ref_index)


# ----------------------------------------------------------------------------- sheets

def sheet_of(frames: np.ndarray) -> np.ndarray:
    """4 x 9 x H x W x C frames -> one (4H) x (9W) x C sheet, rows as LPC's walk rows."""
    r, f, h, w, ch = frames.shape
    return frames.transpose(0, 2, 1, 3, 4).reshape(r * h, f * w, ch)


def frames_of(sheet: np.ndarray, rows: int = 4, cols: int = WALK_FRAMES) -> np.ndarray:
    """The inverse of sheet_of."""
    h, w = sheet.shape[0] // rows, sheet.shape[1] // cols
    return sheet.reshape(rows, h, cols, w, -1).transpose(0, 2, 1, 3, 4)
