"""The scripts as a user runs them: --help, every documented command, one-line errors, real files."""
import dataclasses
import importlib
import json
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import config
from conftest import ROOT

SCRIPTS = ["train", "generate", "evaluate", "visualize", "dataset", "palette", "bench", "recipes", "app",
           "tileset", "animate", "mcp_server"]
# each script's option dataclasses, besides Config for the scripts that take a training config
OPTIONS = {"train": "TrainOptions", "generate": "GenerateOptions", "evaluate": "EvalOptions",
           "visualize": "VisualizeOptions", "palette": "PaletteOptions", "bench": "BenchOptions",
           "recipes": "RecipeOptions", "app": "AppOptions", "tileset": "TilesetOptions",
           "animate": "AnimateOptions", "mcp_server": "ServerOptions", "dataset": "LoaderOptions"}
TAKES_CONFIG = {"train", "bench"}


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_names_every_option_with_its_default(name, capsys):
    module = importlib.import_module(name)
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python {name}.py") and "Usage:" in out  # the usage line, then the docstring
    classes = [getattr(module, OPTIONS[name])] if name in OPTIONS else []
    specs = [config.ModelSpec, config.RunSpec] * (name in TAKES_CONFIG)
    fields = [f for c in classes + specs for f in dataclasses.fields(c)]
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
    "train": SMOKE_MODEL + MY_SPRITES + ["--max_steps=2", "--batch_size=4",
                                         "--num_samples=0"],  # the grids: test_train, test_prompts
    "generate": ["--num_images=2", "--steps=1"],
    "evaluate": ["--num_samples=6", "--per_class=1", "--steps=1", "--data_dir=path/to/my/sprites"],
    "bench": SMOKE_MODEL + MY_SPRITES + ["--quick", "--timed_steps=1", "--batch_size=2",
                                         "--samplers=dpm", "--variants=base"],  # others: test_speed_paths
    "recipes": ["--minutes=1e-7", "--num_samples=2"],
}
# and where a command sweeps, the same sweep at smoke size
SWEEPS = {"--sampler_sweep": "--sampler_sweep=ddim-1,dpm-1", "--batch_sweep": "--batch_sweep=2,4"}


def fresh_clone(dest) -> None:
    """A clone of this checkout at dest, its tracked files as they are in the working tree (`git stash
    create` commits them aside without touching the checkout; HEAD when nothing is changed). A source
    tree without git (a zip download) is copied instead, less what git would ignore, and made a
    repository so that the test can ask git what changed."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    if not (ROOT / ".git").exists():
        import shutil
        shutil.copytree(ROOT, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            "runs", "outputs", "__pycache__", ".pytest_cache", ".hypothesis", "*.pyc"))
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "copy"]):
            subprocess.run(git + args, cwd=dest, check=True, capture_output=True)
        return
    changed = subprocess.run(git + ["stash", "create"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
    subprocess.run(git + ["clone", "-q", "--shared", "--no-checkout", str(ROOT), str(dest)], check=True)
    subprocess.run(git + ["-C", str(dest), "checkout", "-q", changed or "HEAD"], check=True)


def test_every_documented_command_runs_and_leaves_the_clone_clean(tmp_path, monkeypatch):
    """The README's quick start and every usage line of every script, in a fresh clone of the repo
    with a user's folder of 16x16 sprites at path/to/my/sprites, each at smoke size. No committed
    file changes: outputs go to folders git ignores."""
    fresh_clone(tmp_path)
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
    # app.py and mcp_server.py serve until stopped: tests/test_app.py and test_mcp.py run them;
    # tileset.py's and animate.py's lines need the shipped terrain and character models at full size:
    # tests/test_tileset.py and test_characters.py run them
    assert {s for s, _ in commands} == set(SCRIPTS) - {"app", "tileset", "animate", "mcp_server"}
    assert len(commands) >= 30
    try:
        for script, argv in commands:
            extra = ["--max_steps=3"] if "--resume" in argv else SMOKE.get(script, [])
            extra = extra + [v for k, v in SWEEPS.items() if any(a.startswith(k + "=") for a in argv)]
            if any(a.startswith("--init=") for a in argv):  # the trained model's own network, not a smaller one
                extra = [a for a in extra if a not in SMOKE_MODEL]
            code = importlib.import_module(script).main(argv + extra)
            assert code == 0, f"python {script}.py {' '.join(argv)} exited {code}"
    finally:
        torch.set_num_threads(threads)
    for out in ("outputs/generated_images.png", "outputs/visualization.png", "my.hex", "bench.json",
                "runs/mine/model/palette.hex", "outputs/recipes.png"):
        assert (tmp_path / out).is_file(), out
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=tmp_path,
                             capture_output=True, text=True, check=True).stdout
    assert changed == "", changed
    assert "outputs/" not in subprocess.run(["git", "status", "--porcelain"], cwd=tmp_path,
                                            capture_output=True, text=True).stdout  # ignored
    bench = json.loads((tmp_path / "bench.json").read_text())  # the conditional cpu preset, measured
    assert [r["loop"] for r in bench["training"]] == ["seed (PIL + DataLoader, eager fp32)", "repo: base"]
    assert bench["peak_gflops"] > 0 and bench["gflop_per_step"] > 0 and bench["training"][0]["vs_seed"] == 1
    assert all(r["images_per_s"] > 0 and r["peak_fraction"] > 0 for r in bench["training"])
    assert [r["sampler"] for r in bench["sampling"]] == ["dpm-10"]
    assert config.load(tmp_path / "runs/mine/config.json").model.image_size == 16  # the sprites' own size


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
    ("generate", ["--num_images=0"], "--num_images must be >= 1, got 0"),
    ("generate", ["--num_image=4"], "unknown option --num_image; did you mean --num_images?"),
    ("generate", ["--model=/no/such/run"], "model /no/such/run does not exist (--model takes a run"),
    ("generate", ["--strength=0.5"], "--strength works on a sprite: give it one with --init"),
    ("generate", ["--palette=/no/such.hex"], "palette file /no/such.hex does not exist"),
    ("evaluate", ["--sampler_sweep=dpm-ten"], "is not SAMPLER or SAMPLER-STEPS"),
    ("visualize", ["--model=/usr/share"], "is not a run or model folder"),
    ("visualize", ["--untrained", "--t=5000"], "timesteps must be in 0..999"),
    ("bench", ["--variants=turbo", "--quick"], "unknown variant 'turbo'"),
    ("recipes", ["--candidates=nope"], "pick from"),
    ("evaluate", ["--json=eval.txt"], "--json=eval.txt: name a .json file"),
    ("bench", ["--quick", f"--json={ROOT}/README.md/b.json"], "README.md is a file, not a folder"),
])
def test_bad_input_is_one_sentence(script, args, message, capsys):
    module = importlib.import_module(script)
    assert module.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and err.startswith("error: ")


@pytest.mark.parametrize("name", ["train", "generate", "evaluate", "visualize", "app", "bench", "recipes",
                                  "tileset"])
def test_help_and_option_errors_answer_before_torch_is_imported(name):
    """Options are parsed before torch is imported: a typo costs no start-up (import times, as Python
    itself lists them, not a clock that another process on the CPU can slow)."""
    for argv, code in ((["--help"], 0), (["--no_such_option=1"], 2)):
        p = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / f"{name}.py"), *argv],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == code, p.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines()
                    if line.startswith("import time:")}
        assert imported, "no -X importtime listing"
        assert not {"torch", "diffusers", "PIL.Image"} & imported, f"python {name}.py {argv[0]}"


def test_importing_a_script_imports_no_torch():
    scripts = ", ".join(set(SCRIPTS) - {"dataset", "palette"})  # those two are libraries too
    loaded = subprocess.run([sys.executable, "-c", f"import sys; import {scripts}; print(*sys.modules)"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert "torch" not in loaded and "diffusers" not in loaded


def test_no_script_imports_another_script():
    """Scripts are thin command lines over library modules (dataset.py and palette.py are libraries
    that also answer on the command line)."""
    import ast
    scripts = set(SCRIPTS) - {"dataset", "palette"}
    for path in ROOT.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
            {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not names & scripts, f"{path.name} imports {names & scripts}"
