"""The model shipped in pretrained/: intact, and usable offline in seconds."""
import hashlib

import torch

import generate
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


def test_generate_falls_back_to_shipped_model_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/ here
    assert generate.main(["--num_images=4", "--sampler=dpm", "--steps=8", "--out=g.png"]) == 0
    assert str(SHIPPED) in capsys.readouterr().out
    icons = sorted((tmp_path / "g").glob("*.png"))
    assert len(icons) == 4
    m = load_model(SHIPPED)
    assert m.cfg.conditional and m.cfg.channels == 4 and len(m.classes) == 15
    assert m.palette is not None and len(m.palette) == 32  # saved with the model: no data needed
    alpha = torch.tensor(list(generate.Image.open(icons[0]).getchannel("A").getdata()))
    assert set(alpha.unique().tolist()) <= {0, 255}
