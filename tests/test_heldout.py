"""Sprites the model was never shown: the held-out list, recoloured training copies and their
captions, the licence rule's pixel matching, and evaluate.py --held_out."""
import csv
import json
import sys

import numpy as np
import torch
from PIL import Image

import evaluate
import train
from config import ROOT, preset
from conftest import SMALL_DATA, smoke_argv
from dataset import PixelData, load_folder, read_list
from model import load_model
from palette import extract, hue_turned, load_palette, main_colours, recoloured

sys.path.insert(0, str(ROOT / "data"))
import doll_tiles  # noqa: E402
import provenance  # noqa: E402


def test_the_shipped_held_out_list_is_a_stratified_tenth_of_items_and_monsters():
    listed = read_list("data/heldout.txt")
    assert all(f.is_file() for f in listed)
    spec = preset("prompt").model
    data = load_folder(preset("prompt").run.data_dir, spec, log=lambda _: None)
    kept = load_folder(preset("prompt").run.data_dir, spec, log=lambda _: None, exclude=listed)
    assert len(data.images) - len(kept.images) == len(listed) == 71  # all of them left out
    items = [f for f in listed if "dcss_items" in str(f)]
    assert {f.parent.name for f in items} >= {"weapon", "armour", "artefact", "book", "potion"}


def test_recoloured_copies_rename_their_colour_words(tmp_path):
    red = torch.zeros(1, 4, 8, 8, dtype=torch.uint8)
    red[0, 0], red[0, 3] = 220, 255  # an opaque red square
    data = PixelData(red, torch.tensor([0]), ["potion"], ["a.png"], ["red potion"])
    more = recoloured(data, 2)
    assert len(more.images) == 3 and more.captions[0] == "red potion"
    assert [c.split()[0] for c in more.captions[1:]] == [m[0] for m in main_colours(more.images[1:])]
    assert more.captions[1] == "green potion" and more.captions[2] == "blue potion"
    data.captions = ["my own words"]  # a caption not starting with its colours: no copies
    assert len(recoloured(data, 2).images) == 1


def test_hue_turns_keep_greys_alpha_and_come_back():
    x = torch.randint(0, 256, (3, 4, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x[0, :3] = x[0, :1]  # a grey sprite
    turned = hue_turned(x, 120)
    assert torch.equal(turned[:, 3], x[:, 3]) and (turned[0].int() - x[0].int()).abs().max() <= 1
    assert (hue_turned(turned, 240).int() - x.int()).abs().max() <= 2  # a full turn, up to rounding


def test_a_run_never_sees_its_held_out_images(tmp_path, capsys):
    listed = sorted(SMALL_DATA.rglob("*.png"))[:5]
    (tmp_path / "held.txt").write_text("".join(f"{f}\n" for f in listed))
    assert train.main(smoke_argv(tmp_path, "h", "--max_steps=1", "--sample_every=0", "--num_samples=0",
                                 f"--held_out={tmp_path / 'held.txt'}", "--recolour=1",
                                 "--condition=text", "--channels=4")) == 0
    out = capsys.readouterr().out
    total = len(list(SMALL_DATA.rglob("*.png")))
    assert f"{2 * (total - 5)} images" in out  # the rest, and one recoloured copy of each
    kept = load_folder(str(SMALL_DATA), load_model(tmp_path / "h").spec, log=lambda _: None, exclude=listed)
    # a prompt run with copies snaps to the cut of what it saw (without them: palette.prompt_palette)
    assert torch.equal(load_palette(tmp_path / "h" / "palette.hex"), extract(recoloured(kept, 1).images))
    assert train.main(smoke_argv(tmp_path, "x", "--held_out=/no/such.txt")) == 2
    assert "held-out list /no/such.txt does not exist" in capsys.readouterr().err


def test_a_sheet_tile_is_its_source_exactly_or_with_a_black_rim():
    src = np.zeros((32, 32, 4), np.uint8)
    src[10:20, 10:20] = [200, 30, 30, 255]
    assert provenance.explains(src, src.copy())
    rimmed = src.copy()
    rimmed[9, 10:20] = [0, 0, 0, 255]  # the game's black rim around an item
    assert provenance.explains(src, rimmed)
    other = src.copy()
    other[12, 12] = [200, 30, 31, 255]  # one pixel changed
    assert not provenance.explains(src, other)
    backed = src.copy()
    backed[0:5, 0:5] = [90, 90, 20, 255]  # drawn on a coloured back: two sources
    assert not provenance.explains(src, backed)


def test_doll_tiles_are_found_in_the_sheet_by_their_exact_pixels():
    rng = np.random.default_rng(0)
    sheet = np.zeros((64, 64, 4), np.uint8)
    tile = np.zeros((5, 7, 4), np.uint8)
    tile[1:4, 1:6] = np.concatenate([rng.integers(1, 255, (3, 5, 3)), np.full((3, 5, 1), 255)], -1)
    tile[0, 3] = [9, 9, 9, 255]
    sheet[40:45, 17:24] = tile
    packed = doll_tiles.packed(sheet)
    order = np.argsort(packed, axis=None, kind="stable")
    values, starts = np.unique(packed.ravel()[order], return_index=True)
    coords = np.stack(np.unravel_index(order, packed.shape), 1)
    where = {int(v): coords[s:e] for v, s, e in zip(values, starts, [*starts[1:], len(order)]) if v}
    assert doll_tiles.locate(packed, where, doll_tiles.packed(tile)) == (17, 40)
    changed = tile.copy()
    changed[2, 2, 0] ^= 1
    assert doll_tiles.locate(packed, where, doll_tiles.packed(changed)) is None


def test_doll_tiles_are_centred_like_item_icons_and_the_table_records_the_shift():
    with open(ROOT / "data/dcss_doll.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 564
    for row in rows:
        alpha = np.asarray(Image.open(ROOT / "data/dcss_doll" / row["file"]))[..., 3]
        ys, xs = np.nonzero(alpha)
        # the opaque box is the source box, shifted to the middle (never scaled)
        assert (xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()) == \
            (int(row["ex"]) - int(row["sx"]), int(row["ey"]) - int(row["sy"]))
        assert abs(xs.min() + xs.max() + 1 - 32) <= 1 and abs(ys.min() + ys.max() + 1 - 32) <= 1
        assert (xs.min(), ys.min()) == (int(row["ox"]), int(row["oy"]))
    helmets = [r for r in rows if r["file"].startswith("helmet/")]
    assert sum(int(r["doll_oy"]) < int(r["oy"]) for r in helmets) > len(helmets) / 2  # was at the top


def test_the_held_out_test_reports_every_figure(prompt_run, tmp_path):
    listed = sorted(SMALL_DATA.rglob("*.png"))[::6]
    (tmp_path / "held.txt").write_text("".join(f"{f}\n" for f in listed))
    out = tmp_path / "h.json"
    assert evaluate.main([f"--model={prompt_run}", f"--held_out={tmp_path / 'held.txt'}", "--steps=2",
                          f"--data_dir={SMALL_DATA}", f"--unseen_picture={tmp_path / 'u.png'}",
                          f"--json={out}"]) == 0
    r = json.loads(out.read_text())
    c = r["captions"]
    assert r["held_out"] == len(listed) and 0 <= c["class_accuracy"] <= 1 and 0 <= c["colour_accuracy"] <= 1
    assert c["fd_lite0"] > c["floor_fd"] > 0 and c["memorisation_ratio"] > 0
    assert r["unseen"]["prompts"] and 0 <= r["unseen"]["class_accuracy"] <= 1
    assert r["class_names"]["fd_lite0"] > 0 and (tmp_path / "u.png").is_file()
    assert 0 <= c["kind_accuracy"] <= 1 and 0 < c["kind_accuracy_of_the_icons"] <= 1
    u = r["unseen"]  # the ceiling: the held-out armour icon and weapons (staff, rod, missile), hues turned
    assert 0 <= u["class_accuracy_of_the_icons"] <= 1 and 0 <= u["kind_accuracy_of_the_icons"] <= 1
    assert 0 <= r["unseen"]["kind_accuracy"] <= 1 and len(r["kinds"]) <= len(set(
        f.parent.name for f in SMALL_DATA.rglob("*.png")))


def test_the_kind_probe_merges_what_lite0_cannot_tell_apart():
    import tables
    from pathlib import Path
    assert tables.kind_of("undead", Path("data/dcss_monsters/undead/x.png")) == "monster"
    assert tables.kind_of("ring") == tables.kind_of("rune") == "jewellery"
    assert tables.kind_of("artefact") is tables.kind_of("misc") is None  # shapes of every kind
    assert tables.kind_of("staff") == tables.kind_of("hand_weapon") == "weapon"
    assert tables.kind_of("helmet") == "armour" and tables.kind_of("potion") == "potion"


def test_unseen_prompts_are_absent_from_every_caption():
    import tables
    captions = ["blue potion", "red helmet", "grey sword, hand weapon"]
    prompts = tables.unseen_prompts(captions, ["potion", "helmet", "hand_weapon"], k=50)
    texts = [p for p, _, _ in prompts]
    assert "a blue potion" not in texts and "a red helmet" not in texts and "a blue helmet" in texts
    assert all(set(cls) <= {"potion", "helmet", "hand_weapon"} and cls for _, cls, _ in prompts)
