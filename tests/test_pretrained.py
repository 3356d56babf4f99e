"""The models shipped in pretrained/: intact, and usable offline in seconds."""
import hashlib

import numpy as np
import torch

import generate
from evaluate import seam_ratio
from model import SHIPPED, load_model


def test_shipped_files_match_their_checksums():
    sums = sorted(SHIPPED.rglob("SHA256SUMS"))
    assert [p.parent for p in sums] == [SHIPPED, SHIPPED / "terrain"]  # the default and the tile model
    for path in sums:
        lines = path.read_text().splitlines()
        assert len(lines) >= 5
        for line in lines:
            digest, name = line.split(maxsplit=1)
            assert hashlib.sha256((path.parent / name).read_bytes()).hexdigest() == digest, name


def test_a_fresh_clone_generates_from_a_prompt_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/ here: the shipped model
    assert generate.main(["--prompt=a blue book", "--num_images=4", "--steps=8", "--out=g.png"]) == 0
    assert str(SHIPPED) in capsys.readouterr().out
    icons = sorted((tmp_path / "g").glob("*.png"))
    assert len(icons) == 4
    m = load_model(SHIPPED)
    assert m.cfg.prompts == "both" and m.cfg.channels == 4 and {"potion", "undead"} <= set(m.classes)
    assert m.palette is not None and len(m.palette) == 128  # saved with the model: no data needed
    alpha = torch.from_numpy(np.array(generate.Image.open(icons[0]).getchannel("A")))
    assert set(alpha.unique().tolist()) <= {0, 255}


def test_shipped_terrain_model_tiles_without_a_seam():
    """Opaque floor, wall and water tiles: with --tileable the colour step across the wrap edge is
    about the step between neighbouring pixels inside; without it, clearly larger."""
    m = load_model(SHIPPED / "terrain")
    tiled, _, _ = generate.generate(m, 8, steps=10, tileable=True)
    plain, _, _ = generate.generate(m, 8, steps=10)
    assert seam_ratio(tiled) < 1.5 and seam_ratio(tiled) < 0.8 * seam_ratio(plain)
