"""Shared fixtures: offline, small, one smoke run per session reused by the script tests."""
import atexit
import gc
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may touch a hub
# One torch thread for each of pytest.ini's two workers (threads that share a core stall each other;
# the workers inherit the controller's environment, so the worker's own value is set, not defaulted).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
else:
    os.environ.setdefault("OMP_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config import GUIDANCE, SAMPLER, preset  # noqa: E402


def _small_data() -> Path:
    """Two icons of each of the 15 shipped classes, with their captions: every class, a twelfth of
    the decoding."""
    folder = Path(tempfile.mkdtemp(prefix="pixelart-small-"))
    atexit.register(shutil.rmtree, folder, True)
    items = ROOT / "data" / "dcss_items"
    for cls in sorted(p for p in items.iterdir() if p.is_dir()):
        (folder / cls.name).mkdir()
        for icon in sorted(cls.glob("*.png"))[:2]:
            shutil.copy(icon, folder / cls.name / icon.name)
    lines = [line for line in (items / "metadata.jsonl").read_text().splitlines()
             if (folder / json.loads(line)["file_name"]).exists()]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


SMALL_DATA = _small_data()


def pytest_collection_finish(session):
    """What collection imported (torch, diffusers, every test module) lives to the end: frozen, it is
    no longer walked by each full garbage collection (about half their time)."""
    gc.freeze()


def _git_status() -> str:
    import subprocess
    return subprocess.run(["git", "status", "--porcelain", "--ignored=matching"], cwd=ROOT,
                          capture_output=True, text=True).stdout


@pytest.fixture(scope="session", autouse=True)
def checkout_left_as_found():
    """The tests write only to temporary folders: the checkout, ignored files included, is as it
    was (an error at the end of the session names what changed)."""
    before = _git_status()
    yield
    after = _git_status()
    new = sorted(set(after.splitlines()) - set(before.splitlines()) - {"!! .pytest_cache/",
                                                                         "!! __pycache__/",
                                                                         "!! tests/__pycache__/",
                                                                         "!! .hypothesis/"})
    assert not new, f"the tests left these in the checkout: {new}"


def smoke_argv(tmp: Path, name: str = "run", *extra: str) -> list[str]:
    """A smoke run without preview grids, which cost more than its steps, unless extra asks for them
    (smoke_run and prompt_run do: test_train and test_prompts check their grids)."""
    return ["--preset=smoke", f"--data_dir={SMALL_DATA}", f"--out_dir={tmp}", f"--run_name={name}",
            "--num_samples=0", *extra]


def finished_run(factory, name: str, *extra: str) -> Path:
    import train
    out = factory.mktemp(name)
    assert train.main(smoke_argv(out, name, *extra)) == 0
    return out / name


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A finished smoke run (trained on the small data) shared by several tests."""
    return finished_run(tmp_path_factory, "run", "--num_samples=4")


@pytest.fixture(scope="session")
def cond_run(tmp_path_factory) -> Path:
    """A finished class-conditional RGBA smoke run."""
    return finished_run(tmp_path_factory, "c", "--condition=class", "--channels=4", "--max_steps=2",
                        "--sample_every=0")


@pytest.fixture(scope="session")
def prompt_run(tmp_path_factory) -> Path:
    """A finished smoke run conditioned on captions (cross-attention and the pooled vector)."""
    return finished_run(tmp_path_factory, "p", "--condition=text", "--channels=4", "--max_steps=2",
                        "--sample_every=0", "--num_samples=4")


@pytest.fixture
def tiny_cfg():
    return preset("smoke", data_dir=str(SMALL_DATA))


def sprites_of(m, num_images: int, classes: str = "", seed: int = 0, sampler: str = SAMPLER,
               steps: int = 0, guidance: float = GUIDANCE, palette: str = "data", prompts=(),
               negative: str = "", start=None, tileable: bool = False):
    """(images, raw, rows) as generate.py makes them from --class / --prompt."""
    from sprites import SpriteRequest, generate
    rows, wanted = m.condition.request(classes, tuple(prompts), num_images)
    images, raw = generate(m, SpriteRequest(wanted, seed, sampler, steps, guidance, palette, negative,
                                            start, tileable))
    return images, raw, rows


def spec_of(cfg) -> tuple:
    """(data_dir, model spec) of a Config: load_folder's arguments."""
    return cfg.run.data_dir, cfg.model


# ----------------------------------------------------------------------------- characters

COLOURS = {"body/male/light.png": (230, 190, 160), "body/female/light.png": (220, 180, 150),
           "hair/male/plain/black.png": (20, 20, 20), "hair/female/bunches/blonde.png": (240, 220, 90),
           "torso/shirts/longsleeve/male/white_longsleeve.png": (250, 250, 250),
           "torso/tunics/female/teal_tunic.png": (0, 128, 128),
           "legs/pants/male/teal_pants_male.png": (0, 140, 140),
           "legs/pants/female/red_pants_female.png": (200, 0, 0),
           "feet/shoes/male/brown_shoes_male.png": (120, 70, 20),
           "feet/shoes/female/brown_shoes_female.png": (110, 60, 20)}
PARTS = {"body": (24, 40, 12, 60), "hair": (24, 40, 10, 18), "torso": (24, 40, 28, 42),
         "legs": (26, 38, 42, 56), "feet": (26, 38, 56, 62)}


def synthetic_lpc(root: Path) -> Path:
    """A tiny LPC folder: a box per layer whose place moves with the direction and the walk frame."""
    from PIL import Image
    from characters import FRAME, SHEET, WALK_FRAMES, WALK_ROW
    for rel, colour in COLOURS.items():
        x0, x1, y0, y1 = PARTS[rel.split("/")[0]]
        sheet = np.zeros((SHEET[1], SHEET[0], 4), np.uint8)
        for r in range(4):
            for f in range(WALK_FRAMES):
                dx = (r - 1.5) * 2 + (f % 3) - 1
                y, x = (WALK_ROW + r) * FRAME, f * FRAME + int(dx)
                sheet[y + y0:y + y1, x + x0:x + x1] = (*colour, 255)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(sheet, "RGBA").save(root / rel)
    return root


@pytest.fixture(scope="session")
def tile_run(tmp_path_factory):
    """A smoke RGB class model of two terrains (a few floor and water tiles)."""
    data = tmp_path_factory.mktemp("terrain")
    for cls in ("floor", "water"):
        (data / cls).mkdir()
        for f in sorted((ROOT / "data" / "dcss_terrain" / cls).glob("*.png"))[:4]:
            shutil.copy(f, data / cls / f.name)
    return finished_run(tmp_path_factory, "tiles", "--condition=class", f"--data_dir={data}",
                        "--max_steps=2", "--sample_every=0")


@pytest.fixture(scope="session")
def lpc(tmp_path_factory) -> Path:
    return synthetic_lpc(tmp_path_factory.mktemp("lpc"))


@pytest.fixture(scope="session")
def char_run(lpc, tmp_path_factory) -> Path:
    import train
    out = tmp_path_factory.mktemp("chars")
    argv = ["--preset=character", f"--data_dir={lpc}", f"--out_dir={out}", "--run_name=c",
            "--characters=3", "--block_out_channels=16,32,32",
            "--down_block_types=DownBlock2D,DownBlock2D,AttnDownBlock2D",  # attention at 16x16: fast
            "--norm_num_groups=8", "--attention_head_dim=8", "--batch_size=4", "--max_steps=2",
            "--num_samples=2", "--mixed_precision=no"]
    assert train.main(argv) == 0
    return out / "c"
