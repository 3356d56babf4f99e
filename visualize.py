"""Show what the model learns: clean image, the noise, the noisy image at t, and the noise the model
predicts at t; plus a strip of the forward (noising) process over several timesteps.

Usage:
    python visualize.py                               # latest run, else the shipped model
    python visualize.py --model=runs/mine --index=3 --t=300 --seed=1
    python visualize.py --untrained                   # the panels with a freshly initialised model

Writes outputs/visualization.png (the four panels) and outputs/forward_process.png (the strip).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from config import DEFAULT_SIZE, OUTPUTS, ModelSpec, UserError, option, parse_args, picture_path, script


@dataclass
class VisualizeOptions:
    model: str = option("", "a run, an exported model or a folder of runs; default: the latest run "
                            "under runs/, else the shipped model (pretrained/)")
    untrained: bool = option(False, "use a freshly initialised model of the seed preset")
    data_dir: str = option("", "default: the model's training data")
    index: int = option(0, "which image of the data")
    t: int = option(500, "timestep of the noisy and predicted-noise panels (0..999)")
    strip: tuple[int, ...] = option((0, 50, 100, 200, 400, 600, 800, 999), "timesteps of the "
                                                                         "forward-process strip")
    seed: int = option(0, "seed of the noise")
    out: str = option(f"{OUTPUTS}/visualization.png", "the four panels")
    strip_out: str = option(f"{OUTPUTS}/forward_process.png", "the forward-process strip")


def get_model(o: VisualizeOptions):
    """(the trained model asked for, or an untrained one when asked; whether it is trained)."""
    import torch

    from model import Loaded, build, build_scheduler, load_model
    if not o.untrained:
        m = load_model(o.model)
        print(f"model: {m.source} ({m.why})")
        if m.vae is not None:
            raise UserError(f"{m.source} is a latent model: it adds noise to latents, not to the pixels "
                            "these panels show; visualize a pixel model")
        return m, True
    spec = ModelSpec(image_size=DEFAULT_SIZE)
    torch.manual_seed(o.seed)
    m = Loaded(build(spec), build_scheduler(spec), spec, [], None, Path("untrained"),
               data_dir="data/dcss_items")
    return m, False


def predicted_noise(m, x_t, t, cond: dict):
    """The model's output (conditioned by `cond`, the backbone's keyword arguments) converted to a
    noise estimate, whatever its prediction target."""
    import torch

    from model import noise_estimate
    with torch.no_grad():
        out = m.net(x_t, t, **cond).sample
    return noise_estimate(m.scheduler, out, x_t, t)


def show(ax, x, title: str, noise: bool = False) -> None:
    """One C,H,W tensor as an image, nearest-neighbour so the pixels stay visible."""
    img = (x / 4 + 0.5) if noise else (x + 1) / 2  # noise is N(0,1): +-2 sigma fills the range
    ax.imshow(img.clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


@script
def main(argv: list[str]) -> None:
    o = VisualizeOptions()
    parse_args(argv, __doc__, o, config=False)
    o.out = str(picture_path(o.out, "visualization.png"))
    o.strip_out = str(picture_path(o.strip_out, "forward_process.png", "--strip_out"))
    import matplotlib
    matplotlib.use("Agg")  # never open a window
    import matplotlib.pyplot as plt
    import torch

    from dataset import load_folder, to_unit
    from model import add_noise
    m, trained = get_model(o)
    data = load_folder(o.data_dir or m.data_dir, m.spec)
    if not 0 <= o.index < len(data.images):
        raise UserError(f"--index must be in 0..{len(data.images) - 1}")
    T = m.scheduler.config.num_train_timesteps
    if not all(0 <= t < T for t in (o.t, *o.strip)):
        raise UserError(f"timesteps must be in 0..{T - 1}")
    x0 = to_unit(data.images[o.index:o.index + 1])
    g = torch.Generator().manual_seed(o.seed)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([o.t])
    x_t = add_noise(m.scheduler, x0, noise, t)
    cond = m.condition.encode(m.condition.of(data, torch.tensor([o.index])))[0]  # its class or caption
    pred = predicted_noise(m, x_t, t, cond)
    mse = torch.mean((pred - noise) ** 2).item()
    state = "" if trained else " (untrained model)"

    fig, axes = plt.subplots(1, 4, figsize=(10, 3))
    show(axes[0], x0[0], f"clean: {data.files[o.index].name}")
    show(axes[1], noise[0], "noise", noise=True)
    show(axes[2], x_t[0], f"noisy at t={o.t}")
    show(axes[3], pred[0], f"predicted noise{state}\nMSE {mse:.3f}", noise=True)
    fig.suptitle(f"model: {m.source}" if trained else "untrained model (random weights)", fontsize=9)
    _save(plt, fig, o.out)

    steps = torch.tensor(o.strip)
    strip = add_noise(m.scheduler, x0.expand(len(steps), -1, -1, -1),
                      noise.expand(len(steps), -1, -1, -1), steps)
    fig, axes = plt.subplots(1, len(steps), figsize=(1.4 * len(steps), 1.8))
    for ax, img, s in zip(axes, strip, steps.tolist()):
        show(ax, img, f"t={s}")
    fig.suptitle("forward process q(x_t | x_0)", fontsize=9)
    _save(plt, fig, o.strip_out)
    print(f"wrote {o.out} (predicted-noise MSE {mse:.3f}{state}) and {o.strip_out}")


def _save(plt, fig, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
