"""Shared fixtures: offline, small, one smoke run per session reused by the script tests."""
import atexit
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

from config import preset  # noqa: E402


def _small_data() -> Path:
    """Two icons of each of the 15 shipped classes: every class, a twelfth of the decoding."""
    folder = Path(tempfile.mkdtemp(prefix="pixelart-small-"))
    atexit.register(shutil.rmtree, folder, True)
    for cls in sorted((ROOT / "data" / "dcss_items").iterdir()):
        (folder / cls.name).mkdir()
        for icon in sorted(cls.glob("*.png"))[:2]:
            shutil.copy(icon, folder / cls.name / icon.name)
    return folder


SMALL_DATA = _small_data()


def smoke_argv(tmp: Path, name: str = "run", *extra: str) -> list[str]:
    return ["--preset=smoke", f"--data_dir={SMALL_DATA}", f"--out_dir={tmp}", f"--run_name={name}",
            *extra]


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A finished smoke run (trained on the small data) shared by several tests."""
    import train
    out = tmp_path_factory.mktemp("runs")
    assert train.main(smoke_argv(out)) == 0
    return out / "run"


@pytest.fixture(scope="session")
def cond_run(tmp_path_factory) -> Path:
    """A finished class-conditional RGBA smoke run."""
    import train
    out = tmp_path_factory.mktemp("cond")
    assert train.main(smoke_argv(out, "c", "--conditional", "--channels=4", "--max_steps=2",
                                 "--sample_every=0")) == 0
    return out / "c"


@pytest.fixture
def tiny_cfg():
    return preset("smoke", data_dir=str(SMALL_DATA))
