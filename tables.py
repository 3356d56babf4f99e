"""Evaluation tables that sample a model: the score of its samples against data, and the sweeps
and tables of evaluate.py. Every function takes the model, the data and one options object (o: the
fields of config.SamplingOptions, plus num_samples, per_class and captions where used).

Usage:
    samples, data, labels = samples_and_data(m, data, o)
    report = metrics.score(samples, data.images, labels=labels)
    prompt_table(m, data, features(data.images), o)
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from config import UserError
from dataset import PixelData, make_grid, to_uint8, to_unit
from metrics import (border_difference, copies, features, frechet, lite0, probe_for, seam_ratio)
from model import Loaded
from sampling import SampleRequest, sample
from sprites import SpriteRequest, generate


def sprites(m: Loaded, o, wanted: list, **changes) -> torch.Tensor:
    """Snapped uint8 sprites for `wanted`, sampled with o's seed, sampler, steps, guidance (and its
    interval) and palette (each overridable by `changes`)."""
    req = SpriteRequest(wanted, o.seed, o.sampler, o.steps, o.guidance, o.palette,
                        guidance_interval=tuple(o.guidance_interval))
    return generate(m, dataclasses.replace(req, **changes))[0]


def samples_and_data(m: Loaded, data: PixelData, o) -> tuple[torch.Tensor, tuple | None]:
    """(samples uint8, labels) of a model sampled as generate.py samples, o.num_samples of them (0:
    as many as the data has images); labels = (each sample's class, each data image's class, the
    class names) when known. With o.captions, the data's captions in turn (text models)."""
    n = o.num_samples or len(data.images)
    print(f"sampling {n} icons from {m.source} ({o.sampler}{'-' + str(o.steps) if o.steps else ''})")
    turn = torch.arange(n)
    if o.captions:
        if m.condition.kind != "text":
            raise UserError(f"--captions: this model takes no prompts (condition={m.condition.kind})")
        wanted = m.condition.of(data, turn % len(data.images))
        return (sprites(m, o, wanted, progress=True),
                (data.labels[turn % len(data.labels)], data.labels, data.classes))
    subset = data.classes != m.classes and set(data.classes) <= set(m.classes)
    if o.classes or not subset:
        _, wanted = m.condition.request(o.classes, (), n)
        in_turn = not o.classes and data.classes == m.classes and wanted == m.condition.defaults(n)
        in_turn = in_turn and all(w in data.classes for w in wanted)
        labels = (turn % len(data.classes), data.labels, data.classes) if in_turn else None
        return sprites(m, o, wanted, progress=True), labels
    # Reference data with some of the model's classes (the items of an items-and-monsters model):
    # those classes in turn, as generate.py cycles through all of them.
    wanted = [data.classes[i % len(data.classes)] for i in range(n)]
    return sprites(m, o, wanted, progress=True), (turn % len(data.classes), data.labels, data.classes)


def guidance_sweep(m: Loaded, data: PixelData, f_data: torch.Tensor, o, scales: tuple[float, ...]) -> dict:
    """For each guidance scale: the share of conditional samples the probe assigns to the class they
    were asked for (overall and per class), and their FD-Lite0 against the data (features f_data)."""
    if m.condition.kind == "none":
        raise UserError("--guidance_sweep needs a class or text model (this one is unconditional)")
    net = lite0()
    probe, mean, std, held_acc = probe_for(data.images, data.labels, len(data.classes), f_data, net)
    _, wanted = m.condition.request("all", (), o.per_class)
    want = torch.arange(len(m.classes)).repeat_interleave(o.per_class)
    rows = []
    for w in scales:
        images = sprites(m, o, wanted, guidance=w)
        f = features(images, net)
        hit = (probe((f - mean) / std).argmax(1) == want).double()
        per_class_acc = {c: hit[want == i].mean().item() for i, c in enumerate(m.classes)}
        copied = {c: copies(images[want == i], data.images) for i, c in enumerate(m.classes)}
        rows.append({"guidance": w, "accuracy": hit.mean().item(), "fd_lite0": frechet(f, f_data),
                     "per_class": per_class_acc, "per_class_copies": copied})
        print(f"guidance {w}: class accuracy {hit.mean():.1%}, FD-Lite0 {rows[-1]['fd_lite0']:.1f}")
    counts = torch.bincount(data.labels, minlength=len(data.classes)).tolist()
    return {"probe_held_out_accuracy": held_acc, "per_class_samples": o.per_class,
            "class_counts": dict(zip(data.classes, counts)), "rows": rows}


TABLE_CLASSES = ("potion", "book", "weapon", "armour", "wand", "gold")  # 12 or more icons each
TABLE_COLOURS = ("red", "blue", "green", "yellow")


def prompt_table(m: Loaded, data: PixelData, f_data: torch.Tensor, o) -> dict:
    """Does the prompt come through? For each class x colour prompt ('a red potion'), including pairs
    the data does not hold: the share of samples the probe (trained on these classes' icons) assigns
    to the class, the share whose main colour (palette.main_colours, the captions' rule) is the
    named one, and, over all of them, FD-Lite0 against these classes' icons and exact copies. A class
    model is asked for the class alone, so its colour accuracy is the chance level to beat."""
    classes = [c for c in TABLE_CLASSES if c in data.classes]
    if not classes or m.condition.kind == "none":
        raise UserError("--prompt_table needs a text or class model trained on some of the classes "
                        + ", ".join(TABLE_CLASSES))
    net = lite0()
    keep = torch.tensor([data.classes[i] in classes for i in data.labels])
    images = data.images[keep]
    labels = torch.tensor([classes.index(data.classes[i]) for i in data.labels[keep]])
    probe, mean, std, held_acc = probe_for(images, labels, len(classes), f_data[keep], net)
    pairs = [(cls, colour) for cls in classes for colour in TABLE_COLOURS]
    prompts = tuple(f"a {colour} {cls}" for cls, colour in pairs)
    asked = prompts if m.condition.kind == "text" else tuple(c for c, _ in pairs)  # a class model: the class
    samples = sprites(m, o, [a for a in asked for _ in range(o.per_class)])
    f = features(samples, net)
    said = (probe((f - mean) / std).argmax(1)).view(len(pairs), o.per_class)
    seen = {(data.classes[lab], named) for named, lab in zip(first_colours(data.images), data.labels)}
    rows = []
    for i, (cls, colour) in enumerate(pairs):
        batch = samples[i * o.per_class:(i + 1) * o.per_class]
        rows.append({"prompt": prompts[i], "in_data": (cls, colour) in seen,
                     "class_accuracy": (said[i] == classes.index(cls)).double().mean().item(),
                     "colour_accuracy": float(np.mean([named == colour for named in first_colours(batch)]))})
    result = {"probe_held_out_accuracy": held_acc, "per_prompt": o.per_class,
              "class_accuracy": float(np.mean([r["class_accuracy"] for r in rows])),
              "colour_accuracy": float(np.mean([r["colour_accuracy"] for r in rows])),
              "unseen_colour_accuracy": float(np.mean([r["colour_accuracy"] for r in rows
                                                       if not r["in_data"]] or [float("nan")])),
              "fd_lite0": frechet(f, f_data[keep]), "copies": copies(samples, images), "rows": rows}
    print(f"prompt table ({len(prompts)} prompts x {o.per_class}; probe held-out accuracy "
          f"{held_acc:.0%}): class {result['class_accuracy']:.0%}, colour {result['colour_accuracy']:.0%} "
          f"(pairs not in the data: {result['unseen_colour_accuracy']:.0%}), FD-Lite0 "
          f"{result['fd_lite0']:.0f}, copies {result['copies']:.1%}")
    return result


def inpaint_table(m: Loaded, data: PixelData, f_data: torch.Tensor, o) -> list[dict]:
    """Repaint the centre (half the side) of n data icons, each with its own class or caption, by
    plain replacement of the known region at each step and by RePaint's resampling (2 and 4 times):
    how much the fill's border differs from its surroundings (against the same icons' own border)
    and FD-Lite0 of the filled icons against the data."""
    n = o.num_samples or 64
    pick = torch.randperm(len(data.images), generator=torch.Generator().manual_seed(o.seed))[:n]
    icons, size = data.images[pick], data.images.shape[-1]
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4:3 * size // 4, size // 4:3 * size // 4] = 1
    cond, null = m.condition.encode(m.condition.of(data, pick))
    truth = border_difference(icons, mask.bool())
    rows = []
    for name, resample in (("replace", 0), ("repaint-2", 2), ("repaint-4", 4)):
        t0 = time.perf_counter()
        req = SampleRequest(n, cond, null, o.seed, o.sampler, o.steps, o.guidance, init=to_unit(icons),
                            mask=mask.expand(n, -1, -1, -1), resample=resample)
        filled = torch.where(mask.bool(), to_uint8(sample(m.net, m.scheduler, req)), icons)
        rows.append({"method": name, "border": border_difference(filled, mask.bool()),
                     "border_of_the_icons": truth,
                     "fd_lite0": frechet(features(filled), f_data),
                     "seconds": time.perf_counter() - t0})
        print(f"{name}: border difference {rows[-1]['border']:.1f} (the icons' own: {truth:.1f}), "
              f"FD-Lite0 {rows[-1]['fd_lite0']:.0f}, {rows[-1]['seconds']:.0f} s")
    return rows


def seam_table(m: Loaded, o, picture: str = "") -> dict:
    """The seam ratio of n sprites sampled with and without --tileable (same seeds and classes), and
    a picture of the first 6 of each repeated 3x3 (top row: without, bottom: with)."""
    n = o.num_samples or 64
    _, wanted = m.condition.request("", (), n)
    result, rows = {}, []
    for tileable in (False, True):
        images = sprites(m, o, wanted, tileable=tileable)
        result["tileable" if tileable else "plain"] = seam_ratio(images)
        rows.append(images[:6].repeat(1, 1, 3, 3))
    print(f"seam ratio ({n} sprites; 1 = no seam): {result['plain']:.2f} without --tileable, "
          f"{result['tileable']:.2f} with")
    if picture:
        Path(picture).parent.mkdir(parents=True, exist_ok=True)
        make_grid(torch.cat(rows), ncols=min(6, n), scale=2, pad=4).save(picture)
        print(f"wrote {picture}")
    return result


def sampler_sweep(m: Loaded, f_data: torch.Tensor, o, specs: tuple[str, ...], n: int) -> list[dict]:
    """FD-Lite0 (against the data's features f_data) and seconds of each sampler-steps setting
    ('dpm-20'), same model, seeds and count."""
    net = lite0()
    _, wanted = m.condition.request(o.classes, (), n)
    rows = []
    for spec in specs:
        name, _, steps = spec.partition("-")
        t0 = time.perf_counter()
        images = sprites(m, o, wanted, sampler=name, steps=int(steps or 0))
        seconds = time.perf_counter() - t0
        rows.append({"sampler": spec, "fd_lite0": frechet(features(images, net), f_data),
                     "seconds": seconds, "images_per_s": n / seconds})
        print(f"{spec}: FD-Lite0 {rows[-1]['fd_lite0']:.1f}, {seconds:.1f} s for {n} icons")
    return rows


def print_report(r: dict) -> None:
    s, f = r["samples"], r["floor"]
    print(f"\n{r['num_samples']} samples against {r['num_data']} data images "
          f"(floor: the data's mirror images)")
    # precision and density are left out (kept in the JSON): in these features they rate pure noise
    # as excellent (RESULTS.md), so they cannot tell a model from noise
    rows = [("FD-Lite0 (not Inception FID)", "fd_lite0", "{:.1f}"), ("KID x1000", "kid_mean", "{:.2f}"),
            ("recall", "recall", "{:.3f}"), ("coverage", "coverage", "{:.3f}"),
            ("exact copies of training icons", "copy_rate", "{:.1%}"),
            ("nearest-neighbour distance ratio", "nn_ratio", "{:.2f}"),
            ("colours per image, W1 to data", "colours_w1", "{:.2f}"),
            ("colours per image (data {:.1f})".format(r["data"]["colours_mean"]), "colours_mean",
             "{:.1f}"),
            ("off-palette pixels (data's and snapped colours)", "off_palette", "{:.1%}"),
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



# ----------------------------------------------------------------------------- the held-out test

# Objects a prompt can name, each with the class folders the probe may rightly call it (the doll's
# equipment and the items' classes both hold helmets, swords, boots); and colour words of the
# captions' rule (palette.COLOUR_NAMES). Pairs no training caption holds are the unseen prompts.
ARMOUR, WEAPON = "armour", "weapon"
# Class folders that hold the same kind of thing (the items' and the doll's): a probe's call of one for
# the other is right.
KINDS = [{WEAPON, "hand_weapon"}, {ARMOUR, "helmet", "body_armour", "shield", "boots", "gloves", "cloak"}]


def same_kind(a: str, b: str) -> bool:
    return a == b or any(a in kind and b in kind for kind in KINDS)


# The kind probe's 10 kinds: the classes a linear probe on Lite0 features cannot keep apart merged
# (chosen by its accuracy on the held-out icons, RESULTS.md): every monster group is "monster", rings
# and runes are jewellery, staves, rods and missiles go with the weapons. Artefacts (a unique sword,
# shield, mask or amulet) and misc (fans, boxes, decks) share no shape: they have no kind, and the
# kind probe neither learns nor scores them.
MONSTERS = "monster"
MERGED = {WEAPON: {WEAPON, "hand_weapon", "staff", "rod", "missile"}, ARMOUR: KINDS[1],
          "jewellery": {"ring", "rune"}}
SHAPELESS = {"artefact", "misc"}


def kind_of(folder: str, file: Path | None = None) -> str | None:
    """The kind of a class folder (of an image file): merged as MERGED says; every class of the
    monsters' data is one; None for the SHAPELESS classes."""
    if file is not None and "monsters" in file.parent.parent.name:
        return MONSTERS
    if folder in SHAPELESS:
        return None
    return next((k for k, members in MERGED.items() if folder in members), folder)


def image_kinds(data: PixelData) -> list[str | None]:
    """The kind of each image (None: it has none)."""
    return [kind_of(data.classes[i], f) for i, f in zip(data.labels.tolist(), data.files)]


OBJECTS = {"helmet": ("helmet", ARMOUR), "crown": ("helmet", ARMOUR), "hood": ("helmet", ARMOUR),
           "hat": ("helmet", ARMOUR), "shield": ("shield", ARMOUR), "buckler": ("shield", ARMOUR),
           "robe": ("body_armour", ARMOUR), "cloak": ("cloak", ARMOUR), "boots": ("boots", ARMOUR),
           "gloves": ("gloves", ARMOUR), "sword": ("hand_weapon", WEAPON), "axe": ("hand_weapon", WEAPON),
           "mace": ("hand_weapon", WEAPON), "spear": ("hand_weapon", WEAPON), "potion": ("potion",),
           "book": ("book",), "wand": ("wand",), "ring": ("ring",)}
COLOURS = ("yellow", "blue", "green", "white", "red", "purple", "pink", "orange", "cyan")


def unseen_prompts(captions: list[str], classes: list[str], k: int = 24) -> list[tuple[str, tuple, str]]:
    """(prompt, the classes it may be judged, its colour) for k object x colour pairs that no caption
    holds (both words), objects of a class the data has, in a fixed order that mixes objects."""
    said = [set(c.replace(",", " ").split()) for c in captions]
    article = lambda colour, obj: "" if obj.endswith("s") else "an " if colour[0] in "aeiou" else "a "  # noqa: E731
    pairs = [(f"{article(colour, obj)}{colour} {obj}", tuple(c for c in cls if c in classes), colour)
             for colour in COLOURS for obj, cls in OBJECTS.items()
             if any(c in classes for c in cls)
             and not any((obj in w or obj.rstrip("s") in w) and colour in w for w in said)]
    return sorted(pairs, key=lambda p: (hash_order(p[0]), p))[:k]


def hash_order(text: str) -> int:
    """A fixed pseudo-random order (Python's hash() differs between runs)."""
    import zlib
    return zlib.crc32(text.encode())


def _roots(files: set[Path]) -> str:
    """The data folders (parents of the class folders) of listed images, as a data_dir."""
    return ",".join(sorted({str(f.parents[1]) for f in files}))


def held_out_test(m: Loaded, o, listed: str, yardstick: str, cap: int = 0) -> dict:
    """The model judged on what it never saw: sprites sampled from the held-out images' captions
    against those images (class and colour accuracy, FD-Lite0 beside its floor, memorisation against
    the training images), diversity within a prompt, object x colour prompts absent from every
    caption, and the class names in the yardstick's proportions. `cap` (0: all) caps the held-out
    images, the prompts and the yardstick's images used."""
    from dataset import load_folder, read_list
    from metrics import floor_images, kid, prdc
    from palette import hue_turned
    files = sorted(read_list(listed))
    files = set(files[::max(1, len(files) // cap)][:cap] if cap else files)
    held = load_folder(_roots(files), m.spec, log=lambda _: None, only=files)
    train = load_folder(m.data_dir, m.spec, log=lambda _: None, exclude=files)
    net = lite0()
    f_train, f_held = features(train.images, net), features(held.images, net)
    f_mirrored = features(train.images.flip(-1), net)
    probe, mean, std, probe_acc = probe_for(train.images, train.labels, len(train.classes), f_train, net,
                                            f_mirrored)
    judge = lambda f: probe((f - mean) / std).argmax(1)  # noqa: E731  (f: Lite0 features)
    report = {"held_out": len(held.images), "trained_on": len(train.images), "probe_accuracy": probe_acc}

    samples = sprites(m, o, m.condition.of(held, torch.arange(len(held.images))), progress=True)
    want = [held.classes[i] for i in held.labels]
    right = lambda f: float(np.mean([same_kind(train.classes[j], w)  # noqa: E731
                                     for j, w in zip(judge(f).tolist(), want)]))
    each, held_kinds = image_kinds(train), image_kinds(held)
    kinds = sorted(set(each) - {None})
    has = torch.tensor([k is not None for k in each])
    kind_probe, k_mean, k_std, report["kind_probe_accuracy"] = probe_for(
        train.images[has], torch.tensor([kinds.index(k) for k in each if k]), len(kinds), f_train[has], net,
        f_mirrored[has])
    kind_judge = lambda f: kind_probe((f - k_mean) / k_std).argmax(1)  # noqa: E731
    scored = [i for i, k in enumerate(held_kinds) if k]  # the held-out images that have a kind
    kind_right = lambda f: float(np.mean([kinds[j] == held_kinds[i] for i, j in zip(  # noqa: E731
        scored, kind_judge(f[scored]).tolist())]))
    report["kinds"] = kinds
    f_s, floor = features(samples, net), floor_images(held.images, len(held.images))
    report["captions"] = {
        "class_accuracy": right(f_s),
        "class_accuracy_of_the_icons": right(f_held),  # the ceiling
        "kind_accuracy": kind_right(f_s),
        "kind_accuracy_of_the_icons": kind_right(f_held),  # the kind probe's ceiling
        "colour_accuracy": colour_agreement(samples, held.images),
        "fd_lite0": frechet(f_s, f_held), "floor_fd": frechet(features(floor, net), f_held),
        "kid": kid(f_s, f_held)[0], **prdc(f_held, f_s),
        "memorisation_ratio": nearest_ratio(samples, held.images, train.images)}

    k = min(24, len(held.images))
    chosen = list(range(0, len(held.images), max(1, len(held.images) // k)))[:k]
    report["diversity"] = prompt_diversity(m, o, [held.captions[i] for i in chosen],
                                           [held.classes[held.labels[i]] for i in chosen], train, f_train, net)

    unseen = unseen_prompts(train.captions, train.classes, k)
    got = sprites(m, o, [p for p, _, _ in unseen for _ in range(4)])
    f_got = features(got, net)
    class_fits = lambda c, name: any(same_kind(name, k) for k in c)  # noqa: E731  (c: a prompt's classes)
    kind_fits = lambda c, kind: kind in {kind_of(k) for k in c}  # noqa: E731

    def fit_rate(fits, rows: list[list[int]], names: list) -> float | None:
        """Over the prompts that have verdicts (a row of indices into names each), how often they fit."""
        per = [np.mean([fits(c, names[j]) for j in r]) for r, (_, c, _) in zip(rows, unseen) if r]
        return float(np.mean(per)) if per else None

    def of_the_object(fits, verdicts: torch.Tensor, truth: list) -> list[list[int]]:
        """Per prompt, the verdicts (a row per held-out icon) on the icons whose truth fits it."""
        return [[j for t, v in zip(truth, verdicts.tolist()) if fits(c, t) for j in v] for _, c, _ in unseen]

    # Their ceiling: the same probes on the held-out icons of each prompt's object with its hues turned
    # a quarter, a half and three quarters round: real drawings in colours they do not have, as the
    # prompts ask (the probes lean on colour, so this is well under the icons' own ceiling).
    f_turned = features(torch.cat([hue_turned(held.images, d) for d in (90, 180, 270)]), net)
    turned, kind_turned = (j(f_turned).view(3, -1).T for j in (judge, kind_judge))  # an icon's row: 3 turns
    report["unseen"] = {
        "prompts": [p for p, _, _ in unseen],
        "class_accuracy": fit_rate(class_fits, judge(f_got).view(len(unseen), 4).tolist(), train.classes),
        "class_accuracy_of_the_icons": fit_rate(class_fits, of_the_object(class_fits, turned, want),
                                                train.classes),
        "kind_accuracy": fit_rate(kind_fits, kind_judge(f_got).view(len(unseen), 4).tolist(), kinds),
        "kind_accuracy_of_the_icons": fit_rate(kind_fits, of_the_object(kind_fits, kind_turned, held_kinds),
                                               kinds),
        "colour_accuracy": float(np.mean([named == c for named, (_, _, c) in
                                          zip(first_colours(got), [u for u in unseen for _ in range(4)])]))}
    report["unseen_images"] = got

    items = load_folder(yardstick, m.spec, log=lambda _: None)
    if cap:
        items.images, items.labels = (x[::max(1, len(x) // cap)] for x in (items.images, items.labels))
    asked = [items.classes[i] for i in items.labels]  # the class names in the data's proportions
    names = sprites(m, o, asked, progress=True)
    f_items, f_names = features(items.images, net), features(names, net)
    report["class_names"] = {"fd_lite0": frechet(f_names, f_items), **prdc(f_items, f_names)}
    return report


def first_colours(images: torch.Tensor) -> list[str]:
    """Each sprite's main colour by the captions' rule (palette.main_colours), or ""."""
    from palette import main_colours
    return [(named or [""])[0] for named in main_colours(images)]


def colour_agreement(samples: torch.Tensor, icons: torch.Tensor) -> float:
    """Share of samples whose main colour (the captions' rule) is that of the icon they were asked
    for by its caption."""
    return float(np.mean([s == i for s, i in zip(first_colours(samples), first_colours(icons))]))


def nearest_ratio(samples: torch.Tensor, held: torch.Tensor, train: torch.Tensor) -> float:
    """How near each sample's nearest training image is, over how near the held-out images' own
    nearest training images are (medians, pixels, mirrors included): 1 = no closer than new real
    sprites; near 0 = copies."""
    from metrics import nearest_neighbours
    return float(nearest_neighbours(samples, train)[0].median() / nearest_neighbours(held, train)[0].median())


def prompt_diversity(m: Loaded, o, prompts: list[str], classes: list[str], data: PixelData,
                     f_data: torch.Tensor, net, per: int = 8) -> float:
    """8 samples of each prompt: their mean pairwise feature distance over that of the training
    images of the prompt's class, averaged over the prompts. 1: as varied as the data; 0: one sprite."""
    from metrics import spread
    f = features(sprites(m, o, [p for p in prompts for _ in range(per)]), net).view(len(prompts), per, -1)
    count = {c: int((data.labels == data.classes.index(c)).sum()) if c in data.classes else 0
             for c in set(classes)}
    within = {c: spread(f_data[data.labels == data.classes.index(c)]) for c in count if count[c] > 1}
    return float(np.mean([spread(x) / within[c] for x, c in zip(f, classes) if c in within]))


def walk_test(m: Loaded, o, lpc_dir: str, n: int) -> dict:
    """The character test: n held-out characters of each split (unseen combinations of training
    layers; characters wearing a held-out layer), each walk drawn from its true standing frame as
    animate.py --init draws it (with o.captions, also given its caption, as --init with --prompt),
    scored against the exact truth beside two baselines: the standing frame copied to every frame,
    and the side rows mirrored from each other's truth."""
    from animation import WalkRequest, walk_cycle
    from characters import DIRECTIONS, DOWN, Layers
    from metrics import walk_scores
    lib = Layers(lpc_dir)
    left, right = DIRECTIONS.index("left"), DIRECTIONS.index("right")
    report = {}
    for split in ("combo", "layer"):
        chars = lib.characters(split, n, seed=0)
        truth = torch.from_numpy(np.stack([lib.walk(c) for c in chars])).permute(0, 1, 2, 5, 3, 4)
        start = time.perf_counter()
        drawn = torch.stack([walk_cycle(m, WalkRequest(reference=t[DOWN, 0], seed=o.seed + i,
                                                       sampler=o.sampler, steps=o.steps,
                                                       prompt=c.caption if o.captions else ""))
                             for i, (t, c) in enumerate(zip(truth, chars))])
        seconds = (time.perf_counter() - start) / n
        copy = truth[:, DOWN, 0][:, None, None].expand_as(truth)
        mirror = copy.clone()
        mirror[:, left], mirror[:, right] = truth[:, right].flip(-1), truth[:, left].flip(-1)
        report[split] = {"characters": n, "seconds_per_sheet": seconds,
                         "model": walk_scores(drawn, truth, (DOWN, 0)),
                         "copy": walk_scores(copy, truth, (DOWN, 0)),
                         "mirror": walk_scores(mirror, truth, (DOWN, 0))}
        if split == "combo":
            report["example"] = (drawn[:4], truth[:4])
    return report
