"""Metrics where the answer is known, palettes, and pixel-perfect output."""
from conftest import spec_of, sprites_of
import numpy as np
import pytest
import torch
from PIL import Image
import torch.nn.functional as F

import metrics
import generate
from config import UserError, preset
from dataset import load_folder
from model import load_model
from palette import COLOUR_NAMES, PALETTE_COLOURS, extract, load_palette, name_colours, parse_gpl, parse_hex, snap


@pytest.fixture(scope="module")
def icons():
    return load_folder(*spec_of(preset("seed", channels=4)), log=lambda _: None).images


@pytest.fixture(scope="module")
def net():
    return metrics.lite0()  # loaded once per session (functools.cache)


def blur(images):
    x = images.float()
    k = torch.full((images.shape[1], 1, 3, 3), 1 / 9)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=images.shape[1]).round() \
        .clamp(0, 255).to(torch.uint8)


def test_feature_metrics_on_known_sets(icons, net):
    data = icons[torch.randperm(len(icons), generator=torch.Generator().manual_seed(0))[:120]]
    f = metrics.features(data, net)
    assert f.shape == (120, 1280)
    assert abs(metrics.frechet(f, f)) < 0.01  # identical sets: zero (round-off), below any floor
    sets = [data.flip(-1), blur(data.flip(-1)), torch.randint(0, 256, data.shape, dtype=torch.uint8)]
    feats = [metrics.features(s, net) for s in sets]
    fd = [metrics.frechet(x, f) for x in feats]
    kid = [metrics.kid(x, f)[0] for x in feats]
    assert 0 < fd[0] < fd[1] < fd[2]  # mirror (the floor) < blurred < noise
    assert kid[0] < kid[1] < kid[2]
    same = metrics.prdc(f, f)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0


def test_a_set_seen_before_is_not_run_through_the_network_again(icons, net, monkeypatch):
    data = icons[:40]
    first = metrics.features(data, net)
    monkeypatch.setattr(metrics, "_features", lambda *a: pytest.fail("features computed again"))
    again = metrics.features(data.clone(), net)  # the same bytes in another tensor
    assert torch.equal(first, again)
    again -= 1  # each caller gets its own copy
    assert torch.equal(metrics.features(data, net), first)
    with pytest.raises(pytest.fail.Exception, match="computed again"):
        metrics.features(data.flip(-1), net)  # other images: computed


def test_copies_and_nearest_neighbours(icons):
    data = icons[:50]
    assert metrics.copies(data[:10], data) == 1.0
    assert metrics.copies(data[:10].flip(-1), data) == 1.0  # a mirror image is still a copy
    assert metrics.copies(blur(data[:10]), data) == 0.0
    assert metrics.nn_ratio(data[:10], data) == 0.0
    noise = torch.randint(0, 256, (10, *data.shape[1:]), dtype=torch.uint8)
    assert metrics.nn_ratio(noise, data) > 1.0


def test_pixel_statistics(icons):
    data = icons[:50]
    assert metrics.off_palette(data, data) == 0.0
    assert metrics.off_palette(blur(data), data) > 0.05
    assert metrics.colour_counts(blur(data)).mean() > metrics.colour_counts(data).mean()
    assert metrics.semi_transparent(blur(data)) > 2 * metrics.semi_transparent(data) > 0


def test_off_palette_is_a_box_of_the_tolerance_on_each_channel():
    data = torch.tensor([[100, 50, 200], [10, 250, 0]], dtype=torch.uint8).T.reshape(1, 3, 1, 2)
    within = torch.tensor([[108, 42, 208], [2, 255, 8], [100, 50, 200]], dtype=torch.uint8)
    beyond = torch.tensor([[109, 50, 200], [100, 41, 200], [10, 250, 9], [55, 150, 100]], dtype=torch.uint8)
    as_images = lambda px: px.T.reshape(1, 3, 1, len(px))
    assert metrics.off_palette(as_images(within), data) == 0.0
    assert metrics.off_palette(as_images(beyond), data) == 1.0
    assert metrics.off_palette(as_images(torch.cat([within, beyond])), data, tolerance=0) == 6 / 7


def test_score_report_has_floor(icons, net):
    r = metrics.score(icons[:20], icons[:40], net)
    assert r["samples"]["copy_rate"] == 1.0 and r["floor"]["copy_rate"] is None
    assert r["samples"]["fd_lite0"] >= 0 and r["floor"]["fd_lite0"] > 0


def test_palette_snapping_uses_only_palette_colours(icons):
    pal = extract(icons, 16)
    assert 2 <= len(pal) <= 16
    snapped = snap(blur(icons[:20]), pal)
    colours = {tuple(c) for c in snapped[:, :3].permute(0, 2, 3, 1).reshape(-1, 3).tolist()}
    assert colours <= {tuple(c) for c in pal.tolist()}
    assert set(snapped[:, 3].unique().tolist()) <= {0, 255}


def test_snapping_keeps_a_gold_gold_where_rgb_distance_would_make_it_brown():
    gold, brown = [200, 152, 5], [137, 94, 7]
    pal = torch.tensor([gold, brown], dtype=torch.uint8)
    pixel = torch.tensor([156, 136, 36], dtype=torch.uint8)
    assert (pixel.float() - torch.tensor(brown)).norm() < (pixel.float() - torch.tensor(gold)).norm()
    assert snap(pixel.view(1, 3, 1, 1), pal).flatten().tolist() == gold
    assert [COLOUR_NAMES[i] for i in name_colours(torch.stack([pixel, pal[0]]))] == ["yellow", "yellow"]


def test_hex_and_gpl_parsing(tmp_path):
    assert parse_hex("; comment\n#ff0000\n00ff00\n\n").tolist() == [[255, 0, 0], [0, 255, 0]]
    gpl = "GIMP Palette\nName: test\nColumns: 4\n# comment\n255   0   0\tRed\n  0 0 255 Blue\n"
    assert parse_gpl(gpl).tolist() == [[255, 0, 0], [0, 0, 255]]
    with pytest.raises(UserError, match="line 2: 'zz0000' is not a colour"):
        parse_hex("ff0000\nzz0000\n", "x.hex")
    with pytest.raises(UserError, match="line 3: '300 0 0' is not 'R G B'"):
        parse_gpl("GIMP Palette\n10 20 30\n300 0 0\n", "x.gpl")
    with pytest.raises(UserError, match="not a GIMP palette"):
        parse_gpl("10 20 30\n")
    with pytest.raises(UserError, match="no colours"):
        parse_hex("; nothing\n")
    (tmp_path / "p.txt").write_text("ff0000\n")
    with pytest.raises(UserError, match="use a .hex or .gpl file"):
        load_palette(tmp_path / "p.txt")


def test_rgba_model_outputs_binary_alpha_and_palette_colours(cond_run, tmp_path):
    """Generation reads the model folder and nothing else: its palette was saved with the export."""
    assert generate.main([f"--model={cond_run}", "--num_images=3", "--steps=2", "--class=none",
                          f"--out={tmp_path / 'g.png'}"]) == 0
    m = load_model(cond_run)
    out, raw, _ = sprites_of(m, 3, "none", steps=2)
    assert out.shape[1] == 4 and set(out[:, 3].unique().tolist()) <= {0, 255}
    pal = load_palette(cond_run / "model" / "palette.hex")
    assert torch.equal(pal, m.palette) and 2 <= len(pal) <= PALETTE_COLOURS
    assert {tuple(c) for c in out[:, :3].permute(0, 2, 3, 1).reshape(-1, 3).tolist()} <= \
        {tuple(c) for c in pal.tolist()}
    for name in ("g.png", "g_sheet.png", "g/0000.png", "g/raw/0000.png"):
        assert (tmp_path / name).is_file(), name
    raw_alpha = np.asarray(Image.open(tmp_path / "g" / "raw" / "0000.png"))[..., 3]
    assert raw_alpha.shape == (32, 32)


def test_generation_does_not_need_the_training_data(cond_run, tmp_path):
    """A model folder copied away from its data (and its run) still generates with the data palette."""
    import shutil
    shutil.copytree(cond_run / "model", tmp_path / "moved")
    m = load_model(tmp_path / "moved")
    m.data_dir = str(tmp_path / "deleted")
    images, _, _ = sprites_of(m, 2, steps=2)
    assert images.shape == (2, 4, 32, 32)
    assert not (tmp_path / "moved" / "palette_32.hex").exists()  # nothing cached into the folder


def test_border_difference_sees_a_seam(icons):
    mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    mask[..., 8:24, 8:24] = True
    own = metrics.border_difference(icons[:20], mask)
    pasted = torch.where(mask, torch.full_like(icons[:20], 255), icons[:20])  # a white square
    assert metrics.border_difference(pasted, mask) > 2 * own > 0


def test_class_diversity_is_one_for_the_data_and_zero_for_a_collapsed_class():
    from metrics import class_diversity
    f = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(40) % 2
    collapsed = torch.where((labels == 1)[:, None], f[1], f)  # class 1: one icon, again and again
    div = class_diversity(collapsed, labels, f, labels, ["a", "b"])
    assert div["a"] == pytest.approx(1.0) and div["b"] == pytest.approx(0.0)
