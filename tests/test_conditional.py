"""Class-conditional training and classifier-free guidance."""
from conftest import sprites_of
import json

import pytest
import torch
from PIL import Image

import generate
from conditioning import ClassCondition, NoCondition
from config import ROOT, preset
from model import build, load_model
from sampling import guided_output


def test_label_dropout_rate():
    labels, c = torch.zeros(20000, dtype=torch.long), ClassCondition(list("abcdefg"))
    g = torch.Generator().manual_seed(0)
    rate = (c.drop(labels, 0.1, g) == 7).double().mean().item()
    assert 0.09 < rate < 0.11
    assert (c.drop(labels, 0.0, g) == 0).all()
    assert (c.drop(labels, 1.0, g) == 7).all()
    state = g.get_state()
    assert NoCondition().drop(labels, 0.5, g) is labels and torch.equal(g.get_state(), state)


def class_conditions(labels, null):
    return ClassCondition([str(i) for i in range(null)]).encode([str(i) for i in labels.tolist()])


class Recorder(torch.nn.Module):
    """Stands in for the UNet: records each call's batch and labels, returns label-dependent output."""
    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, class_labels=None):
        self.calls.append((x.shape[0], class_labels.tolist()))
        return type("Out", (), {"sample": x * 0 + class_labels.view(-1, 1, 1, 1).float()})()


def test_guidance_is_one_batched_call():
    unet, x, labels = Recorder(), torch.zeros(3, 3, 4, 4), torch.tensor([0, 1, 2])
    cond, null = class_conditions(labels, 9)
    out = guided_output(unet, x, 5, cond, null, guidance=3.0)
    assert unet.calls == [(6, [0, 1, 2, 9, 9, 9])]
    assert torch.allclose(out[:, 0, 0, 0], 9 + 3.0 * (labels.float() - 9))
    unet.calls.clear()
    guided_output(unet, x, 5, cond, null, 1.0)
    guided_output(unet, x, 5, cond, null, 0.0)
    assert unet.calls == [(3, [0, 1, 2]), (3, [9, 9, 9])]


def test_guidance_extremes_match_plain_predictions():
    torch.manual_seed(0)
    unet = build(preset("smoke", condition="class").model, num_classes=4).eval()
    x, t, labels = torch.randn(2, 3, 32, 32), torch.tensor(500), torch.tensor([1, 3])
    cond, null = class_conditions(labels, 4)
    with torch.no_grad():
        c = unet(x, t, class_labels=labels).sample
        u = unet(x, t, class_labels=torch.tensor([4, 4])).sample
        assert torch.allclose(guided_output(unet, x, t, cond, null, 1.0), c)
        assert torch.allclose(guided_output(unet, x, t, cond, null, 0.0), u)
        assert torch.allclose(guided_output(unet, x, t, cond, null, 2.5), u + 2.5 * (c - u), atol=1e-5)


def test_class_names_are_saved_with_the_model(cond_run):
    meta = json.loads((cond_run / "model" / "pixelart.json").read_text())
    assert meta["classes"][:3] == ["armour", "artefact", "book"] and len(meta["classes"]) == 15
    assert load_model(cond_run).net.config.num_class_embeds == 16  # 15 classes + "no class"


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm"])
def test_every_class_samples_with_every_sampler(cond_run, sampler):
    m = load_model(cond_run)
    images, raw, rows = sprites_of(m, 2, "all", sampler=sampler, steps=2)
    assert rows == m.classes and images.shape == raw.shape == (30, 4, 32, 32)


def test_class_grid_is_labelled(cond_run, tmp_path):
    assert generate.main([f"--model={cond_run}", "--class=potion,book", "--num_images=3",
                          "--steps=2", f"--out={tmp_path / 'g.png'}", "--scale=2"]) == 0
    grid = Image.open(tmp_path / "g.png")
    assert grid.width > 2 * (3 * 33 + 1)  # a label margin left of the rows
    assert len(list((tmp_path / "g").glob("*.png"))) == 6


def test_unknown_class_lists_known_ones(cond_run, capsys):
    assert generate.main([f"--model={cond_run}", "--class=dragon"]) == 2
    err = capsys.readouterr().err
    assert "unknown class dragon; this model's classes: armour, artefact, book" in err


def test_guidance_and_sampler_sweeps_report_every_class(cond_run, tmp_path):
    import evaluate
    out = tmp_path / "sweep.json"
    assert evaluate.main([f"--model={cond_run}", "--guidance_sweep=1,3", "--per_class=1",
                          f"--data_dir={ROOT / 'data' / 'dcss_items'}",  # the probe needs every icon
                          "--sampler_sweep=ddim-2,dpm-2", "--num_samples=4", "--sampler=ddim",
                          "--steps=2", f"--json={out}"]) == 0
    result = json.loads(out.read_text())
    g = result["guidance"]
    assert [r["guidance"] for r in g["rows"]] == [1.0, 3.0]
    assert 0.5 < g["probe_held_out_accuracy"] <= 1.0  # the probe itself tells classes apart
    assert all(0 <= r["accuracy"] <= 1 and set(r["per_class"]) == set(g["class_counts"])
               for r in g["rows"])
    assert [r["sampler"] for r in result["samplers"]] == ["ddim-2", "dpm-2"]
    assert all(r["fd_lite0"] > 0 and r["seconds"] > 0 for r in result["samplers"])


def test_default_cycles_classes_and_none_is_unconditional(cond_run):
    c = load_model(cond_run).condition
    labels = lambda classes, n: c.encode(c.request(classes, (), n)[1])[0]["class_labels"].tolist()
    assert labels("", 17) == list(range(15)) + [0, 1]
    assert labels("none", 3) == [15, 15, 15]
    assert labels("book,potion", 2) == [2, 2, 7, 7]
    assert c.request("book,potion", (), 2)[0] == ["book", "potion"]
