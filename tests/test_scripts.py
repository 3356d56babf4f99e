"""The scripts as a user runs them: subprocesses, real files, one-line errors."""
import importlib
import os
import subprocess
import sys

import pytest
from PIL import Image

from conftest import ROOT


def run(*args, cwd=ROOT, ok=True):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=300)
    if ok:
        assert p.returncode == 0, p.stderr[-2000:]
    return p


def test_train_cli_smoke_end_to_end(tmp_path):
    p = run(ROOT / "train.py", "--preset=smoke", f"--out_dir={tmp_path}", "--run_name=cli")
    assert "done: 6 steps" in p.stderr + p.stdout
    assert (tmp_path / "cli" / "model" / "unet" / "diffusion_pytorch_model.safetensors").exists()
    assert (tmp_path / "cli" / "loss.png").exists()


def test_generate_writes_grid_and_singles(smoke_run, tmp_path):
    out = tmp_path / "grid.png"
    run(ROOT / "generate.py", f"--model={smoke_run}", "--num_images=3", "--steps=3",
        "--scale=2", f"--out={out}")
    grid = Image.open(out)
    assert grid.size == (2 * (2 * 33 + 1), 2 * (2 * 33 + 1))  # 2x2 grid, 1px gaps, x2 nearest
    singles = sorted((tmp_path / "grid").glob("*.png"))
    assert len(singles) == 3 and Image.open(singles[0]).size == (32, 32)


def test_generate_uses_latest_run_by_default(smoke_run, tmp_path):
    p = run(ROOT / "generate.py", f"--out_dir={smoke_run.parent}", "--num_images=1", "--steps=2",
            f"--out={tmp_path / 'g.png'}")
    assert str(smoke_run) in p.stdout and (tmp_path / "g.png").exists()


def test_visualize_writes_panels(smoke_run, tmp_path):
    p = run(ROOT / "visualize.py", f"--model={smoke_run}", "--t=300", "--index=3",
            f"--out={tmp_path / 'v.png'}", f"--strip_out={tmp_path / 's.png'}")
    assert "predicted-noise MSE" in p.stdout
    assert Image.open(tmp_path / "v.png").width > 500 and (tmp_path / "s.png").exists()


def test_visualize_untrained_says_so(tmp_path):
    p = run(ROOT / "visualize.py", "--untrained", f"--out={tmp_path / 'v.png'}",
            f"--strip_out={tmp_path / 's.png'}")
    assert "(untrained model)" in p.stdout


@pytest.mark.parametrize("script, args, message", [
    ("train", ["--lr=-1"], "lr must be positive"),
    ("train", ["--preset=smoke", "--data_dir=/no/such/folder"], "does not exist"),
    ("train", ["--resume", "--out_dir=/no/runs"], "nothing to resume"),
    ("generate", ["--model=/no/such/run"], "does not exist"),
    ("generate", ["--sampler=euler"], "sampler must be one of"),
    ("generate", ["--num_images=0"], "num_images"),
    ("visualize", ["--model=/tmp"], "is not a run or model folder"),
    ("visualize", ["--untrained", "--t=5000"], "timesteps must be in 0..999"),
])
def test_bad_input_is_one_sentence(script, args, message, capsys):
    module = importlib.import_module(script)
    assert module.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_error_has_no_traceback():
    p = run(ROOT / "train.py", "--preset=smoke", "--image_size=31", "--out_dir=/no/runs", ok=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip() == "error: image_size 31 is not divisible by 2, the UNet's downsampling factor"
