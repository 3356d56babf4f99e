"""Show what the model learns: clean image, the noise, the noisy image at t, and the noise the model
predicts at t; plus a strip of the forward (noising) process over several timesteps.

Usage:
    python visualize.py                               # latest run (else shipped model, else untrained)
    python visualize.py --model=runs/mine --index=12 --t=300 --seed=1
    python visualize.py --untrained                   # the panels with a freshly initialised model

Writes samples/visualization.png (the four panels) and samples/forward_process.png (the strip).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # never open a window
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from config import UserError, apply_overrides, preset, split_argv  # noqa: E402
from dataset import load_folder  # noqa: E402
from model import Loaded, build_scheduler, build_unet, load_model  # noqa: E402


@dataclass
class VisualizeOptions:
    model: str = ""  # run or model folder; default: latest run, else the shipped model
    out_dir: str = "runs"
    untrained: bool = False  # use a freshly initialised model of the seed preset
    data_dir: str = ""  # default: the model's training data
    index: int = 0  # which image of the dataset
    t: int = 500  # timestep of the noisy / predicted panels
    strip: tuple[int, ...] = (0, 50, 100, 200, 400, 600, 800, 999)
    seed: int = 0
    out: str = "samples/visualization.png"
    strip_out: str = "samples/forward_process.png"


def get_model(opts: VisualizeOptions) -> tuple[Loaded, bool]:
    """The trained model asked for, or an untrained one (flagged) when asked or when none exists."""
    if not opts.untrained:
        try:
            return load_model(opts.model or None, opts.out_dir), True
        except UserError:
            if opts.model:  # a model the user named must load; only the default falls back
                raise
            print("no trained model found: showing an untrained model")
    cfg = preset("seed")
    torch.manual_seed(opts.seed)
    return Loaded(build_unet(cfg), build_scheduler(cfg), cfg, [], Path("untrained")), False


def predicted_noise(m: Loaded, x_t: torch.Tensor, t: torch.Tensor, label: torch.Tensor | None):
    """The model's output converted to a noise estimate, whatever its prediction target."""
    with torch.no_grad():
        out = m.unet(x_t, t, class_labels=label).sample
    a = m.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    kind = m.scheduler.config.prediction_type
    if kind == "v_prediction":
        return a.sqrt() * out + (1 - a).sqrt() * x_t
    if kind == "sample":
        return (x_t - a.sqrt() * out) / (1 - a).sqrt()
    return out


def show(ax, x: torch.Tensor, title: str, noise: bool = False) -> None:
    """One C,H,W tensor as an image, nearest-neighbour so the pixels stay visible."""
    img = (x / 4 + 0.5) if noise else (x + 1) / 2  # noise is N(0,1): +-2 sigma fills the range
    ax.imshow(img.clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def main(argv: list[str]) -> int:
    opts = VisualizeOptions()
    try:
        apply_overrides([opts], split_argv(argv))
        m, trained = get_model(opts)
        if opts.data_dir:
            m.cfg.data_dir = opts.data_dir
        data = load_folder(m.cfg)
        if not 0 <= opts.index < len(data.images):
            raise UserError(f"--index must be in 0..{len(data.images) - 1}")
        T = m.scheduler.config.num_train_timesteps
        if not all(0 <= t < T for t in (opts.t, *opts.strip)):
            raise UserError(f"timesteps must be in 0..{T - 1}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    x0 = data.images[opts.index:opts.index + 1].float() / 127.5 - 1
    g = torch.Generator().manual_seed(opts.seed)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([opts.t])
    x_t = m.scheduler.add_noise(x0, noise, t)
    label = None
    if m.cfg.conditional:
        label = data.labels[opts.index:opts.index + 1] if data.classes == m.classes else \
            torch.tensor([len(m.classes)])  # other data: the "no class" label
    pred = predicted_noise(m, x_t, t, label)
    mse = torch.mean((pred - noise) ** 2).item()
    state = "" if trained else " (untrained model)"

    fig, axes = plt.subplots(1, 4, figsize=(10, 3))
    show(axes[0], x0[0], f"clean: {data.files[opts.index].name}")
    show(axes[1], noise[0], "noise", noise=True)
    show(axes[2], x_t[0], f"noisy at t={opts.t}")
    show(axes[3], pred[0], f"predicted noise{state}\nMSE {mse:.3f}", noise=True)
    fig.suptitle(f"model: {m.source}" if trained else "untrained model (random weights)", fontsize=9)
    _save(fig, opts.out)

    steps = torch.tensor(opts.strip)
    strip = m.scheduler.add_noise(x0.expand(len(steps), -1, -1, -1),
                                  noise.expand(len(steps), -1, -1, -1), steps)
    fig, axes = plt.subplots(1, len(steps), figsize=(1.4 * len(steps), 1.8))
    for ax, img, s in zip(axes, strip, steps.tolist()):
        show(ax, img, f"t={s}")
    fig.suptitle("forward process q(x_t | x_0)", fontsize=9)
    _save(fig, opts.strip_out)
    print(f"wrote {opts.out} (predicted-noise MSE {mse:.3f}{state}) and {opts.strip_out}")
    return 0


def _save(fig, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
