"""The scripts as a user runs them: --help, every documented command, one-line errors, real files."""
import dataclasses
import importlib
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import config
from conftest import ROOT, SMALL_DATA

SCRIPTS = ["train", "generate", "evaluate", "visualize", "dataset", "palette", "bench", "recipes", "app"]
# each script's option dataclasses, besides Config for the scripts that take a training config
OPTIONS = {"train": "TrainOptions", "generate": "GenerateOptions", "evaluate": "EvalOptions",
           "visualize": "VisualizeOptions", "palette": "PaletteOptions", "bench": "BenchOptions",
           "recipes": "RecipeOptions", "app": "AppOptions"}
TAKES_CONFIG = {"train", "dataset", "palette", "bench"}


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_names_every_option_with_its_default(name, capsys):
    module = importlib.import_module(name)
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python {name}.py") and "Usage:" in out  # the usage line, then the docstring
    classes = [getattr(module, OPTIONS[name])] if name in OPTIONS else []
    fields = [f for c in classes + [config.Config] * (name in TAKES_CONFIG) for f in dataclasses.fields(c)]
    for f in fields:
        flag = f.metadata["flag"] or f.name
        assert re.search(rf"--{flag} \[?[A-Z]", out), f"--{flag} missing from {name}.py --help"
        assert f.metadata["help"].split()[0] in out
    assert len(re.findall(r"\(default:\s", out)) >= len(fields)
    if name in TAKES_CONFIG:
        assert all(f"  {p}: " in out for p in config.PRESETS)  # each preset with what it is for


def documented_commands() -> list[tuple[str, list[str]]]:
    """(script, argv) of every `python X.py ...` line in the README's quick start and in each script's
    usage docstring, in that order."""
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    blocks = [quick] + [importlib.import_module(s).__doc__.split("Usage:", 1)[1].split("\n\n", 1)[0]
                        for s in ["dataset", "palette", "train", "generate", "visualize", "evaluate",
                                  "bench", "recipes"]]
    commands = []
    for block in blocks:
        for line in block.splitlines():
            words = shlex.split(line.split("#", 1)[0])
            if words[:1] == ["python"] and words[1].endswith(".py"):
                commands.append((words[1][:-3], words[2:]))
    return commands


SMOKE_MODEL = ["--block_out_channels=16,32", "--down_block_types=DownBlock2D,AttnDownBlock2D",
               "--norm_num_groups=8", "--layers_per_block=1", "--attention_head_dim=8"]
MY_SPRITES = ["--data_dir=path/to/my/sprites"]
SMOKE = {  # appended to each documented command: the same command at smoke size, on a few sprites
    "train": SMOKE_MODEL + MY_SPRITES + ["--max_steps=2", "--batch_size=4", "--num_samples=2",
                                         "--sample_every=0"],
    "generate": ["--num_images=2", "--steps=2"],
    "evaluate": ["--num_samples=6", "--per_class=1", "--steps=2"],
    "bench": SMOKE_MODEL + MY_SPRITES + ["--quick", "--timed_steps=1", "--batch_size=2",
                                         "--samplers=dpm"],
    "recipes": ["--minutes=1e-7", "--num_samples=4"],
}


def test_every_documented_command_runs(tmp_path, monkeypatch):
    """The README's quick start and every usage line of every script, in a fresh folder with a user's
    folder of 16x16 sprites at path/to/my/sprites, each at smoke size."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for cls in ("potion", "book"):
        (tmp_path / "path/to/my/sprites" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (16, 16, 4), np.uint8), "RGBA").save(
                tmp_path / "path/to/my/sprites" / cls / f"{i}.png")
    (tmp_path / "prompts.txt").write_text("a red potion\na blue book\n")
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    Image.fromarray(mask, "L").save(tmp_path / "mask.png")
    # Compiling takes minutes on 2 cores; test_speed_paths traces --compile with dynamo.
    monkeypatch.setattr(torch, "compile", lambda model, **kw: model)
    threads = torch.get_num_threads()
    commands = documented_commands()
    # app.py serves until stopped: tests/test_app.py runs it
    assert {s for s, _ in commands} == set(SCRIPTS) - {"app"} and len(commands) >= 30
    try:
        for script, argv in commands:
            extra = ["--max_steps=3"] if "--resume" in argv else SMOKE.get(script, [])
            code = importlib.import_module(script).main(argv + extra)
            assert code == 0, f"python {script}.py {' '.join(argv)} exited {code}"
    finally:
        torch.set_num_threads(threads)
    for out in ("samples/generated_images.png", "samples/visualization.png", "my.hex", "bench.json",
                "runs/mine/model/palette.hex", "samples/recipes.png"):
        assert (tmp_path / out).is_file(), out
    bench = json.loads((tmp_path / "bench.json").read_text())  # the conditional cpu preset, measured
    assert [r["loop"] for r in bench["training"]] == ["seed (PIL + DataLoader, eager fp32)", "repo: base",
                                                      "repo: bf16", "repo: compile"]
    assert bench["peak_gflops"] > 0 and bench["gflop_per_step"] > 0 and bench["training"][0]["vs_seed"] == 1
    assert all(r["images_per_s"] > 0 and r["peak_fraction"] > 0 for r in bench["training"])
    assert [r["sampler"] for r in bench["sampling"]] == ["dpm-10"]
    assert config.load(tmp_path / "runs/mine/config.json").image_size == 16  # the sprites' own size


def test_train_cli_smoke_end_to_end(tmp_path):
    """The one subprocess: the command line a user types, to the exported model."""
    p = subprocess.run([sys.executable, str(ROOT / "train.py"), "--preset=smoke",
                        f"--data_dir={SMALL_DATA}", f"--out_dir={tmp_path}", "--run_name=cli"],
                       env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "done: 6 steps" in p.stdout
    assert (tmp_path / "cli" / "model" / "unet" / "diffusion_pytorch_model.safetensors").exists()
    assert (tmp_path / "cli" / "loss.png").exists()


def test_generate_writes_grid_and_singles(smoke_run, tmp_path):
    import generate
    out = tmp_path / "grid.png"
    assert generate.main([f"--model={smoke_run}", "--num_images=3", "--steps=3", "--scale=2",
                          f"--out={out}"]) == 0
    grid = Image.open(out)
    assert grid.size == (2 * (2 * 33 + 1), 2 * (2 * 33 + 1))  # 2x2 grid, 1px gaps, x2 nearest
    singles = sorted((tmp_path / "grid").glob("*.png"))
    assert len(singles) == 3 and Image.open(singles[0]).size == (32, 32)


def test_a_folder_of_runs_means_its_latest(smoke_run, capsys):
    import generate
    from model import load_model
    assert load_model(smoke_run.parent).source == smoke_run / "model"
    assert generate.main([f"--model={smoke_run.parent}", "--num_images=1", "--steps=2",
                          f"--out={smoke_run / 'g.png'}"]) == 0
    assert str(smoke_run) in capsys.readouterr().out


def test_visualize_writes_panels(smoke_run, tmp_path, capsys):
    import visualize
    assert visualize.main([f"--model={smoke_run}", "--t=300", "--index=3", f"--out={tmp_path / 'v.png'}",
                           f"--strip_out={tmp_path / 's.png'}"]) == 0
    assert "predicted-noise MSE" in capsys.readouterr().out
    assert Image.open(tmp_path / "v.png").width > 500 and (tmp_path / "s.png").exists()
    assert visualize.main(["--untrained", f"--out={tmp_path / 'u.png'}",
                           f"--strip_out={tmp_path / 's.png'}"]) == 0
    assert "(untrained model)" in capsys.readouterr().out


@pytest.mark.parametrize("script, args, message", [
    ("train", ["--lr=-1"], "lr must be positive"),
    ("train", ["--preset=smoke", "--data_dir=/no/such/folder"], "does not exist"),
    ("train", ["--resume", "--out_dir=/no/runs"], "nothing to resume"),
    ("train", ["--preset=smoke", "--image_size=31"],
     "image_size 31 is not divisible by 2, the UNet's downsampling factor"),
    ("generate", ["--model=/no/such/run"], "does not exist"),
    ("generate", ["--sampler=euler"], "sampler must be one of"),
    ("generate", ["--num_images=0"], "num_images"),
    ("generate", ["--palette=/no/such.hex"], "palette file /no/such.hex does not exist"),
    ("evaluate", ["--sampler_sweep=dpm-ten"], "is not SAMPLER or SAMPLER-STEPS"),
    ("visualize", ["--model=/tmp"], "is not a run or model folder"),
    ("visualize", ["--untrained", "--t=5000"], "timesteps must be in 0..999"),
    ("bench", ["--variants=turbo", "--quick"], "unknown variant 'turbo'"),
    ("recipes", ["--candidates=nope"], "pick from"),
])
def test_bad_input_is_one_sentence(script, args, message, capsys):
    module = importlib.import_module(script)
    assert module.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and err.startswith("error: ")
