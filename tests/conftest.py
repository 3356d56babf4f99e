"""Shared fixtures: offline, small, one smoke run per session reused by the script tests."""
import os
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may touch a hub
os.environ.setdefault("OMP_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config import preset  # noqa: E402


def smoke_argv(tmp: Path, name: str = "run", *extra: str) -> list[str]:
    return ["--preset=smoke", f"--out_dir={tmp}", f"--run_name={name}", *extra]


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A finished smoke run (trained on the shipped icons) shared by several tests."""
    import train
    out = tmp_path_factory.mktemp("runs")
    assert train.main(smoke_argv(out)) == 0
    return out / "run"


@pytest.fixture
def tiny_cfg():
    return preset("smoke")
