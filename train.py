"""Train a diffusion model (diffusers UNet2DModel or a DiT, DDPM noise schedule) on a folder of sprites.

Usage:
    python train.py --preset=smoke                   # a tiny model, 6 steps: seconds
    python train.py --preset=prompt                  # a text-prompt model on the shipped data (flow)
    python train.py --preset=cpu                     # a class model: 8,000 steps, about an hour on a CPU
    python train.py                                  # the seed's reference setup (hours on a CPU)
    python train.py --preset=cpu --backbone=dit      # a diffusion transformer (DiT) instead of the UNet
    python train.py --preset=vae --run_name=vae      # latent diffusion: first the autoencoder,
    python train.py --preset=cpu --latent=runs/vae   # then the UNet on its latents
    python train.py --init=pretrained --data_dir=path/to/my/sprites --max_minutes=10   # fine-tune
    python train.py --preset=cpu --data_dir=path/to/my/sprites --run_name=mine
    python train.py --resume --run_name=mine --max_steps=9000   # continue a run exactly where it stopped
    accelerate launch --num_processes=2 train.py ...          # several GPUs or processes

Writes runs/<run_name>/: config.json (the model and run specs), palette.hex (the data's colours),
losses.csv (step, loss, lr, seconds of training), loss.png, samples/step_*.png (a grid from fixed noise),
checkpoint.pt (written atomically), and at the end model/: the EMA weights in diffusers save_pretrained
format (DDPMPipeline.from_pretrained loads a UNet's), with pixelart.json (model spec, class names),
palette.hex and, for a text model, captions.txt. Ctrl-C or SIGTERM saves a checkpoint and exits 0;
--resume then continues with exactly the losses of an unbroken run. A resumed run keeps its model
options; its run options (budget, learning rate, logging, ...) may change.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import config as config_mod
from config import MODEL_KEYS, Config, UserError, latest_run, option, script


@dataclass
class TrainOptions:
    resume: bool = option(False, "continue the latest run under out_dir (or --run_name) where it "
                                 "stopped; run options given with it change, model options may not")
    overwrite: bool = option(False, "start a new run in a folder that already holds one")


def setup(argv: list[str]) -> tuple[Config, Path, bool]:
    """The config and folder of a new run, or of the run to resume (its saved config with the run
    options given now). Nothing is overwritten unasked."""
    opts = TrainOptions()
    cfg, given = config_mod.parse_args(argv, __doc__, opts)
    if opts.resume:
        run = Path(cfg.run.out_dir) / cfg.run.run_name if cfg.run.run_name else latest_run(cfg.run.out_dir)
        if run is None or not (run / "checkpoint.pt").exists():
            raise UserError(f"nothing to resume: no checkpoint in {run or cfg.run.out_dir + '/*'}")
        fixed = sorted(set(given) & (MODEL_KEYS | {"preset"}))
        if fixed:
            raise UserError(f"a resumed run keeps its model; drop --{', --'.join(fixed)} (run options "
                            "such as --max_minutes, --max_steps and --lr may change)")
        saved = config_mod.load(run / "config.json")
        changes = {k: v for k, v in given.items() if k in config_mod.RUN_KEYS}
        cfg = dataclasses.replace(saved, run=dataclasses.replace(saved.run, **changes))
        config_mod.validate(cfg)
        return cfg, run, True
    if cfg.run.init:
        cfg = from_init(cfg, given)
    name = cfg.run.run_name
    if not name:  # a timestamp; two runs started in the same second get their own folders
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{given.get('preset', 'seed')}"
        name = next(n for n in (stamp, *(f"{stamp}-{i}" for i in range(2, 1000)))
                    if not (Path(cfg.run.out_dir) / n).exists())
    run = Path(cfg.run.out_dir) / name
    if "preset" not in given and not cfg.run.init:
        print("note: no --preset, so the seed preset: the original script's 14.7M UNet for 500 epochs, "
              "hours on a CPU; --preset=cpu trains a 2.6M model in about an hour (--help lists presets)")
    from accelerate import PartialState  # the other processes of a launch find the main one's run
    if (run / "config.json").exists() and not opts.overwrite and PartialState().is_main_process:
        raise UserError(f"run folder {run} already holds a run; use --resume to continue it, "
                        "--overwrite to start it again, or another --run_name")
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, run_name=name)), run, False


def from_init(cfg: Config, given: dict) -> Config:
    """A run that starts from a trained model (--init) takes that model's spec: the weights must fit.
    The image size (the networks are convolutional), how a prompt is split (the same tokens go in)
    and what the network predicts (the same outputs, relearnt: a v model carried on as a flow) may
    change; other model options may not."""
    from model import load_model
    m = load_model(cfg.run.init)
    carried = ("colours_apart", "prediction_type")  # the model's own unless given
    fixed = sorted(set(given) & MODEL_KEYS - {"image_size", *carried})
    if fixed:
        raise UserError(f"a run from --init={cfg.run.init} keeps that model's options; drop "
                        f"--{', --'.join(fixed)} (--image_size, --{', --'.join(carried)} may change)")
    spec = dataclasses.replace(m.spec, image_size=given.get("image_size", 0),
                               **{k: given.get(k, getattr(m.spec, k)) for k in carried})
    cfg = dataclasses.replace(cfg, model=spec)
    config_mod.validate(cfg)
    print(f"init: {m.source} ({m.spec.condition} model, {m.spec.image_size}x{m.spec.image_size}"
          f"{f', trained {m.steps} steps' if m.steps else ''}), a fresh optimiser")
    return cfg


@script
def main(argv: list[str]) -> int:
    cfg, folder, resume = setup(argv)
    from trainer import NonFiniteLoss, train
    try:
        train(cfg, folder, resume)
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
