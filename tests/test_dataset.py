"""The loader on every PIL mode, on bad files, and the per-batch augmentation."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import spec_of
from config import UserError, preset
from dataset import augment, load_folder, load_image, to_uint8, BadImage


def sprite(size=8, alpha=True) -> np.ndarray:
    """A small RGBA sprite: a coloured square with a transparent border."""
    a = np.zeros((size, size, 4), np.uint8)
    a[2:-2, 2:-2] = (200, 40, 10, 255)
    a[3, 3] = (10, 220, 30, 255)
    if not alpha:
        a[..., 3] = 255
    return a


def cfg_for(folder, **kw):
    return preset("smoke", data_dir=str(folder), image_size=8, **kw)


def write_zoo(folder):
    """Every mode and format the loader must take, in two class folders."""
    good, bad = folder / "good", folder / "bad"
    good.mkdir(parents=True)
    rgba = Image.fromarray(sprite(), "RGBA")
    rgba.save(good / "rgba.png")
    rgba.convert("LA").save(good / "la.png")
    rgba.convert("RGB").convert("L").save(good / "l.png")
    p = rgba.convert("RGB").quantize(8)
    p.info["transparency"] = 0
    p.save(good / "p_trans.png", transparency=0)
    rgba.convert("RGB").save(good / "rgb.JPG")
    rgba.convert("RGB").convert("CMYK").save(good / "cmyk.jpeg")
    rgba.convert("RGB").save(good / "rgb.bmp")
    rgba.save(good / "rgba.webp", lossless=True)
    Image.fromarray((np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)).save(good / "i16.png")
    frames = [rgba.convert("RGB"), Image.new("RGB", (8, 8), (0, 0, 255))]
    frames[0].save(good / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    Image.new("RGBA", (16, 16), (255, 0, 0, 255)).save(good / "big.png")  # pixel-doubled: reduced exactly
    Image.new("RGBA", (8, 4), (0, 255, 0, 255)).save(good / "wide.png")  # centred, not stretched
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    (bad / "text.png").write_text("not an image")
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    (bad / "truncated.png").write_bytes(buf.getvalue()[:40])
    (folder / "notes.txt").write_text("ignored: not an image extension")
    return 12, 3  # good, bad


def test_every_mode_loads_and_bad_files_are_skipped(tmp_path):
    n_good, n_bad = write_zoo(tmp_path)
    lines = []
    data = load_folder(*spec_of(cfg_for(tmp_path)), log=lines.append)
    assert data.images.shape == (n_good, 3, 8, 8) and data.images.dtype == torch.uint8
    assert data.classes == ["good"] and (data.labels == 0).all()
    assert len(data.skipped) == n_bad
    assert sum(line.startswith("warning: skipping") for line in lines) == n_bad
    assert any(f"skipped {n_bad} of {n_good + n_bad}" in line for line in lines)
    assert any("centred" in line and "never stretched" in line for line in lines)
    assert any("1 pixel-doubled images were reduced exactly" in line for line in lines)


def test_transparency_composited_on_background_or_kept(tmp_path):
    Image.fromarray(sprite(), "RGBA").save(tmp_path / "a.png")
    rgb = load_folder(*spec_of(cfg_for(tmp_path, background="#102030"))).images[0]
    assert rgb[:, 0, 0].tolist() == [16, 32, 48]  # transparent corner shows the background
    assert rgb[:, 4, 4].tolist() == [200, 40, 10]
    rgba = load_folder(*spec_of(cfg_for(tmp_path, channels=4))).images[0]
    assert rgba[:, 0, 0].tolist() == [0, 0, 0, 0] and rgba[:, 4, 4].tolist() == [200, 40, 10, 255]


def test_nearest_resize_keeps_pixel_art_exact(tmp_path):
    art = sprite()
    Image.fromarray(art, "RGBA").resize((32, 32), Image.NEAREST).save(tmp_path / "x4.png")
    arr, note = load_image(tmp_path / "x4.png", 8, 4, (0, 0, 0))
    assert np.array_equal(arr[art[..., 3] > 0], art[art[..., 3] > 0])  # no blended colours
    assert "nearest" in note


def test_non_square_is_padded_centred_not_stretched(tmp_path):
    Image.new("RGBA", (8, 4), (0, 255, 0, 255)).save(tmp_path / "w.png")
    arr, note = load_image(tmp_path / "w.png", 8, 4, (0, 0, 0))
    assert arr[2:6, :, 3].min() == 255 and arr[:2, :, 3].max() == 0 and arr[6:, :, 3].max() == 0
    assert "padded 8x4 to 8x8" in note


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(tmp_path / "w.png")
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(tmp_path / "g.png")
    white, _ = load_image(tmp_path / "w.png", 8, 3, (0, 0, 0))
    grey, _ = load_image(tmp_path / "g.png", 8, 3, (0, 0, 0))
    assert white.min() == 255 and 126 <= grey.mean() <= 129


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    arr, _ = load_image(tmp_path / "a.gif", 8, 3, (0, 0, 0))
    assert arr[0, 0].tolist() == [255, 0, 0]


def test_decompression_bomb_is_refused(tmp_path):
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")  # small file, huge image
    with pytest.raises(BadImage, match="too large"):
        load_image(tmp_path / "bomb.png", 8, 3, (0, 0, 0))


def test_class_labels_from_first_level_folders(tmp_path):
    for cls, n in (("potion", 2), ("book", 3)):
        (tmp_path / cls / "deeper").mkdir(parents=True)
        for i in range(n):
            Image.fromarray(sprite(), "RGBA").save(tmp_path / cls / "deeper" / f"{i}.PNG")
    data = load_folder(*spec_of(cfg_for(tmp_path)))
    assert data.classes == ["book", "potion"]
    assert sorted(data.labels.tolist()) == [0, 0, 0, 1, 1]


def test_flat_folder_is_one_class(tmp_path):
    Image.fromarray(sprite(), "RGBA").save(tmp_path / "a.png")
    assert load_folder(*spec_of(cfg_for(tmp_path))).classes == [tmp_path.name]


def only_bad_files(folder):
    (folder / "x.png").write_bytes(b"")
    return folder


@pytest.mark.parametrize("setup, message", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: p, "no images"),
    (only_bad_files, "none of the 1 image files"),
])
def test_unusable_folders_stop_with_one_sentence(tmp_path, setup, message):
    with pytest.raises(UserError, match=message):
        load_folder(*spec_of(cfg_for(setup(tmp_path))), log=lambda _: None)


def test_one_size_trains_at_that_size_and_mixed_sizes_say_so(tmp_path):
    """16x16 sprites train at 16x16 (not upscaled to 32); mixed sizes train at the commonest, and what
    cannot be that size without resampling is skipped in one line that names it; strips of frames are
    split; a size the UNet cannot take names the ones it can."""
    for i in range(3):
        Image.fromarray(sprite(16), "RGBA").save(tmp_path / f"{i}.png")
    lines = []
    data = load_folder(*spec_of(preset("smoke", data_dir=str(tmp_path))), log=lines.append)
    assert data.images.shape[-2:] == (16, 16) and lines == []
    Image.fromarray(sprite(24), "RGBA").save(tmp_path / "big.png")
    data = load_folder(*spec_of(preset("smoke", data_dir=str(tmp_path))), log=lines.append)
    assert data.images.shape == (3, 3, 16, 16)
    assert lines == ["skipped 1 images that cannot be 16x16 without resampling (first: big.png "
                     "(24x24)); --image_size=N trains at another size"]
    strip = np.concatenate([sprite(16)] * 4, 1)  # 4 frames of an animation side by side
    Image.fromarray(strip, "RGBA").save(tmp_path / "walk.png")
    lines.clear()
    data = load_folder(*spec_of(preset("smoke", data_dir=str(tmp_path))), log=lines.append)
    assert data.images.shape[0] == 3 + 4 and "1 strips were split into frames" in lines[1]
    assert torch.equal(data.images[3], data.images[6])  # each frame whole, never squeezed
    assert torch.equal(load_folder(*spec_of(preset("smoke", data_dir=str(tmp_path), image_size=32)),
                                   log=lambda _: None).images[0, :, ::2, ::2], data.images[0])  # x2 exactly
    for p in tmp_path.glob("*.png"):
        p.unlink()
    Image.fromarray(sprite(18), "RGBA").save(tmp_path / "odd.png")
    with pytest.raises(UserError, match="the images are mostly 18x18.*--image_size=20"):
        load_folder(*spec_of(preset("seed", data_dir=str(tmp_path))))


def test_shipped_dataset_loads():
    data = load_folder(*spec_of(preset("seed")), log=lambda _: None)
    assert data.images.shape == (346, 3, 32, 32) and len(data.classes) == 15 and not data.skipped


def test_augment_scales_and_flips():
    batch = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).reshape(2, 3, 4, 4) * 2
    g = torch.Generator().manual_seed(0)
    x = augment(batch, 0.0, g)
    assert x.min() >= -1 and x.max() <= 1 and torch.equal(to_uint8(x), batch)
    assert torch.equal(to_uint8(augment(batch, 1.0, g)), batch.flip(-1))
    flips = [bool((augment(batch[:1], 0.5, g) != x[:1]).any()) for _ in range(200)]
    assert 60 < sum(flips) < 140  # about half
