"""Shared fixtures: offline, small, one smoke run per session reused by the script tests."""
import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may touch a hub
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
    return ["--preset=smoke", f"--data_dir={SMALL_DATA}", f"--out_dir={tmp}", f"--run_name={name}",
            *extra]


def finished_run(factory, name: str, *extra: str) -> Path:
    import train
    out = factory.mktemp(name)
    assert train.main(smoke_argv(out, name, *extra)) == 0
    return out / name


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A finished smoke run (trained on the small data) shared by several tests."""
    return finished_run(tmp_path_factory, "run")


@pytest.fixture(scope="session")
def cond_run(tmp_path_factory) -> Path:
    """A finished class-conditional RGBA smoke run."""
    return finished_run(tmp_path_factory, "c", "--condition=class", "--channels=4", "--max_steps=2",
                        "--sample_every=0")


@pytest.fixture(scope="session")
def prompt_run(tmp_path_factory) -> Path:
    """A finished smoke run conditioned on captions (cross-attention and the pooled vector)."""
    return finished_run(tmp_path_factory, "p", "--condition=text", "--channels=4", "--max_steps=2",
                        "--sample_every=0")


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
