"""Starting from a sprite: variations, inpainting, outpainting, seamless tiles, and their bad input."""
from conftest import sprites_of
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import generate
from config import preset
from sprites import Start, shifted
from model import load_model


@pytest.fixture(scope="module")
def m(cond_run):
    return load_model(cond_run)


@pytest.fixture(scope="module")
def icon():
    """A shipped icon (RGBA uint8 C,H,W): its colours are not all in the model's palette."""
    path = next((Path(__file__).parents[1] / "data" / "dcss_items" / "potion").glob("*.png"))
    return torch.from_numpy(np.array(Image.open(path).convert("RGBA"))).permute(2, 0, 1)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm"])
def test_strength_zero_gives_the_sprite_back_and_more_strength_changes_more(m, icon, sampler):
    back, _, _ = sprites_of(m, 2, "potion", sampler=sampler, steps=4, start=Start(icon, None, 0.0))
    assert torch.equal(back, icon.expand(2, -1, -1, -1))
    changed = [(sprites_of(m, 2, "potion", sampler=sampler, steps=4, palette="none",
                                  start=Start(icon, None, s))[0].float() - icon.float()).abs().mean()
               for s in (0.25, 1.0)]
    assert 0 < changed[0] < changed[1]


@pytest.mark.parametrize("sampler, resample", [("ddpm", 2), ("ddim", 2), ("dpm", 2), ("dpm", 0)])
def test_inpainting_keeps_every_unmasked_pixel_exactly(m, icon, sampler, resample):
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[:, 8:20, 10:24] = True
    out, _, _ = sprites_of(m, 3, "potion", sampler=sampler, steps=4,
                                  start=Start(icon, mask, resample=resample))
    keep = ~mask.expand(3, 4, -1, -1)
    assert torch.equal(out[keep], icon.expand(3, -1, -1, -1)[keep])
    assert not torch.equal(out[~keep], icon.expand(3, -1, -1, -1)[~keep])


def test_outpainting_moves_the_sprite_and_fills_the_strip(m, icon):
    moved, mask = shifted(icon, "right", 8)
    assert torch.equal(moved[:, :, :24], icon[:, :, 8:]) and mask[0, :, 24:].all() and not mask[0, :, :24].any()
    up, up_mask = shifted(icon, "up", 4)
    assert torch.equal(up[:, 4:], icon[:, :28]) and up_mask[0, :4].all()
    out, _, _ = sprites_of(m, 2, "potion", steps=4, start=Start(moved, mask))
    assert torch.equal(out[:, :, :, :24], moved[:, :, :24].expand(2, -1, -1, -1))


class Pointwise(torch.nn.Module):
    """Stands in for the UNet: a per-pixel function, plus (if `ramp`) a term that depends on where the
    pixel is, as a real UNet's zero padding makes its output depend on the border."""
    def __init__(self, ramp: bool):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5))
        self.config = type("Config", (), {"sample_size": 8, "out_channels": 3})()
        self.ramp = torch.linspace(-0.3, 0.3, 8) if ramp else torch.zeros(8)

    def forward(self, x, t):
        return type("Out", (), {"sample": torch.tanh(x) * self.w + self.ramp})()


def test_tileable_rolls_the_image_and_the_prediction_back():
    """A model that does not care where a pixel is gives the same sprites tileable or not (the
    prediction is rolled back exactly); one that does is fooled by the random rolls, as a UNet's
    border is: what it draws at the border is spread around instead of fixed at the edges."""
    from model import build_scheduler
    from sampling import SampleRequest, sample
    scheduler = build_scheduler(preset("smoke").model)
    for ramp in (False, True):
        unet = Pointwise(ramp)
        plain = sample(unet, scheduler, SampleRequest(2, sampler="ddim", steps=6))
        tiled = sample(unet, scheduler, SampleRequest(2, sampler="ddim", steps=6, tileable=True))
        assert torch.allclose(plain, tiled, atol=1e-6) != ramp


def test_tileable_cli_writes_sprites(cond_run, tmp_path):
    assert generate.main([f"--model={cond_run}", "--tileable", "--num_images=2", "--steps=2",
                          f"--out={tmp_path / 'g.png'}"]) == 0
    assert len(list((tmp_path / "g").glob("*.png"))) == 2


def write(path, size, rgba):
    Image.new("RGBA", (size, size), rgba).save(path)
    return path


def text_file(folder):
    (folder / "m.png").write_text("not an image")
    return folder / "m.png"


def test_an_init_of_another_size_is_resized_with_one_warning(cond_run, icon, tmp_path, capsys):
    Image.fromarray(icon.permute(1, 2, 0).numpy(), "RGBA").resize((64, 64), Image.NEAREST).save(
        tmp_path / "big.png")
    assert generate.main([f"--model={cond_run}", f"--init={tmp_path / 'big.png'}", "--strength=0",
                          "--num_images=1", "--palette=none", f"--out={tmp_path / 'g.png'}"]) == 0
    out = capsys.readouterr().out
    assert "warning: init" in out and "resized 64 -> 32 (nearest)" in out
    assert np.array_equal(np.array(Image.open(tmp_path / "g" / "0000.png")), icon.permute(1, 2, 0).numpy())


@pytest.mark.parametrize("make, args, message", [
    (lambda p: write(p / "m.png", 32, (0, 0, 0, 255)), ["--init=I", "--mask=M"], "repaints nothing"),
    (lambda p: write(p / "m.png", 32, (255, 255, 255, 255)), ["--init=I", "--mask=M"],
     "repaints every pixel"),
    (lambda p: write(p / "m.png", 32, (255, 255, 255, 255)), ["--mask=M"],
     "--mask works on a sprite: give it one with --init"),
    (lambda p: p / "m.png", ["--strength=0.5"], "--strength works on a sprite: give it one with --init"),
    (lambda p: p / "m.png", ["--init=I", "--mask=M", "--extend=left"], "--mask and --extend both say"),
    (text_file, ["--init=M"],
     "not an image file PIL can read"),
    (lambda p: p / "m.png", ["--init=I", "--strength=1.5"], "--strength must be in [0, 1]"),
    (lambda p: p / "m.png", ["--init=I", "--extend=sideways"], "--extend must be left, right, up or down"),
    (lambda p: p / "m.png", ["--init=I", "--extend=left", "--by=40"], "--by must be between 1 and 31"),
    (lambda p: p / "m.png", ["--init=/no/such.png"], "init /no/such.png does not exist"),
])
def test_bad_start_input_is_one_sentence(cond_run, icon, tmp_path, capsys, make, args, message):
    mask = make(tmp_path)
    init = tmp_path / "i.png"
    Image.fromarray(icon.permute(1, 2, 0).numpy(), "RGBA").save(init)
    argv = [a.replace("=I", f"={init}").replace("=M", f"={mask}") for a in args]
    assert generate.main([f"--model={cond_run}", "--steps=2", "--num_images=1", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_seam_ratio_is_one_for_a_wrapping_pattern_and_high_for_a_ramp():
    from metrics import seam_ratio
    checker = ((torch.arange(32)[None, :] + torch.arange(32)[:, None]) % 2 * 200).to(torch.uint8)
    assert seam_ratio(checker.expand(1, 3, 32, 32)) == 1.0  # wraps like it continues
    ramp = (torch.arange(32) * 8).to(torch.uint8).expand(1, 3, 32, 32)
    assert seam_ratio(ramp) > 20


def test_seam_table_writes_both_rows(cond_run, tmp_path):
    import json
    import evaluate
    out = tmp_path / "s.json"
    assert evaluate.main([f"--model={cond_run}", "--seam_table", "--num_samples=2", "--steps=2",
                          f"--seam_picture={tmp_path / 't.png'}", f"--json={out}"]) == 0
    seams = json.loads(out.read_text())["seams"]
    assert seams["plain"] > 0 and seams["tileable"] > 0
    assert Image.open(tmp_path / "t.png").height > Image.open(tmp_path / "t.png").width / 2 * 0.9


@pytest.mark.parametrize("run", ["smoke_run", "prompt_run"])
def test_unconditional_and_prompt_models_start_from_a_sprite_too(run, request, icon):
    """Variations and inpainting on an unconditional RGB model and on a prompt model."""
    m = load_model(request.getfixturevalue(run))
    init = icon[:m.spec.channels] if m.spec.channels == 4 else icon[:3]
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[:, 4:12, 4:28] = True
    prompts = ("a red potion",) if m.condition.kind == "text" else ()
    back, _, _ = sprites_of(m, 1, prompts=prompts, steps=3, start=Start(init, None, 0.0))
    assert torch.equal(back[0], init)
    out, _, _ = sprites_of(m, 2, prompts=prompts, steps=3, start=Start(init, mask))
    assert torch.equal(out[:, :, 12:], init[:, 12:].expand(2, -1, -1, -1))
