"""Characters: the LPC composer on synthetic sheets (and the real layers where ../shared/lpc exists),
the walk-cycle model at smoke size, animate.py's files and its one-line refusals, the walk scores."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import COLOURS, PARTS, ROOT

import characters
from characters import DOWN, FRAME, SHEET, WALK_FRAMES, WALK_ROW, Layers, sheet_of

LPC = ROOT.parent / "shared" / "lpc"
def test_characters_are_deterministic_captioned_and_split(lpc):
    lib = Layers(lpc, held_out=("hair/*/bunches/*", "torso/tunics/female/teal_tunic.png"))
    a, b = lib.characters("train", 12, seed=3), lib.characters("train", 12, seed=3)
    assert a == b and a != lib.characters("train", 12, seed=4)
    for c in a:
        assert not any(lib.is_held_out(p) for p in c.layers)
        assert c.layers[0].startswith("body/") and c.caption.startswith(("a man", "a woman"))
    assert any("short black hair" in c.caption for c in a if c.sex == "male")
    held = lib.characters("layer", 6, seed=3)
    assert all(any(lib.is_held_out(p) for p in c.layers) for c in held)
    from config import UserError
    with pytest.raises(UserError, match="too few layers"):  # 8 combinations, all of them trained on
        lib.characters("combo", 3, seed=3)
    with pytest.raises(UserError, match="no layer .* is held out"):
        Layers(lpc, held_out=()).characters("layer", 1)


def test_walk_composites_layers_in_order(lpc):
    lib = Layers(lpc, held_out=())
    c = next(c for c in lib.characters("train", 20) if c.sex == "male" and len(c.layers) == 5)
    walk = lib.walk(c)
    assert walk.shape == (4, WALK_FRAMES, FRAME, FRAME, 4) and walk.dtype == np.uint8
    stand = walk[DOWN, 0]
    hair = PARTS["hair"]
    hair_colour = COLOURS[next(p for p in c.layers if p.startswith("hair"))]
    assert tuple(stand[hair[2] + 1, hair[0] + 4, :3]) == hair_colour  # hair over the body
    assert stand[0, 0, 3] == 0 and stand[30, 30, 3] == 255
    assert not np.array_equal(walk[0, 0], walk[0, 1])  # the frames move
    assert characters.frames_of(sheet_of(walk)).shape == walk.shape


def test_a_folder_that_is_not_lpc_is_refused_in_one_sentence(tmp_path):
    from config import UserError
    with pytest.raises(UserError, match="not an LPC layer folder"):
        Layers(tmp_path)
    (tmp_path / "body" / "male").mkdir(parents=True)
    Image.new("RGBA", (64, 64)).save(tmp_path / "body" / "male" / "light.png")
    with pytest.raises(UserError, match="not LPC's 832x1344 sheet"):
        Layers(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        Layers(tmp_path / "nowhere")


@pytest.mark.skipif(not LPC.is_dir(), reason="no LPC layers at ../shared/lpc (CI has them)")
def test_real_lpc_characters():
    lib = Layers(LPC)
    chars = lib.characters("train", 6, seed=0)
    assert len({c.caption for c in chars}) == 6
    walk = lib.walk(chars[0])
    assert (walk[..., 3] > 0).any(axis=(-1, -2)).all()  # a character in every frame
    train = {c.layers for c in lib.characters("train", 10_000, seed=0)}
    assert not {c.layers for c in lib.characters("combo", 5, seed=0)} & train
    assert all(any(map(lib.is_held_out, c.layers)) for c in lib.characters("layer", 5, seed=0))


# ----------------------------------------------------------------------------- the model and animate.py

def hero(tmp_path: Path, lpc: Path, size: int = FRAME) -> Path:
    lib = Layers(lpc, held_out=())
    frame = lib.walk(lib.characters("train", 1, seed=5)[0])[DOWN, 0]
    img = Image.fromarray(frame, "RGBA")
    if size != FRAME:
        img = img.crop((FRAME // 2 - size // 2, FRAME - size, FRAME // 2 + size // 2, FRAME))
    path = tmp_path / f"hero{size}.png"
    img.save(path)
    return path


def test_animate_writes_every_file_and_they_parse(char_run, lpc, tmp_path, capsys):
    import animate
    out = tmp_path / "anim"
    init = hero(tmp_path, lpc)
    assert animate.main([f"--init={init}", f"--model={char_run}", f"--out={out}", "--steps=2"]) == 0
    sheet = Image.open(out / "sheet.png")
    assert sheet.size == (9 * FRAME, 4 * FRAME) and sheet.mode == "RGBA"
    arr = np.asarray(sheet)
    assert np.array_equal(arr[DOWN * FRAME:(DOWN + 1) * FRAME, :FRAME], np.asarray(Image.open(init)))
    ref_colours = {tuple(c) for c in np.asarray(Image.open(init))[..., :3][np.asarray(Image.open(init))[..., 3] > 127]}
    drawn = arr[..., :3][arr[..., 3] > 127]
    assert {tuple(c) for c in drawn} <= ref_colours  # the reference's own colours
    for d in ("up", "left", "down", "right"):
        gif = Image.open(out / f"walk_{d}.gif")
        assert gif.n_frames == 9 and gif.info.get("loop") == 0 and gif.size == (4 * FRAME, 4 * FRAME)
    meta = json.loads((out / "sheet.json").read_text())
    assert [t["name"] for t in meta["meta"]["frameTags"]] == ["walk_up", "walk_left", "walk_down", "walk_right"]
    assert meta["frames"][9]["frame"] == {"x": 0, "y": FRAME, "w": FRAME, "h": FRAME}
    assert meta["meta"]["size"] == {"w": 9 * FRAME, "h": 4 * FRAME} and meta["meta"]["image"] == "sheet.png"
    tres = (out / "sheet.tres").read_text()
    assert tres.startswith('[gd_resource type="SpriteFrames" load_steps=38 format=3]')
    assert len(re.findall(r'\[sub_resource type="AtlasTexture" id="AtlasTexture_\d+"\]', tres)) == 36
    assert re.findall(r'"name": &"(\w+)"', tres) == ["walk_up", "walk_left", "walk_down", "walk_right"]
    assert "region = Rect2(128, 192, 64, 64)" in tres  # right row, frame 2


def test_animate_from_a_prompt(char_run, tmp_path):
    import animate
    out = tmp_path / "p"
    assert animate.main(["--prompt=a man with short black hair", f"--model={char_run}", f"--out={out}",
                         "--steps=1"]) == 0
    assert Image.open(out / "sheet.png").size == (9 * FRAME, 4 * FRAME)


def test_bad_sprites_are_answered_in_one_line(char_run, lpc, tmp_path, capsys):
    from animation import read_reference
    from config import UserError
    small = read_reference(hero(tmp_path, lpc, 32), log=print)
    assert small.shape == (4, FRAME, FRAME) and "centred on a transparent 64x64" in capsys.readouterr().out
    Image.new("RGBA", (100, 80)).save(tmp_path / "big.png")
    Image.new("RGB", (64, 64), (9, 9, 9)).save(tmp_path / "opaque.png")
    Image.new("RGB", (64, 64), (9, 9, 9)).save(tmp_path / "photo.jpg")
    Image.new("RGBA", (64, 64)).save(tmp_path / "clear.png")
    (tmp_path / "zero.png").write_bytes(b"")
    for name, words in (("big.png", "100x80, larger"), ("opaque.png", "no transparent pixels"),
                        ("photo.jpg", "JPEG"), ("clear.png", "every pixel is transparent"),
                        ("zero.png", "empty file"), ("none.png", "does not exist")):
        with pytest.raises(UserError, match=words):
            read_reference(tmp_path / name)
    sheet = np.zeros((SHEET[1], SHEET[0], 4), np.uint8)
    sheet[(WALK_ROW + DOWN) * FRAME + 20:(WALK_ROW + DOWN) * FRAME + 40, 20:40] = 255
    Image.fromarray(sheet, "RGBA").save(tmp_path / "sheet.png")
    frame = read_reference(tmp_path / "sheet.png", log=print)
    assert "whole LPC sheet" in capsys.readouterr().out and frame[3, 20:40, 20:40].all()
    import animate
    assert animate.main([f"--init={tmp_path / 'big.png'}", f"--model={char_run}",
                         f"--out={tmp_path / 'never'}"]) == 2
    assert not (tmp_path / "never").exists()  # refused before any work
    assert capsys.readouterr().err.count("\n") == 1
    assert animate.main([f"--model={char_run}"]) == 2


def test_a_sprite_model_is_not_a_character_model(smoke_run, tmp_path, lpc, capsys):
    import animate
    assert animate.main([f"--init={hero(tmp_path, lpc)}", f"--model={smoke_run}"]) == 2
    assert "not a character model" in capsys.readouterr().err


def test_walk_scores_read_the_truth():
    from metrics import walk_scores
    truth = torch.zeros(2, 4, WALK_FRAMES, 4, 8, 8, dtype=torch.uint8)
    truth[..., 3, 2:6, 2:6] = 255
    truth[..., :3, 2:6, 2:6] = 100
    perfect = walk_scores(truth, truth, (DOWN, 0))
    assert perfect["iou"] == 1 and perfect["colour"] == 1
    off = truth.clone()
    off[..., :3, :, :] = 200  # right shape, wrong colour
    half = truth.clone()
    half[..., 3, 2:4, :] = 0  # half the silhouette
    assert walk_scores(off, truth, (DOWN, 0))["colour"] == 0
    assert walk_scores(half, truth, (DOWN, 0))["iou"] == pytest.approx(0.5)
