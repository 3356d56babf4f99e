"""The web page (app.py): its parts without a browser, then the page in headless Debian chromium
(tests/install_tools.sh installs it; without it these tests skip and say why)."""
import functools
import shutil
from pathlib import Path
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import app
import autotile
import config
from config import UserError
from model import load_model


def test_checkerboard_shows_transparency_and_keeps_pixels_square():
    img = torch.zeros(1, 4, 2, 2, dtype=torch.uint8)
    img[0, :, 0, 0] = torch.tensor([255, 0, 0, 255])  # one opaque red pixel, the rest transparent
    out = np.asarray(app.checkerboard(img, zoom=3)[0])
    assert out.shape == (6, 6, 3)
    assert (out[:3, :3] == [255, 0, 0]).all()  # a 3x3 square of red, no blur at its edge
    assert (out[:3, 3:] == 240).all() and (out[3:, 3:] == 200).all()  # the board shows through


def test_painted_strokes_become_the_mask_of_the_pixels_they_touch():
    layer = np.zeros((64, 64, 4), np.uint8)
    layer[2:5, 40:42, 3] = 255  # a stroke inside sprite pixel (0, 5) of an 8x8 sprite zoomed 8x
    mask = app.painted_mask({"layers": [layer]}, 8)
    assert mask.shape == (1, 8, 8) and mask.sum() == 1 and mask[0, 0, 5]
    assert app.painted_mask({"layers": []}, 8) is None
    assert app.painted_mask({"layers": [np.zeros((64, 64, 4), np.uint8)]}, 8) is None
    with pytest.raises(UserError, match="whole sprite"):
        app.painted_mask({"layers": [np.full((64, 64, 4), 255, np.uint8)]}, 8)


@pytest.fixture(scope="module")
def m(cond_run):
    return load_model(cond_run)


@pytest.mark.parametrize("field, value", [("count", 0), ("count", 1000), ("steps", -1), ("guidance", 99),
                                          ("seed", -5), ("strength", 1.5)])
def test_numbers_out_of_range_are_one_sentence(m, tmp_path, field, value):
    args = dict(prompt="", cls=app.IN_TURN, guidance=3.0, seed=0, steps=2, count=2, palette="data",
                palette_file=None, sprite_file=None, editor=None, strength=0.5, tileable=False)
    args[field] = value
    with pytest.raises(UserError, match=f"{field} must be between"):
        app.make_sprites(m, tmp_path, **args)


def png_header(width: int, height: int) -> bytes:
    """The start of an RGBA PNG of that size: enough for a reader to learn the size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 6, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("make_file, message", [
    (lambda p: p.write_text("not a picture"), "not an image"),
    (lambda p: p.write_bytes(png_header(30000, 30000)), "too large"),  # decoded, 3.6 GB
])
def test_bad_sprite_uploads_are_one_sentence(m, tmp_path, make_file, message):
    bad = tmp_path / "bad.png"
    make_file(bad)
    with pytest.raises(UserError, match=message):
        app.sprite_editor_value(str(bad), m)


def test_a_palette_file_without_colours_is_one_sentence(m, tmp_path):
    empty = tmp_path / "empty.hex"
    empty.write_text("\n")
    with pytest.raises(UserError, match="colour"):
        app.make_sprites(m, tmp_path, "", app.IN_TURN, 3.0, 0, 2, 2, "file", str(empty), None, None, 0.5,
                         False)


def test_make_sprites_writes_native_pngs_a_sheet_and_a_variation(m, tmp_path):
    gallery, files, sheet, status = app.make_sprites(m, tmp_path, "", app.IN_TURN, 3.0, 1, 2, 3, "data",
                                                     None, None, None, 0.5, True)
    assert len(gallery) == 3 and len(files) == 3 and status.startswith("3 sprites")
    assert gallery[0][0].size == (32 * 3 * app.ZOOM // 2,) * 2  # tileable: 3x3 repeats
    assert Image.open(files[0]).size == (32, 32) and Image.open(sheet).size == (64, 64)  # 2 x 2 cells
    icon = files[0]
    layer = np.zeros((256, 256, 4), np.uint8)
    layer[:64, :64, 3] = 255  # paint the top-left 8x8 sprite pixels
    _, files2, _, _ = app.make_sprites(m, tmp_path, "", app.IN_TURN, 3.0, 2, 2, 2, "data", None, icon,
                                       {"layers": [layer]}, 1.0, False)
    before, after = (np.asarray(Image.open(f))[8:, 8:] for f in (icon, files2[0]))
    # outside the painted mask: the sprite itself (the colour under a transparent pixel aside)
    assert (before[..., 3] == after[..., 3]).all()
    assert (before[before[..., 3] > 0] == after[before[..., 3] > 0]).all()


def test_the_page_has_a_tileset_tab_for_tile_models_only(tile_run, cond_run, tmp_path, monkeypatch):
    monkeypatch.setattr(autotile, "CANDIDATES", 1)  # the page's path, not the choice of textures
    monkeypatch.setattr(autotile, "TilesetRequest", functools.partial(autotile.TilesetRequest, steps=2))
    m = load_model(tile_run)
    assert "make-tileset" in fields_of(app.build_page(m, tmp_path))
    assert "make-tileset" not in fields_of(app.build_page(load_model(cond_run), tmp_path))  # RGBA sprites
    shown, files, status = app.make_tileset(m, tmp_path, "floor", "water", 1)
    assert len(shown) == 3 and {p.rsplit(".", 1)[1] for p in files} == {"png", "tsx", "tmx"}
    assert "seam ratio" in status
    with pytest.raises(app.UserError, match="names floor twice"):
        app.make_tileset(m, tmp_path, "floor", "floor", 1)


# ----------------------------------------------------------------------------- in the browser

def browser_missing() -> str:
    if shutil.which("chromium") is None:
        return "no chromium: run tests/install_tools.sh (Debian's chromium, as root)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements.txt)"
    return ""


@pytest.fixture(scope="module")
def page(m):
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(config.SAMPLER_STEPS, "dpm", 2)  # the page's default steps: 2, for time
        server, url = app.serve(m, "127.0.0.1", app.free_port(), block=False)
        pw, browser = app.open_browser()
        tab = browser.new_page()
        tab.goto(url)
        tab.locator("#make").wait_for(timeout=60_000)  # the page is built by its scripts after loading
        yield tab
        browser.close()
        pw.stop()
        server.close()


def test_the_page_loads_with_the_models_classes(page):
    assert page.title() == "Pixel Art Diffusion"
    assert page.locator("#make").is_visible()
    assert page.locator("#class").is_visible()  # a class model: the class choice is there


def test_four_sprites_show_and_download_as_native_pngs(page, tmp_path):
    number = page.locator("#count input[type=number]")
    number.fill("4")
    number.press("Enter")
    app.click_make(page, 4, timeout_s=120)
    assert page.locator("#gallery img").count() == 4
    assert "4 sprites" in page.locator("#status").inner_text()
    with page.expect_download() as download:
        page.locator("#files a").first.click()
    path = tmp_path / "sprite.png"
    download.value.save_as(path)
    img = Image.open(path)
    assert img.format == "PNG" and img.size == (32, 32) and img.mode == "RGBA"


def test_two_users_at_once_are_queued_and_both_get_sprites(page):
    other = page.context.browser.new_page()
    other.goto(page.url)
    other.locator("#make").wait_for(timeout=60_000)
    page.reload()
    page.locator("#make").wait_for(timeout=60_000)
    page.click("#make")
    other.click("#make")  # while the first is sampling or queued: one runs at a time
    for tab in (page, other):
        tab.wait_for_function("document.querySelectorAll('#gallery img').length >= 8", timeout=120_000)
    other.close()


def test_bad_uploads_show_the_error_and_the_page_stays_up(page, tmp_path):
    bad = tmp_path / "sprite.png"
    bad.write_text("this is text, not a picture")
    page.get_by_text("start from a sprite").click()
    page.locator("#sprite input[type=file]").set_input_files(str(bad))
    page.get_by_text("not an image").first.wait_for(timeout=30_000)
    big = tmp_path / "big.png"
    big.write_bytes(bytes(11 * 2**20))  # over the 10 MB limit: refused before it reaches the model
    page.reload()
    page.get_by_text("start from a sprite").click()
    page.locator("#sprite input[type=file]").set_input_files(str(big))
    page.get_by_text("exceed the maximum allowed size").first.wait_for(timeout=30_000)
    page.reload()  # the server is still up: a new page makes sprites
    app.click_make(page, 8, timeout_s=120)


def fields_of(page) -> dict:
    """elem_id -> component of a built page."""
    return {b.elem_id: b for b in page.blocks.values() if getattr(b, "elem_id", None)}


def test_the_page_shows_the_field_the_model_is_asked_by(m, prompt_run, tmp_path):
    by_class = fields_of(app.build_page(m, tmp_path))
    assert by_class["class"].visible and not by_class["prompt"].visible
    text_model = load_model(prompt_run)
    by_text = fields_of(app.build_page(text_model, tmp_path))
    assert by_text["prompt"].visible and not by_text["class"].visible
    assert by_text["prompt"].value in text_model.condition.captions  # a real caption to start from


def test_old_request_folders_are_deleted(m, tmp_path, monkeypatch):
    monkeypatch.setattr(app, "KEEP", 2)
    files = [app.make_sprites(m, tmp_path, "", app.IN_TURN, 3.0, i, 1, 1, "data", None, None, None,
                              0.5, False)[1][0] for i in range(4)]
    kept = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(kept) == 2 and [str(p) for p in kept] == [str(Path(f).parent) for f in files[2:]]


def test_the_server_prints_no_share_hint(m, capfd):
    server, url = app.serve(m, "127.0.0.1", app.free_port(), block=False)
    server.close()
    out = capfd.readouterr()
    assert "share=True" not in out.out + out.err


def test_the_readme_api_example_runs_against_the_page(m, char_run, lpc, tmp_path, monkeypatch):
    """The README's gradio_client lines, word for word, against a page started here on 127.0.0.1
    (its address and the sprite's path put in): each action answers as an API call."""
    from conftest import ROOT
    monkeypatch.setitem(config.SAMPLER_STEPS, "dpm", 2)  # the page's default steps: 2, for time
    from test_characters import hero
    readme = (ROOT / "README.md").read_text()
    code = readme.split("### The page's API", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    server, url = app.serve(m, "127.0.0.1", app.free_port(), block=False, walker=load_model(char_run))
    try:
        code = code.replace("http://127.0.0.1:7860/", url).replace("hero.png", str(hero(tmp_path, lpc)))
        code = code.replace('prompt="a blue book", ', "")  # a class model here: its classes in turn
        scope = {}
        exec(code, scope)
        assert len(scope["files"]) == 4 and Image.open(scope["files"][0]).size == (32, 32)
        assert any(str(f).endswith("sheet.tres") for f in scope["walk_files"])
    finally:
        server.close()
