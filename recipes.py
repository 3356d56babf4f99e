"""Choose the training recipe by measurement: FD-Lite0 against minutes of training, side by side.

Each candidate is a preset plus config overrides (values only, no code forks). It trains with
train.py's own loop under a time budget (--max_minutes), stops at each mark of --minutes and is scored
there: samples of its EMA weights (the generate.py defaults: DPM-Solver++ 10 steps, guidance 3 for
conditional models, raw colours) against its training data, FD-Lite0 and KID in evaluate.py's
features, beside the floor (the data's mirror images at the same count). A later call with higher
marks resumes each run exactly where it stopped, so successive halving is two calls. Rows go to one
JSON-lines file: candidates may train in separate processes (on 2 cores: two at once, one thread each).

Usage:
    python recipes.py --list                                          # the candidates
    python recipes.py --candidates=cpu-start,cpu-v --minutes=3,6 --threads=1   # train and score
    python recipes.py --candidates=cpu-v --minutes=12,18 --threads=1     # carry on to later marks
    python recipes.py --report                # markdown table + samples/recipes.png (FD vs minutes)
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import config as config_mod
from config import OUTPUTS, UserError, option, parse_args, preset, script

# The cpu preset as it was before this study; each candidate changes one or two of its values.
# The winner, cpu-v-lr, is the cpu preset now (README: choosing the recipe).
START = dict(prediction_type="epsilon", lr=4e-4)

# name: (preset, overrides, what it tests)
CANDIDATES: dict[str, tuple[str, dict, str]] = {
    "seed": ("seed", {}, "the reference setup: 14.7M UNet, Adam 1e-4, RGB, unconditional"),
    "cpu-start": ("cpu", START, "2.6M UNet, epsilon target, Adam 4e-4 + warm-up, min-SNR, EMA, "
                                "RGBA, class-conditional"),
    "cpu-v": ("cpu", {**START, "prediction_type": "v_prediction"}, "cpu-start, predicting v"),
    "cpu-lr": ("cpu", {**START, "lr": 8e-4}, "cpu-start, twice the learning rate"),
    "cpu-v-lr": ("cpu", {}, "cpu-start, predicting v, twice the learning rate (the cpu preset now)"),
    "cpu-cosine": ("cpu", {**START, "beta_schedule": "squaredcos_cap_v2"},
                   "cpu-start, cosine noise schedule"),
    "cpu-v-cosine": ("cpu", {**START, "prediction_type": "v_prediction",
                             "beta_schedule": "squaredcos_cap_v2"},
                     "cpu-start, predicting v, cosine noise schedule"),
    "cpu-rgb": ("cpu", {**START, "channels": 3}, "cpu-start, RGB on black instead of RGBA"),
    "cpu-uncond": ("cpu", {**START, "condition": "none"}, "cpu-start, unconditional"),
    # Levers of the second study, each one change to the cpu preset (cpu-v-lr).
    "cpu-head32": ("cpu", {"attention_head_dim": 32}, "cpu, attention heads of 32 channels"),
    "cpu-deep": ("cpu", {"layers_per_block": 2}, "cpu, 2 layers per block"),
    "cpu-wide": ("cpu", {"block_out_channels": (64, 128, 128)}, "cpu, wider (64,128,128)"),
    "cpu-b32": ("cpu", {"batch_size": 32}, "cpu, batch 32"),
    "cpu-v-lr-cosine": ("cpu", {"beta_schedule": "squaredcos_cap_v2"}, "cpu, cosine noise schedule"),
    "cpu-nosnr": ("cpu", {"min_snr_gamma": 0.0}, "cpu, no min-SNR weighting"),
    # How prompts condition the UNet, at equal training time; and classes on the same data.
    "prompt-cross": ("prompt", {"text_inputs": "cross"}, "prompt, cross-attention on the token "
                                                         "embeddings"),
    "prompt-pooled": ("prompt", {"text_inputs": "pooled"}, "prompt, the sentence vector added to the "
                                                           "time embedding"),
    "prompt-both": ("prompt", {"text_inputs": "both"}, "prompt, cross-attention and the sentence vector"),
    "prompt-classes": ("prompt", {"condition": "class"},
                       "prompt's data and UNet, conditioned on the class folders instead"),
    # Backbones (the seed's to-dos) against the cpu preset's UNet: a transformer on patches of 2
    # pixels, and the same UNet on the latents of an autoencoder trained first (train.py --preset=vae
    # --run_name=vae: runs/vae).
    "cpu-dit": ("cpu", {"backbone": "dit", "attention_head_dim": 32},
                "cpu, a DiT (4 blocks x 128 channels, patches of 2x2) instead of the UNet"),
    "cpu-latent": ("cpu", {"latent": "runs/vae"}, "cpu, the UNet on 8x8x4 latents of runs/vae"),
    # Levers for the prompt model at equal CPU minutes, scored by the held-out test (--held_out).
    "prompt": ("prompt", {"mixed_precision": "no", "prediction_type": "v_prediction"},
               "the prompt preset as it was: fp32, predicting v"),
    "prompt-bf16": ("prompt", {"mixed_precision": "bf16", "prediction_type": "v_prediction"},
                    "prompt, bf16 autocast"),
    "prompt-flow": ("prompt", {"mixed_precision": "bf16"},
                    "prompt-bf16, rectified flow with logit-normal times (the prompt preset now)"),
    "prompt-batch32": ("prompt", {"mixed_precision": "bf16", "batch_size": 32, "lr": 8e-4 * 2 ** 0.5},
                       "prompt-flow at batch 32, the learning rate x sqrt(2)"),
    "prompt-wide": ("prompt", {"mixed_precision": "bf16", "block_out_channels": (64, 128, 128)},
                    "prompt-flow, wider (64,128,128)"),
    "prompt-repa": ("prompt", {"mixed_precision": "bf16", "repa": 0.5},
                    "prompt-flow with REPA towards EfficientNet-Lite1 (weight 0.5)"),
    "prompt-apart": ("prompt", {"mixed_precision": "bf16", "colours_apart": True},
                     "prompt-flow, the prompt's colour words encoded apart from the rest"),
}


@dataclass
class RecipeOptions:
    candidates: tuple[str, ...] = option((), "candidates to train and score (see --list)")
    minutes: tuple[float, ...] = option((3.0, 6.0), "marks: minutes of training at which to score")
    threads: int = option(1, "CPU threads of each candidate's training")
    num_samples: int = option(128, "sprites sampled to score each mark")
    seed: int = option(0, "seed of the training runs and of the sampling")
    out_dir: str = option("runs/recipes", "the candidates' runs and results.jsonl")
    held_out: bool = option(False, "also score each mark by the held-out test (evaluate.py --held_out) "
                                   "of the run's held-out list, num_samples sprites a part")
    report: bool = option(False, "print the markdown table of the results and draw the curve")
    list: bool = option(False, "list the candidates")
    plot: str = option(f"{OUTPUTS}/recipes.png", "the curve drawn by --report")


def results_path(opts: RecipeOptions) -> Path:
    return Path(opts.out_dir) / "results.jsonl"


def read_rows(opts: RecipeOptions) -> list[dict]:
    path = results_path(opts)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def train_to(name: str, minutes: float, opts: RecipeOptions) -> Path:
    """Train (or resume) the candidate's run until `minutes` of training; returns its run folder."""
    from model import load_checkpoint
    from trainer import train
    base, overrides, _ = CANDIDATES[name]
    folder = Path(opts.out_dir) / name
    run_keys = dict(run_name=name, out_dir=opts.out_dir, threads=opts.threads, seed=opts.seed,
                    max_steps=10**7, max_minutes=minutes, num_samples=0, log_every=1)
    cfg = preset(base, **overrides, **run_keys)
    resume = (folder / "checkpoint.pt").exists()
    if resume and load_checkpoint(folder / "checkpoint.pt")["seconds"] >= minutes * 60:
        return folder  # an earlier mark's run already trained past this one (its export is current)
    if resume:  # the saved config (image size resolved), with this mark's budget
        saved = config_mod.load(folder / "config.json")
        cfg = dataclasses.replace(saved, run=dataclasses.replace(saved.run, max_minutes=minutes,
                                                                 threads=opts.threads))
    if train(cfg, folder, resume) == folder:  # Ctrl-C / SIGTERM: no export
        raise UserError(f"{name} was interrupted before {minutes:g} min; run the same command "
                        "again to resume it")
    return folder


def measure(name: str, folder: Path, opts: RecipeOptions, net, known: dict) -> dict:
    """FD-Lite0 and KID of the run's exported EMA weights (sampled as generate.py samples them, raw
    colours), and the floor at the same sample count. `known`: the data's features and the floor's
    by data folder and size, computed once for every candidate on the same data."""
    from dataset import load_folder
    from metrics import features, floor_images, frechet, kid
    from model import META_FILE, load_checkpoint, load_model, vae_folder
    from sprites import SpriteRequest, generate
    ckpt = load_checkpoint(folder / "checkpoint.pt")
    m = load_model(folder / "model")
    key = (m.data_dir, m.spec.image_size, m.spec.channels)
    if key not in known:
        data = load_folder(m.data_dir, m.spec, log=lambda _: None).images
        known[key] = features(data, net), features(floor_images(data, opts.num_samples), net)
    f_data, f_ref = known[key]
    start = time.perf_counter()
    samples, _ = generate(m, SpriteRequest(m.condition.defaults(opts.num_samples), opts.seed, palette="none"))
    seconds = time.perf_counter() - start
    f_s = features(samples, net)
    ceiling = json.loads((vae_folder(m.spec.latent).parent / META_FILE).read_text()).get(
        "reconstruction", {}) if m.spec.latent else {}
    held = held_out_scores(m, config_mod.load(folder / "config.json").run.held_out, opts) \
        if opts.held_out else {}
    return {"candidate": name, "minutes": round(ckpt["seconds"] / 60, 4), "step": ckpt["step"], **held,
            "ceiling_fd": ceiling.get("fd_lite0"), "ceiling_exact": ceiling.get("exact"),
            "params_m": round(sum(t.numel() for t in ckpt["ema"].values()) / 1e6, 2),
            "fd_lite0": frechet(f_s, f_data), "kid": kid(f_s, f_data)[0],
            "floor_fd": frechet(f_ref, f_data), "num_samples": opts.num_samples,
            "sample_seconds": round(seconds, 1), "threads": opts.threads}


HELD_OUT = {"class": ("captions", "class_accuracy"), "ceiling": ("captions", "class_accuracy_of_the_icons"),
            "kind": ("captions", "kind_accuracy"), "kind_ceiling": ("captions", "kind_accuracy_of_the_icons"),
            "unseen_kind": ("unseen", "kind_accuracy"),
            "colour": ("captions", "colour_accuracy"), "fd": ("captions", "fd_lite0"),
            "floor": ("captions", "floor_fd"), "unseen_class": ("unseen", "class_accuracy"),
            "unseen_colour": ("unseen", "colour_accuracy"), "names_fd": ("class_names", "fd_lite0"),
            "names_recall": ("class_names", "recall")}


def held_out_scores(m, listed: str, opts: RecipeOptions) -> dict:
    """The held-out test's figures (tables.held_out_test, sampled with generate.py's defaults), with
    at most num_samples held-out images, prompts and yardstick icons."""
    import tables
    from config import SamplingOptions
    r = tables.held_out_test(m, SamplingOptions(seed=opts.seed), listed, "data/dcss_items", opts.num_samples)
    return {"held_out": {k: r[a][b] for k, (a, b) in HELD_OUT.items()} | {"diversity": r["diversity"]}}


def run(opts: RecipeOptions) -> None:
    import torch

    from metrics import lite0
    torch.set_num_threads(opts.threads)
    net, known = lite0(), {}
    for name in opts.candidates:
        for mark in sorted(opts.minutes):
            done = [r for r in read_rows(opts) if r["candidate"] == name and r["mark"] >= mark]
            if done:
                continue
            folder = train_to(name, mark, opts)
            row = {"mark": mark, **measure(name, folder, opts, net, known)}
            print(f"{name} at {row['minutes']} min (step {row['step']}): FD-Lite0 "
                  f"{row['fd_lite0']:.0f} (floor {row['floor_fd']:.0f})")
            with results_path(opts).open("a") as f:
                f.write(json.dumps(row) + "\n")


def report(opts: RecipeOptions) -> str:
    """A markdown table of the marks two or more candidates reached (best first at the latest such
    mark), the later marks of a candidate trained on alone, and the curve."""
    rows = read_rows(opts)
    if not rows:
        raise UserError(f"no results in {results_path(opts)}: run with --candidates first")
    names = list(dict.fromkeys(r["candidate"] for r in rows))
    by = {n: sorted((r for r in rows if r["candidate"] == n), key=lambda r: r["mark"]) for n in names}
    at = {(r["candidate"], r["mark"]): r for r in rows}
    count = {m: sum(1 for n in names if (n, m) in at) for m in {r["mark"] for r in rows}}
    marks = sorted(m for m, c in count.items() if c > 1)
    if not marks:
        raise UserError("no mark was reached by two candidates: nothing to compare")

    def rank(n: str) -> tuple:
        reached = [m for m in marks if (n, m) in at]
        return (-reached[-1], at[n, reached[-1]]["fd_lite0"]) if reached else (0, float("inf"))

    head = ["candidate", "what it tests", "params", "steps/min"] + [f"FD @ {m:g} min" for m in marks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in sorted(names, key=rank):
        last = [at[n, m] for m in marks if (n, m) in at][-1]
        cells = [f"`{n}`", CANDIDATES[n][2] if n in CANDIDATES else "(dropped since)", f"{last['params_m']}M",
                 f"{last['step'] / last['minutes']:.0f}" if last["minutes"] else "-"]
        cells += [f"{at[n, m]['fd_lite0']:.0f}" if (n, m) in at else "" for m in marks]
        lines.append("| " + " | ".join(cells) + " |")
    floor = rows[0]["floor_fd"]
    lines.append(f"\nFloor (the data's mirror images, {rows[0]['num_samples']} icons): {floor:.0f}.")
    for n in names:
        if by[n][-1].get("ceiling_fd") is not None:
            lines.append(f"- `{n}`: its autoencoder's reconstructions of the data score FD-Lite0 "
                         f"{by[n][-1]['ceiling_fd']:.0f}, {by[n][-1]['ceiling_exact']:.1%} of pixels exact "
                         "after palette snapping: the ceiling of a latent model.")
    for r in sorted((r for r in rows if count[r["mark"]] == 1), key=lambda r: r["mark"]):
        lines.append(f"- `{r['candidate']}` alone at {r['mark']:g} min ({r['threads']} threads "
                     f"since the previous mark): step {r['step']}, FD-Lite0 {r['fd_lite0']:.0f}")
    held = [r for r in rows if "held_out" in r]
    if held:
        lines += ["", "The held-out test at each mark (evaluate.py --held_out's figures):", "",
                  "| candidate | mark | step | class (ceiling) | colour | FD-Lite0 / floor | unseen: class "
                  "| unseen: colour | diversity | class names: FD-Lite0 | recall |", "|" + "---|" * 11]
        for r in sorted(held, key=lambda r: (r["mark"], r["held_out"]["fd"])):
            h = r["held_out"]
            lines.append(f"| `{r['candidate']}` | {r['mark']:g} | {r['step']} | {h['class']:.0%} "
                         f"({h['ceiling']:.0%}) | {h['colour']:.0%} | {h['fd']:.0f} / {h['floor']:.0f} "
                         f"({h['fd'] / h['floor']:.2f}x) | {h['unseen_class']:.0%} | {h['unseen_colour']:.0%} "
                         f"| {h['diversity']:.2f} | {h['names_fd']:.0f} | {h['names_recall']:.2f} |")
    plot(by, floor, Path(opts.plot))
    return "\n".join(lines)


def plot(by: dict[str, list[dict]], floor: float, path: Path) -> None:
    """FD-Lite0 against minutes of training; hollow markers: marks reached with more than 1 thread."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, rs in by.items():
        line, = ax.plot([r["minutes"] for r in rs], [r["fd_lite0"] for r in rs], label=name)
        for r in rs:
            ax.plot(r["minutes"], r["fd_lite0"], "o", color=line.get_color(),
                    mfc="white" if r["threads"] > 1 else line.get_color())
    ax.axhline(floor, color="grey", ls="--", lw=1, label="floor (mirror images)")
    ax.set(xlabel="minutes of training (filled: 1 thread, hollow: 2 threads)",
           ylabel="FD-Lite0 (lower is better)", title="Recipes at equal training time")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


@script
def main(argv: list[str]) -> None:
    opts = RecipeOptions()
    parse_args(argv, __doc__, opts, config=False)
    if opts.list:
        for name, (base, overrides, what) in CANDIDATES.items():
            print(f"{name:16s} --preset={base} {' '.join(f'--{k}={v}' for k, v in overrides.items())}"
                  f"   # {what}")
    elif opts.report:
        print(report(opts))
        print(f"wrote {opts.plot}")
    else:
        unknown = [c for c in opts.candidates if c not in CANDIDATES]
        if unknown or not opts.candidates:
            raise UserError(f"--candidates: pick from {', '.join(CANDIDATES)} (got {', '.join(unknown)})")
        whole = [c for c in opts.candidates if not preset(*CANDIDATES[c][:1], **CANDIDATES[c][1]).run.held_out]
        if opts.held_out and whole:
            raise UserError(f"--held_out: {', '.join(whole)} train on every image (no held_out list)")
        Path(opts.out_dir).mkdir(parents=True, exist_ok=True)
        run(opts)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
