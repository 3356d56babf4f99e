"""The seed's other to-dos: a transformer backbone (--backbone=dit) and latent diffusion (--latent on an
autoencoder trained with --backbone=vae), through training, export, loading and generate.py."""
import json

import pytest
import torch

import evaluate
import generate
import metrics
import model
import sprites
import train
from conftest import sprites_of, finished_run
from config import UserError, preset

TINY_DIT = ("--backbone=dit", "--dit_width=32", "--dit_layers=2", "--max_steps=2", "--sample_every=0")


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    return finished_run(tmp_path_factory, "vae", "--backbone=vae", "--channels=4", "--max_steps=2")


@pytest.mark.parametrize("extra, cls", [((), model.DiT), (("--condition=class",), model.DiT),
                                        (("--condition=text", "--text_inputs=cross",), model.TextDiT)])
def test_dit_trains_exports_and_generates(tmp_path_factory, tmp_path, extra, cls):
    run = finished_run(tmp_path_factory, "dit", *TINY_DIT, *extra)
    m = model.load_model(run)
    assert type(m.net) is cls and m.net.config.patch_size == 2
    # saved as the stock diffusers class, so that diffusers alone loads it
    stock = json.loads((run / "model" / "unet" / "config.json").read_text())["_class_name"]
    assert stock == cls.__bases__[0].__name__
    args = ["--prompt=a red potion"] if "--condition=text" in extra else []
    out = tmp_path / "g.png"
    assert generate.main([f"--model={run}", "--num_images=2", "--steps=2", f"--out={out}", *args]) == 0
    assert len(list((tmp_path / "g").glob("*.png"))) == 2
    assert generate.main([f"--model={run}", "--num_images=1", "--steps=2", "--sampler=ddim",
                          f"--out={out}", *args]) == 0
    assert evaluate.main([f"--model={run}", "--num_samples=4", "--steps=2", "--nearest=",
                          f"--json={tmp_path / 'new' / 'e.json'}"]) == 0  # its folder made, not a traceback
    assert json.loads((tmp_path / "new" / "e.json").read_text())["samples"]["fd_lite0"] > 0


def test_dit_classes_change_the_output_and_the_model_drops_no_labels_itself():
    cfg = preset("smoke", backbone="dit", dit_width=32, dit_layers=2, condition="class")
    dit = model.build(cfg.model, num_classes=3).train()
    x, t = torch.randn(2, 3, 32, 32), torch.tensor(500)
    torch.manual_seed(0)
    a = dit(x, t, class_labels=torch.tensor([0, 0])).sample
    torch.manual_seed(1)  # diffusers' own label dropout would draw from the global generator
    b = dit(x, t, class_labels=torch.tensor([0, 0])).sample
    c = dit(x, t, class_labels=torch.tensor([1, 3])).sample  # 3: the "no class" label
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_a_dit_takes_prompts_by_cross_attention_only(capsys):
    assert train.main(["--preset=smoke", "--backbone=dit", "--condition=text"]) == 2
    assert "a DiT takes text through cross-attention only: add --text_inputs=cross" in \
        capsys.readouterr().err


def test_autoencoder_exports_its_reconstruction_ceiling(vae_run):
    meta = json.loads((vae_run / "model" / model.META_FILE).read_text())
    rec = meta["reconstruction"]
    assert 0 <= rec["exact"] <= 1 and rec["fd_lite0"] > rec["floor_fd"] >= 0
    vae = model.load_vae(vae_run)
    assert vae.config.scaling_factor != 0.18215  # calibrated on the data
    with pytest.raises(UserError, match="is an autoencoder"):
        model.load_model(vae_run)


def test_reconstruction_counts_pixels_exact_after_snapping_whatever_is_under_transparency(monkeypatch):
    images = torch.zeros(2, 4, 4, 4, dtype=torch.uint8)
    images[:, :3] = 200
    images[:, 3, :2] = 255  # top half opaque, bottom half transparent
    rec = images.clone()
    rec[:, :3, 2:] = 50  # a different colour under transparency: still exact
    rec[0, :3, 0, 0] = torch.tensor([10, 0, 0])  # one opaque pixel wrong (a palette colour)
    rec[1, :3, 1, 1] = torch.tensor([205, 198, 201])  # off, but snaps to the data's colour: exact
    monkeypatch.setattr(model, "encode", lambda vae, x: x)
    monkeypatch.setattr(model, "decode", lambda vae, z: rec.float() / 127.5 - 1)
    monkeypatch.setattr(metrics, "features", lambda x, net=None: torch.randn(len(x), 8))
    palette = torch.tensor([[200, 200, 200], [50, 50, 50], [10, 0, 0]], dtype=torch.uint8)
    got = metrics.reconstruction(None, images, palette, net=object())
    assert got["exact"] == pytest.approx(31 / 32)


@pytest.fixture(scope="module")
def latent_run(vae_run, tmp_path_factory):
    return finished_run(tmp_path_factory, "lat", f"--latent={vae_run}", "--channels=4", "--condition=class",
                        "--max_steps=2", "--sample_every=0")


def test_latent_model_trains_on_the_autoencoder_and_generates_pixels(latent_run, tmp_path, capsys):
    run = latent_run
    m = model.load_model(run)
    assert m.vae is not None and m.net.config.in_channels == model.LATENT_CHANNELS
    assert m.net.config.sample_size == 32 // 2  # the smoke autoencoder halves the side
    assert (run / "model" / "vae" / "diffusion_pytorch_model.safetensors").is_file()  # self-contained
    images, _, _ = sprites_of(m, 2, steps=2)
    assert evaluate.main([f"--model={run}", "--num_samples=4", "--steps=2", "--nearest="]) == 0
    assert images.shape == (2, 4, 32, 32) and images.dtype == torch.uint8
    # a latent model has no pixels to keep: starting from a sprite is refused in one line
    sprites.save(images, images, [None], 2, tmp_path / "g.png", 1, False)
    icon = next((tmp_path / "g").glob("*.png"))
    assert generate.main([f"--model={run}", f"--init={icon}", "--strength=0.5"]) == 2
    assert "latent model" in capsys.readouterr().err


def test_latent_needs_an_autoencoder_of_the_same_channels(vae_run, tmp_path, capsys):
    assert train.main(["--preset=smoke", f"--latent={tmp_path}", f"--out_dir={tmp_path}"]) == 2
    assert "no trained autoencoder" in capsys.readouterr().err
    assert train.main(["--preset=smoke", f"--latent={vae_run}", "--channels=3", f"--out_dir={tmp_path}"]) == 2
    assert "encodes 4 channels" in capsys.readouterr().err


def test_visualize_refuses_a_latent_model_in_one_line(latent_run, capsys):
    import visualize
    assert visualize.main([f"--model={latent_run}"]) == 2
    assert "latent model" in capsys.readouterr().err


def test_the_dit_width_is_checked_only_for_a_dit():
    assert preset("smoke", attention_head_dim=12).model.attention_head_dim == 12  # a UNet: no DiT to fit
    with pytest.raises(UserError, match="dit_width 128 is not a multiple of attention_head_dim 12"):
        preset("smoke", attention_head_dim=12, backbone="dit")
