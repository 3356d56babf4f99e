"""Tilesets that join: the 16-tile corner Wang set and the 47-tile blob set of two terrains, made by a
tile model, laid into maps, and written for Tiled.

Usage:
    req = TilesetRequest("floor", "water", seed=0)
    sets = make_sets(m, req, textures(m, req))     # {"corner": uint8 16x3x32x32, "blob": 47x3x32x32}
    cells = random_corners(16, 16, seed=0); picture = render(sets["corner"], corner_map(cells))
    write_tiled(sets, request, Path("outputs/tileset"))            # PNGs, .tsx with wangsets, a .tmx map

How the tiles join: each terrain is first drawn once as a seamless tile (the model with --tileable).
Every tile starts as those two textures, at the same phase everywhere, cut along a terrain mask; the
mask's border frame depends only on what the tile shares with a neighbour (a corner's terrain, an
edge's), so every valid neighbour has the same pixels on its side of the border, and a pure-terrain
stretch is the seamless texture itself. Inside the frame, a band along the cut between the terrains is
repainted by the model (inpainting with RePaint's resampling), so that the two blend.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import torch
import torch.nn.functional as F

from config import SAMPLER, UserError
from dataset import make_grid, to_uint8, to_unit
from model import Loaded
from sampling import SampleRequest, sample
from sprites import SpriteRequest, generate, postprocess

FRAME = 4  # pixels of a tile's border that only depend on what it shares with its neighbours
BAND = 2  # pixels either side of a cut between terrains that the model repaints
BLEND = 0.6  # share of the noise schedule run there: the cut, noised, is denoised from 60%


@dataclass
class TilesetRequest:
    a: str  # the first terrain: a class of the model, or a prompt
    b: str  # the second
    seed: int = 0
    sampler: str = SAMPLER
    steps: int = 0
    resample: int = 2  # RePaint resamplings of each step in the repainted band
    progress: bool = False  # a progress bar (with its time left) for each sampling pass


# ----------------------------------------------------------------------------- the two sets

def corner_tiles() -> list[tuple[int, int, int, int]]:
    """The 16 corner Wang tiles: (top-left, top-right, bottom-right, bottom-left), 1 = terrain b,
    tile i having bit k for corner k."""
    return [tuple((i >> k) & 1 for k in range(4)) for i in range(16)]


def blob_tiles() -> list[tuple[int, ...]]:
    """The 47 blob tiles as Tiled's mixed Wang ids (top, top-right, right, bottom-right, bottom,
    bottom-left, left, top-left), 1 = terrain b: a corner is b only when both edges beside it are."""
    tiles = []
    for t, r, b, l in itertools.product((0, 1), repeat=4):
        for tr, br, bl, tl in itertools.product((0, 1), repeat=4):
            if (tr <= t * r) and (br <= b * r) and (bl <= b * l) and (tl <= t * l):
                tiles.append((t, tr, r, br, b, bl, l, tl))
    return tiles


def wang_id(kind: str, tile: tuple) -> tuple[int, ...]:
    """A tile's 8-value Wang id (top, top-right, right, bottom-right, bottom, bottom-left, left,
    top-left; 0 = unset, 1 = terrain a, 2 = terrain b)."""
    if kind == "corner":
        tl, tr, br, bl = tile
        return (0, tr + 1, 0, br + 1, 0, bl + 1, 0, tl + 1)
    return tuple(v + 1 for v in tile)


def terrain_mask(kind: str, tile: tuple, size: int, rng: np.random.Generator) -> np.ndarray:
    """bool size x size, True = terrain b. Corner set: each quarter of the tile is its corner's
    terrain, the lines between quarters bent by a little smooth noise inside the frame. Blob set: a
    3x3 grid of the tile's values (corners, edges, centre), smoothly upsampled with a little noise,
    and a frame that follows only the shared corners and edges. Either way the frame depends only
    on what a neighbour shares, so neighbours agree along it."""
    half, k, y, x = size // 2, FRAME, *np.mgrid[:size, :size]
    if kind == "corner":
        tl, tr, br, bl = tile
        bend = F.interpolate(torch.from_numpy(rng.normal(0, 2.5, (1, 2, 5))).float(), size=size,
                             mode="linear", align_corners=True)[0].numpy()
        inside = (y >= k) & (y < size - k) & (x >= k) & (x < size - k)
        left = x + np.where(inside, bend[0][y], 0) < half
        top = y + np.where(inside, bend[1][x], 0) < half
        return np.where(top, np.where(left, tl, tr), np.where(left, bl, br)) == 1
    top, tr, right, br, bottom, bl, left, tl = tile
    centre = float(max(top, right, bottom, left))
    grid = torch.tensor([[tl, top, tr], [left, centre, right], [bl, bottom, br]], dtype=torch.float32)
    field = F.interpolate(grid[None, None], size=(size, size), mode="bilinear", align_corners=True)[0, 0]
    noise = F.interpolate(torch.from_numpy(rng.normal(0, 0.12, (1, 1, 4, 4))).float(), size=(size, size),
                          mode="bicubic", align_corners=True)[0, 0]
    mask = (field + noise).numpy() > 0.5
    near, middle, far = slice(0, k), slice(k, size - k), slice(size - k, size)  # along each side
    for rows, cols, value in ((near, middle, top), (far, middle, bottom), (middle, near, left),
                              (middle, far, right), (near, near, tl), (near, far, tr), (far, near, bl),
                              (far, far, br)):
        mask[rows, cols] = value == 1
    return mask


def band(mask: np.ndarray) -> np.ndarray:
    """Inside the frame, the pixels within BAND of a cut between the terrains: what the model repaints."""
    m = torch.from_numpy(mask).float()[None, None]
    cut = (F.max_pool2d(m, 3, 1, 1) != -F.max_pool2d(-m, 3, 1, 1)).float()
    near = F.max_pool2d(cut, 2 * BAND + 1, 1, BAND)[0, 0].bool().numpy()
    inside = np.zeros_like(mask)
    inside[FRAME:-FRAME, FRAME:-FRAME] = True
    return near & inside


# ----------------------------------------------------------------------------- making them

def check_model(m: Loaded, req: TilesetRequest) -> None:
    """One sentence for a model or terrains a tileset cannot be made of."""
    if m.spec.channels != 3:
        raise UserError(f"{m.source} draws RGBA sprites; tilesets need a model of opaque RGB tiles "
                        "(--model=pretrained/terrain)")
    if m.condition.kind == "none":
        raise UserError(f"{m.source} takes no class or prompt, so it cannot draw two terrains")
    if req.a == req.b:
        raise UserError(f"--terrains names {req.a} twice: give two different terrains")
    if m.condition.kind == "class":
        unknown = [t for t in (req.a, req.b) if t not in m.classes]
        if unknown:
            raise UserError(f"unknown terrain {unknown[0]}; this model's terrains: {', '.join(m.classes)}")


PROBE_QUADRANTS = 400  # of each terrain, to train the probe on
CANDIDATES = 8  # seamless tiles drawn of each terrain; the one most like its terrain is kept


def textures(m: Loaded, req: TilesetRequest) -> torch.Tensor:
    """The two terrains, each drawn as seamless tiles (uint8 2 x 3 x S x S): of CANDIDATES each, of
    those that wrap without a visible seam (seam ratio <= 1.1), the one whose every quadrant a probe finds most
    like its terrain (class models; else the one that wraps best)."""
    from metrics import seam_ratio as wrap_ratio
    wanted = [t for t in (req.a, req.b) for _ in range(CANDIDATES)]
    drawn, _ = generate(m, SpriteRequest(wanted, req.seed, req.sampler, req.steps, tileable=True,
                                         progress=req.progress))
    wraps = torch.tensor([wrap_ratio(x[None]) for x in drawn]).view(2, CANDIDATES)
    drawn = drawn.view(2, CANDIDATES, *drawn.shape[1:])
    score = -wraps
    if m.condition.kind == "class" and CANDIDATES > 1:
        p = terrain_probe(m, req)(quadrants(drawn.flatten(0, 1))).view(2, CANDIDATES, 4, 2)
        typical = torch.stack([p[0, ..., 0], p[1, ..., 1]]).min(-1).values  # the worst quadrant of each
        score = torch.where(wraps <= 1.1, typical, score - 10)
    return drawn[torch.arange(2), score.argmax(1)]


_PROBES: dict = {}  # (model, terrain a, terrain b) -> its probe: textures() and the fidelity share it


def terrain_probe(m: Loaded, req: TilesetRequest):
    """terrain_probe_for, built once per model and pair of terrains in a process."""
    key = (str(m.source), req.a, req.b)
    if key not in _PROBES:
        _PROBES[key] = terrain_probe_for(m, req)
    return _PROBES[key]


def terrain_probe_for(m: Loaded, req: TilesetRequest):
    """A function from quadrants (quadrants()) to the probabilities of terrain a and b: a linear
    probe (metrics.probe_for) on Lite0 features of as many quadrants of each one's training tiles (the
    rarer terrain's every quadrant, PROBE_QUADRANTS at most); its held-out accuracy is its attribute
    `held`."""
    from dataset import load_folder
    from metrics import features, lite0, probe_for
    data = load_folder(m.data_dir, m.spec, log=lambda _: None)
    g = torch.Generator().manual_seed(0)
    parts = [quadrants(data.images[data.labels == data.classes.index(t)]) for t in (req.a, req.b)]
    n = min(*map(len, parts), PROBE_QUADRANTS)
    quads = torch.cat([p[torch.randperm(len(p), generator=g)[:n]] for p in parts])
    net = lite0()
    probe, mean, std, held = probe_for(quads, torch.arange(2).repeat_interleave(n), 2, features(quads, net), net)

    def probabilities(images: torch.Tensor) -> torch.Tensor:
        return probe((features(images, net) - mean) / std).softmax(1)
    probabilities.held = held
    return probabilities


def make_sets(m: Loaded, req: TilesetRequest, tex: torch.Tensor, independent: bool = False,
              kinds: tuple[str, ...] = ("corner", "blob")) -> dict[str, torch.Tensor]:
    """{"corner": 16 tiles, "blob": 47 tiles} (uint8 N x 3 x S x S), the kinds asked for, cut from
    the two terrains' textures (textures()). independent=True draws every tile on its own instead (a
    variation of its cut, nothing shared): the baseline the seams of joined sets are measured against."""
    check_model(m, req)
    size = tex.shape[-1]
    rng = np.random.default_rng(req.seed)
    sets = {}
    for kind, tiles in (("corner", corner_tiles()), ("blob", blob_tiles())):
        if kind not in kinds:
            continue
        masks = [terrain_mask(kind, t, size, rng) for t in tiles]
        cut = torch.stack([torch.where(torch.from_numpy(mk), tex[1], tex[0]) for mk in masks])
        bands = [band(mk) for mk in masks]
        repaint = torch.from_numpy(np.stack(bands))[:, None]
        if independent:
            repaint = torch.ones_like(repaint)
        chosen = [i for i in range(len(tiles)) if repaint[i].any()]
        cond, null = m.condition.encode([None] * len(chosen))
        sreq = SampleRequest(len(chosen), cond, null, req.seed, req.sampler, req.steps, guidance=1.0,
                             init=to_unit(cut[chosen]), strength=0.6 if independent else BLEND,
                             mask=None if independent else repaint[chosen].float(), resample=req.resample,
                             progress=req.progress)
        drawn = postprocess(to_uint8(sample(m.net, m.scheduler, sreq)), m, "data")
        out = cut.clone()
        out[chosen] = torch.where(repaint[chosen], drawn, cut[chosen])  # the rest stays the cut exactly
        sets[kind] = out
    return sets


# ----------------------------------------------------------------------------- maps

def random_corners(width: int, height: int, seed: int = 0, share: float = 0.45) -> np.ndarray:
    """A (height+1) x (width+1) grid of corner terrains (1 = b), in smooth patches."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 1, height // 4 + 2, width // 4 + 2))).float()
    field = F.interpolate(coarse, size=(height + 1, width + 1), mode="bilinear", align_corners=True)[0, 0]
    return (field.numpy() < np.quantile(field.numpy(), share)).astype(np.int64)


def corner_map(corners: np.ndarray) -> np.ndarray:
    """Each cell's tile index in the corner set, from the terrains at its four corners."""
    tl, tr, br, bl = corners[:-1, :-1], corners[:-1, 1:], corners[1:, 1:], corners[1:, :-1]
    return tl + 2 * tr + 4 * br + 8 * bl


def render(tiles: torch.Tensor, cells: np.ndarray) -> torch.Tensor:
    """The map picture: uint8 3 x (rows*S) x (cols*S), tile cells[r, c] at row r, column c."""
    rows = [torch.cat([tiles[i] for i in row], -1) for row in cells]
    return torch.cat(rows, -2)


def seam_ratio(picture: torch.Tensor, size: int) -> float:
    """The mean colour jump between neighbouring pixels across tile boundaries over the mean jump
    inside tiles: 1 = the boundaries cannot be seen."""
    x = picture.float()
    dx, dy = (x[:, :, 1:] - x[:, :, :-1]).abs(), (x[:, 1:, :] - x[:, :-1, :]).abs()
    across_x = (torch.arange(dx.shape[-1]) % size) == size - 1
    across_y = (torch.arange(dy.shape[-2]) % size) == size - 1
    across = torch.cat([dx[:, :, across_x].flatten(), dy[:, across_y, :].flatten()])
    inside = torch.cat([dx[:, :, ~across_x].flatten(), dy[:, ~across_y, :].flatten()])
    return (across.mean() / inside.mean()).item()


# ----------------------------------------------------------------------------- Tiled's files

COLUMNS = {"corner": 4, "blob": 8}


def sheet(tiles: torch.Tensor, columns: int) -> torch.Tensor:
    """The tiles in rows of `columns`, native size, no gaps (an empty cell is grey)."""
    return make_grid(tiles, ncols=columns, scale=1, pad=0)


def tsx(kind: str, name: str, a: str, b: str, image: str, count: int, size: int) -> str:
    """A Tiled tileset (.tsx) of one set's sheet, with a Wang set naming the two terrains and every
    tile's Wang id."""
    tiles = corner_tiles() if kind == "corner" else blob_tiles()
    columns = COLUMNS[kind]
    rows = -(-count // columns)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<tileset version="1.8" tiledversion="1.8.2" name={quoteattr(name)} tilewidth="{size}" '
             f'tileheight="{size}" tilecount="{count}" columns="{columns}">',
             f' <image source={quoteattr(image)} width="{columns * size}" height="{rows * size}"/>',
             ' <wangsets>',
             f'  <wangset name={quoteattr(f"{a} / {b}")} type="{"corner" if kind == "corner" else "mixed"}" '
             'tile="-1">',
             f'   <wangcolor name={quoteattr(a)} color="#8b6b3d" tile="-1" probability="1"/>',
             f'   <wangcolor name={quoteattr(b)} color="#3d6b8b" tile="-1" probability="1"/>']
    lines += [f'   <wangtile tileid="{i}" wangid="{",".join(map(str, wang_id(kind, t)))}"/>'
              for i, t in enumerate(tiles)]
    lines += ['  </wangset>', ' </wangsets>', '</tileset>', '']
    return "\n".join(lines)


def tmx(tileset: str, cells: np.ndarray, size: int) -> str:
    """A Tiled map (.tmx) of one layer laid with the tileset's tiles (gid = tile index + 1)."""
    h, w = cells.shape
    data = ",\n".join(",".join(str(int(i) + 1) for i in row) for row in cells)
    return "\n".join(['<?xml version="1.0" encoding="UTF-8"?>',
                      f'<map version="1.8" tiledversion="1.8.2" orientation="orthogonal" renderorder="right-down" '
                      f'width="{w}" height="{h}" tilewidth="{size}" tileheight="{size}" infinite="0" '
                      'nextlayerid="2" nextobjectid="1">',
                      f' <tileset firstgid="1" source={quoteattr(tileset)}/>',
                      f' <layer id="1" name="terrain" width="{w}" height="{h}">',
                      '  <data encoding="csv">', data, '</data>', ' </layer>', '</map>', ''])


def write(sets: dict, req: TilesetRequest, cells: np.ndarray, picture: torch.Tensor, out: Path) -> list[Path]:
    """The sheets, their .tsx, the map's .tmx (corner set) and its picture, into out/."""
    from dataset import to_pil
    out.mkdir(parents=True, exist_ok=True)
    name = f"{req.a}-{req.b}".replace("/", "_").replace(" ", "_")
    size, written = sets["corner"].shape[-1], []
    for kind, tiles in sets.items():
        png, tsx_file = out / f"{name}_{kind}.png", out / f"{name}_{kind}.tsx"
        sheet(tiles, COLUMNS[kind]).save(png)
        tsx_file.write_text(tsx(kind, f"{name} {kind}", req.a, req.b, png.name, len(tiles), size))
        written += [png, tsx_file]
    (out / "map.tmx").write_text(tmx(f"{name}_corner.tsx", cells, size))
    to_pil(picture).save(out / "map.png")
    return written + [out / "map.tmx", out / "map.png"]


@dataclass
class Tileset:
    sets: dict  # kind -> tiles (uint8 N,C,S,S)
    cells: np.ndarray  # the sample map's tile indices into the corner set
    picture: torch.Tensor  # the sample map drawn
    written: list[Path]
    seconds: float
    textures: torch.Tensor  # the two terrains' seamless textures every tile is cut from

    def summary(self) -> str:
        size = self.picture.shape[-1] // self.cells.shape[1]
        return (f"{len(self.sets['corner'])} corner and {len(self.sets['blob'])} blob tiles in "
                f"{self.seconds:.0f} s; the {self.cells.shape[1]}x{self.cells.shape[0]} map's seam ratio "
                f"{seam_ratio(self.picture, size):.2f} (1: invisible)")


def tileset(m: Loaded, req: TilesetRequest, width: int, height: int, out: Path) -> Tileset:
    """Both sets of two terrains, a width x height sample map laid by the corner rule, and their
    files in out/ (write): what tileset.py, the page and the MCP server make."""
    check_model(m, req)
    t0 = time.perf_counter()
    tex = textures(m, req)
    sets = make_sets(m, req, tex)
    cells = corner_map(random_corners(width, height, req.seed))
    picture = render(sets["corner"], cells)
    return Tileset(sets, cells, picture, write(sets, req, cells, picture, out), time.perf_counter() - t0,
                   tex)


# ----------------------------------------------------------------------------- measuring them

def quadrants(images: torch.Tensor) -> torch.Tensor:
    """N x C x S x S -> 4N x C x S x S: each corner quadrant (top-left, top-right, bottom-right,
    bottom-left), upscaled x2 with nearest so the probe sees tile-sized pictures."""
    h = images.shape[-1] // 2
    parts = [images[..., :h, :h], images[..., :h, h:], images[..., h:, h:], images[..., h:, :h]]
    quads = torch.stack(parts, 1).flatten(0, 1)
    return quads.repeat_interleave(2, -1).repeat_interleave(2, -2)


def corner_fidelity(m: Loaded, tiles: torch.Tensor, req: TilesetRequest) -> tuple[float, float]:
    """(share of the corner set's tile corners that the terrain probe calls their terrain, the probe's
    own held-out accuracy on quadrants of training tiles)."""
    probe = terrain_probe(m, req)
    said = probe(quadrants(tiles)).argmax(1)
    want = torch.tensor([c for tile in corner_tiles() for c in tile])
    return (said == want).double().mean().item(), probe.held


def compare(m: Loaded, req: TilesetRequest, cells: np.ndarray, sets: dict, tex: torch.Tensor) -> list[str]:
    """Lines for the README: the seams of the same tiles drawn each on its own, of seamless single
    tiles (their own wrap), and the corner fidelity (class models)."""
    from metrics import seam_ratio as wrap_ratio
    size = sets["corner"].shape[-1]
    alone = make_sets(m, req, tex, independent=True, kinds=("corner",))
    singles, _ = generate(m, SpriteRequest([req.a, req.b] * 8, req.seed, req.sampler, req.steps,
                                           tileable=True))
    lines = [f"the same map of tiles drawn each on its own (nothing shared): seam ratio "
             f"{seam_ratio(render(alone['corner'], cells), size):.2f}",
             f"16 single --tileable tiles, each wrapped onto itself: seam ratio {wrap_ratio(singles):.2f}"]
    if m.condition.kind == "class":
        hit, held = corner_fidelity(m, sets["corner"], req)
        lines.append(f"tile corners a probe calls their terrain: {hit:.0%} of 64 (the probe: {held:.0%} "
                     "on quadrants of held-out training tiles)")
    return lines
