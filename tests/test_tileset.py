"""Tilesets that join (tileset.py, autotile.py): the sets' Wang ids, frames that agree for every valid
pair of neighbours, the files Tiled reads, Tiled's own rendering of the map, and bad input."""
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

import autotile
import tileset
from config import ROOT


def test_the_sets_hold_every_corner_tile_and_the_47_blob_tiles():
    corners = [autotile.wang_id("corner", t) for t in autotile.corner_tiles()]
    blobs = [autotile.wang_id("blob", t) for t in autotile.blob_tiles()]
    assert len(set(corners)) == 16 and len(set(blobs)) == 47
    for top, tr, right, br, bottom, bl, left, tl in blobs:  # a corner of b needs both its edges b
        assert all(c == 1 or (e1 == 2 and e2 == 2) for c, e1, e2 in
                   ((tr, top, right), (br, bottom, right), (bl, bottom, left), (tl, top, left)))


def neighbours(kind):
    """Every pair of tiles that may sit side by side (left, right) and one above the other."""
    tiles = autotile.corner_tiles() if kind == "corner" else autotile.blob_tiles()
    ids = [autotile.wang_id(kind, t) for t in tiles]
    across = [(i, j) for i, a in enumerate(ids) for j, b in enumerate(ids)
              if (a[1], a[2], a[3]) == (b[7], b[6], b[5])]  # my right side is your left side
    down = [(i, j) for i, a in enumerate(ids) for j, b in enumerate(ids)
            if (a[5], a[4], a[3]) == (b[7], b[0], b[1])]  # my bottom is your top
    return tiles, across, down


@pytest.mark.parametrize("kind", ["corner", "blob"])
def test_frames_agree_for_every_valid_pair_of_neighbours(kind):
    """Along a shared edge both tiles cut the same terrains at the same places, whatever noise
    shaped their insides: the pixels on either side come from the same seamless texture."""
    tiles, across, down = neighbours(kind)
    rng = np.random.default_rng(0)
    masks = [autotile.terrain_mask(kind, t, 32, rng) for t in tiles]
    assert across and down
    for i, j in across:
        assert np.array_equal(masks[i][:, -autotile.FRAME:], masks[j][:, :autotile.FRAME])
    for i, j in down:
        assert np.array_equal(masks[i][-autotile.FRAME:], masks[j][:autotile.FRAME])
    assert all(not autotile.band(mk)[:autotile.FRAME].any() for mk in masks)  # the frame is kept


def test_tileset_writes_sheets_tilesets_a_map_and_its_picture(tile_run, tmp_path, capsys):
    out = tmp_path / "ts"
    assert tileset.main([f"--model={tile_run}", f"--out={out}", "--steps=2", "--width=5", "--height=3"]) == 0
    assert "seam ratio" in capsys.readouterr().out
    assert Image.open(out / "floor-water_corner.png").size == (4 * 32, 4 * 32)
    assert Image.open(out / "floor-water_blob.png").size == (8 * 32, 6 * 32)
    for kind, count in (("corner", 16), ("blob", 47)):
        root = ET.parse(out / f"floor-water_{kind}.tsx").getroot()
        wangset = root.find("wangsets/wangset")
        assert int(root.get("tilecount")) == count and len(wangset.findall("wangtile")) == count
        assert [c.get("name") for c in wangset.findall("wangcolor")] == ["floor", "water"]
    layer = ET.parse(out / "map.tmx").getroot().find("layer/data").text
    gids = [int(g) for g in layer.replace("\n", "").split(",")]
    assert len(gids) == 15 and all(1 <= g <= 16 for g in gids)
    assert Image.open(out / "map.png").size == (5 * 32, 3 * 32)


def test_tiled_renders_the_map_as_the_project_does(tile_run, tmp_path):
    if shutil.which("tmxrasterizer") is None:
        pytest.skip("no tmxrasterizer: run tests/install_tools.sh (Debian's tiled, as root)")
    out = tmp_path / "ts"
    assert tileset.main([f"--model={tile_run}", f"--out={out}", "--steps=2", "--width=6", "--height=4"]) == 0
    p = subprocess.run(["tmxrasterizer", str(out / "map.tmx"), str(tmp_path / "tiled.png")], timeout=120,
                       capture_output=True, text=True, env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    theirs = np.asarray(Image.open(tmp_path / "tiled.png").convert("RGB"))
    ours = np.asarray(Image.open(out / "map.png").convert("RGB"))
    assert theirs.shape == ours.shape and np.array_equal(theirs, ours)


def test_the_shipped_terrain_model_joins_where_tiles_drawn_alone_do_not(monkeypatch):
    from model import load_model
    monkeypatch.setattr(autotile, "CANDIDATES", 1)  # no choosing: the joins alone
    m = load_model(ROOT / "pretrained" / "terrain")
    req = autotile.TilesetRequest("floor", "water", steps=4)
    cells = autotile.corner_map(autotile.random_corners(8, 8, 0))
    tex = autotile.textures(m, req)
    joined = autotile.render(autotile.make_sets(m, req, tex, kinds=("corner",))["corner"], cells)
    alone = autotile.render(autotile.make_sets(m, req, tex, True, ("corner",))["corner"], cells)
    assert autotile.seam_ratio(joined, 32) < 1.2 < 1.5 < autotile.seam_ratio(alone, 32)


@pytest.mark.parametrize("run, args, message", [
    ("tile_run", ["--terrains=floor,lava"], "unknown terrain lava; this model's terrains: floor, water"),
    ("tile_run", ["--terrains=floor,floor"], "names floor twice"),
    ("tile_run", ["--terrains=floor"], "takes two terrains"),
    ("cond_run", [], "draws RGBA sprites; tilesets need a model of opaque RGB tiles"),
    ("smoke_run", [], "takes no class or prompt"),
])
def test_bad_input_is_one_sentence_and_nothing_is_written(run, args, message, request, tmp_path, capsys):
    out = tmp_path / "ts"
    assert tileset.main([f"--model={request.getfixturevalue(run)}", f"--out={out}", "--steps=1", *args]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # (a fixture's training may print before)
    assert last.startswith("error: ") and message in last and not out.exists()
