"""A page to make sprites: generate.py in the browser (Gradio), served on this computer.

Usage:
    python app.py                              # http://127.0.0.1:7860: the latest run, else the shipped model
    python app.py --model=pretrained           # the shipped prompt model, whatever runs/ holds
    python app.py --model=pretrained/terrain   # any run or export; tileable terrain
    python app.py --port=7861 --host=0.0.0.0   # another port; listen beyond this computer
    python app.py --screenshot=samples/app.png # headless chromium clicks "Make sprites": seconds, picture

The page: a prompt (text models; it starts with a real caption of the training data) or a class
(class models), guidance, seed (with a random one),
sampler steps, how many sprites, the palette (the data's, none, or your .hex / .gpl), tileable sprites
(shown repeated 3x3). Sprites are shown zoomed with nearest-neighbour on a checkerboard, so pixels stay
square and transparency shows; each downloads at native size as a PNG, and "sprite sheet" gives them
all in one PNG. Upload a sprite to make variations of it (strength) or paint over it to repaint only
what you painted. One request samples at a time; the others wait in a queue, with their place shown.
The model is loaded and warmed up before the page is served, so the first click is as quick as the
next; only the last KEEP requests' files are kept.
"""
from __future__ import annotations

import functools
import random
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from config import GUIDANCE, SHIPPED, UserError, option, parse_args, script

ZOOM = 8  # on-page upscale of a sprite (nearest-neighbour)
KEEP = 16  # request folders kept on disk; older ones are deleted
LIMITS = {"count": (1, 64), "steps": (0, 100), "guidance": (0.0, 20.0), "seed": (0, 2**31 - 1),
          "strength": (0.0, 1.0)}
MAX_UPLOAD = "10mb"  # sprites and palettes are kilobytes; anything larger is refused by the server
IN_TURN = "(all, in turn)"  # the class choice that cycles through the classes


@dataclass
class AppOptions:
    model: str = option("", "a run, an exported model or a folder of runs (its latest); default: the "
                            f"latest run under runs/, else the shipped model ({SHIPPED}/)")
    host: str = option("127.0.0.1", "address to listen on; 127.0.0.1: this computer only")
    port: int = option(7860, "port to listen on")
    characters: str = option("pretrained/characters", "a character model for the walk-cycle tab "
                                                      "(skipped when it does not exist)")
    screenshot: str = option("", "instead of serving: open the page in headless chromium, click "
                                 "'Make sprites' at the defaults, print the seconds from the click to "
                                 "the sprites and save a screenshot here")


def checkerboard(images, zoom: int = ZOOM) -> list:
    """uint8 N,C,H,W -> RGB PIL images upscaled with nearest-neighbour, transparent pixels over a
    grey checkerboard of one sprite pixel per square."""
    import numpy as np
    from PIL import Image
    n, c, h, w = images.shape
    yy, xx = np.mgrid[:h, :w]
    board = np.where((yy + xx) % 2 == 0, 200, 240)[..., None].astype(np.float32)
    out = []
    for img in images.permute(0, 2, 3, 1).numpy().astype(np.float32):
        alpha = img[..., 3:] / 255 if c == 4 else 1.0
        rgb = (img[..., :3] * alpha + board * (1 - alpha)).round().astype(np.uint8)
        out.append(Image.fromarray(rgb).resize((w * zoom, h * zoom), Image.NEAREST))
    return out


def check_numbers(**values: float) -> None:
    """Numbers typed into the page's fields, checked against LIMITS: one sentence if out of range."""
    for name, value in values.items():
        lo, hi = LIMITS[name]
        if value is None or not lo <= value <= hi:
            raise UserError(f"{name} must be between {lo:g} and {hi:g}; got {value}")


def sprite_editor_value(path: str | None, m) -> dict | None:
    """An uploaded sprite, read as generate.py reads --init, zoomed for painting a mask on it."""
    from sprites import read_sprite
    if not path:
        return None
    zoomed = checkerboard(read_sprite(path, "sprite", m.spec)[None])[0]
    return {"background": zoomed, "layers": [], "composite": None}


def painted_mask(editor: dict | None, size: int):
    """bool 1,H,W of the sprite pixels painted on in the editor (any stroke in a pixel's square); None
    when nothing is painted."""
    import numpy as np
    import torch
    from PIL import Image
    layers = [np.asarray(layer) for layer in (editor or {}).get("layers") or [] if layer is not None]
    if not layers:
        return None
    painted = np.zeros(layers[0].shape[:2], bool)
    for layer in layers:
        painted |= layer[..., -1] > 0 if layer.ndim == 3 and layer.shape[-1] == 4 else layer.any(-1)
    # a sprite pixel counts as painted when any stroke touches its square
    cells = Image.fromarray(painted.astype(np.uint8) * 255).resize((size, size), Image.BOX)
    mask = torch.from_numpy(np.asarray(cells) > 0)[None]
    if mask.all():
        raise UserError("the painted mask covers the whole sprite: clear it and use strength for "
                        "variations instead")
    return mask if mask.any() else None


def make_sprites(m, out_root: Path, prompt: str, cls: str, guidance: float, seed: float,
                 steps: float, count: float, palette: str, palette_file: str | None,
                 sprite_file: str | None, editor: dict | None, strength: float,
                 tileable: bool) -> tuple[list, list[str], str, str]:
    """One click of "Make sprites": (gallery images with captions, native PNG paths, sheet path,
    a status line)."""
    from dataset import make_grid
    from conditioning import unknown_words_line
    from sprites import SpriteRequest, Start, generate, read_sprite
    check_numbers(count=count, steps=steps, guidance=guidance, seed=seed, strength=strength)
    if palette == "file":
        if not palette_file:
            raise UserError("palette: choose a .hex or .gpl file, or pick 'data' or 'none'")
        palette = palette_file
    start = None
    if sprite_file:
        start = Start(read_sprite(sprite_file, "sprite", m.spec), painted_mask(editor, m.spec.image_size),
                      strength)
    prompts = (prompt.strip(),) if prompt and prompt.strip() else ()  # the field shows on text models only
    _, wanted = m.condition.request("" if cls in ("", IN_TURN, None) else cls, prompts, int(count))
    t0 = time.perf_counter()
    images, _ = generate(m, SpriteRequest(wanted, int(seed), steps=int(steps), guidance=guidance,
                                          palette=palette, start=start, tileable=tileable, progress=True))
    seconds = time.perf_counter() - t0
    folder = out_root / f"{time.time_ns()}-{uuid.uuid4().hex[:6]}"  # named in order of the clicks
    folder.mkdir(parents=True)
    for old in sorted(p for p in out_root.iterdir() if p.is_dir())[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    files = []
    for i, img in enumerate(images):
        files.append(str(folder / f"sprite_{i:02d}.png"))
        make_grid(img[None], scale=1, pad=0).save(files[-1])
    sheet = folder / "sprite_sheet.png"
    make_grid(images, scale=1, pad=0).save(sheet)
    shown = checkerboard(images.repeat(1, 1, 3, 3) if tileable else images, ZOOM // 2 if tileable else ZOOM)
    gallery = [(img, f"sprite_{i:02d}.png") for i, img in enumerate(shown)]
    status = f"{len(images)} sprites in {seconds:.1f} s (seed {int(seed)})"
    note = unknown_words_line(m.condition, prompts)
    if note:
        status += f"; {note[len('note: '):]}"
    return gallery, files, str(sheet), status


def shown_errors(fn):
    """A bad input becomes the page's error message; the server stays up."""
    import gradio as gr

    @functools.wraps(fn)  # the page's API (gradio_client) names the parameters as fn does
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            raise gr.Error(str(e)) from None
    return wrapped


def build_page(m, out_root: Path, walker=None):
    """The Gradio Blocks of the page, bound to the model: a tab to make sprites, for a model of RGB
    tiles with classes a tab to make tilesets, and with a character model (walker) a walk-cycle tab.
    Each action is also an API endpoint (gradio_client): /make_sprites, /make_tileset, /walk_cycle."""
    import gradio as gr
    with gr.Blocks(title="Pixel Art Diffusion") as page:
        gr.Markdown(f"## Pixel Art Diffusion\nModel: `{m.source}` ({m.why}; {m.spec.image_size}x"
                    f"{m.spec.image_size}, {'RGBA' if m.spec.channels == 4 else 'RGB'})")
        with gr.Tabs():
            with gr.Tab("sprites"):
                sprites_tab(m, out_root)
            if m.spec.channels == 3 and m.condition.kind == "class":
                with gr.Tab("tileset", elem_id="tileset-tab"):
                    tileset_tab(m, out_root)
            if walker is not None:
                with gr.Tab("walk cycle", elem_id="walk-tab"):
                    walk_tab(walker, out_root)
    return page


def sprites_tab(m, out_root: Path) -> None:
    import gradio as gr
    kind = m.condition.kind  # the page shows the field this model is asked by
    with gr.Row():
        with gr.Column(scale=1):
            prompt = gr.Textbox(label="prompt", value=(m.condition.defaults(1)[0] or "") if
                                kind == "text" else "", visible=kind == "text", elem_id="prompt",
                                info="what to draw; empty: no prompt")
            cls = gr.Dropdown([IN_TURN, *m.classes], value=IN_TURN, label="class",
                              visible=kind == "class", elem_id="class")
            count = gr.Slider(*LIMITS["count"], value=8, step=1, label="sprites", elem_id="count")
            with gr.Accordion("settings", open=False):
                guidance = gr.Slider(*LIMITS["guidance"], value=GUIDANCE, step=0.5, label="guidance",
                                     elem_id="guidance")
                steps = gr.Slider(*LIMITS["steps"], value=0, step=1,
                                  label="sampler steps (0: DPM-Solver++'s 10)", elem_id="steps")
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, label="seed", elem_id="seed")
                    dice = gr.Button("random seed", elem_id="random-seed")
                palette = gr.Radio(["data", "none", "file"], value="data", label="palette",
                                   info="data: the training data's colours; none: raw colours")
                palette_file = gr.File(label="palette file (.hex or .gpl)", file_types=[".hex", ".gpl"],
                                       elem_id="palette-file")
                tileable = gr.Checkbox(label="tileable (shown repeated 3x3)", elem_id="tileable")
            with gr.Accordion("start from a sprite", open=False):
                sprite = gr.File(label="sprite (PNG)", file_types=["image"], elem_id="sprite")
                editor = gr.ImageEditor(label="paint where to repaint (nothing painted: the whole "
                                              "sprite, by strength)", type="numpy", sources=(),
                                        layers=False, transforms=(), elem_id="editor",
                                        brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed"))
                strength = gr.Slider(*LIMITS["strength"], value=0.6, step=0.05, label="strength",
                                     elem_id="strength")
            make = gr.Button("Make sprites", variant="primary", elem_id="make")
        with gr.Column(scale=2):
            status = gr.Markdown(elem_id="status")
            gallery = gr.Gallery(label="sprites", columns=4, format="png", elem_id="gallery")
            sheet = gr.DownloadButton("sprite sheet", elem_id="sheet")
            files = gr.File(label="each sprite at native size", file_count="multiple", elem_id="files")

    private = dict(api_visibility="private")  # page mechanics, not actions
    dice.click(lambda: random.randrange(LIMITS["seed"][1]), outputs=seed, **private)
    sprite.upload(shown_errors(lambda path: sprite_editor_value(path, m)), inputs=sprite, outputs=editor,
                  **private)
    sprite.clear(lambda: None, outputs=editor, **private)

    def on_make(prompt, cls, guidance, seed, steps, count, palette, palette_file, sprite, editor,
                strength, tileable, progress=gr.Progress(track_tqdm=True)):
        return make_sprites(m, out_root, prompt, cls, guidance, seed, steps, count, palette, palette_file,
                            sprite, editor, strength, tileable)

    make.click(shown_errors(on_make), outputs=[gallery, files, sheet, status],
               inputs=[prompt, cls, guidance, seed, steps, count, palette, palette_file, sprite,
                       editor, strength, tileable], api_name="make_sprites")


def results_column(name: str, shown: str, files: str) -> tuple:
    """A tab's right-hand column: (its status line, a gallery of pictures, its files to download)."""
    import gradio as gr
    with gr.Column(scale=2):
        return (gr.Markdown(elem_id=f"{name}-status"),
                gr.Gallery(label=shown, columns=1, format="png", elem_id=f"{name}-gallery"),
                gr.File(label=files, file_count="multiple", elem_id=f"{name}-files"))


def tileset_tab(m, out_root: Path) -> None:
    import gradio as gr
    with gr.Row():
        with gr.Column(scale=1):
            a = gr.Dropdown(m.classes, value=m.classes[0], label="terrain", elem_id="terrain-a")
            b = gr.Dropdown(m.classes, value=m.classes[-1], label="meets terrain", elem_id="terrain-b")
            seed = gr.Number(value=0, precision=0, label="seed", elem_id="tileset-seed")
            make = gr.Button("Make tileset", variant="primary", elem_id="make-tileset")
        status, picture, files = results_column("tileset", "the map, the corner set, the blob set",
                                                "for Tiled: sheets, .tsx tilesets, .tmx map")

    def on_make(terrain_a, terrain_b, seed, progress=gr.Progress(track_tqdm=True)):
        return make_tileset(m, out_root, terrain_a, terrain_b, seed)

    make.click(shown_errors(on_make), inputs=[a, b, seed], outputs=[picture, files, status],
               api_name="make_tileset")


def make_tileset(m, out_root: Path, a: str, b: str, seed: float) -> tuple[list, list[str], str]:
    """One click of "Make tileset": (pictures zoomed x4 with captions, the files, a status line)."""
    import autotile
    from PIL import Image
    check_numbers(seed=seed)
    req = autotile.TilesetRequest(a, b, int(seed))
    t = autotile.tileset(m, req, 12, 8, out_root / f"{time.time_ns()}-{uuid.uuid4().hex[:6]}")
    pictures = [(Image.open(p), p.name) for p in t.written if p.suffix == ".png"]
    shown = [(img.resize((img.width * 2, img.height * 2), Image.NEAREST), name) for img, name in pictures]
    return shown, [str(p) for p in t.written], t.summary()


def walk_tab(m, out_root: Path) -> None:
    import gradio as gr
    with gr.Row():
        with gr.Column(scale=1):
            sprite = gr.File(label="the character standing, facing down (64x64 PNG with transparency)",
                             file_types=["image"], elem_id="walk-sprite")
            prompt = gr.Textbox(label="or describe it", elem_id="walk-prompt",
                                info="e.g. a man with blond hair, a red shirt and teal pants")
            seed = gr.Number(value=0, precision=0, label="seed", elem_id="walk-seed")
            make = gr.Button("Make walk cycle", variant="primary", elem_id="make-walk")
        status, shown, files = results_column("walk", "the sheet and the walk in each direction",
                                              "sheet.png, GIFs, Aseprite JSON, Godot .tres")

    def on_make(sprite, prompt, seed, progress=gr.Progress(track_tqdm=True)):
        return make_walk(m, out_root, sprite, prompt, seed)

    make.click(shown_errors(on_make), inputs=[sprite, prompt, seed], outputs=[shown, files, status],
               api_name="walk_cycle")


def make_walk(m, out_root: Path, sprite: str | None, prompt: str, seed: float) -> tuple[list, list[str], str]:
    """One click of "Make walk cycle": (the sheet zoomed and the four GIFs, the files, a status line)."""
    from PIL import Image
    from animation import WalkRequest, read_reference, walk_cycle, write_walk
    check_numbers(seed=seed)
    notes = []
    ref = read_reference(sprite, log=notes.append, what="sprite") if sprite else None
    t0 = time.perf_counter()
    walk = walk_cycle(m, WalkRequest(ref, prompt or "", int(seed), progress=True))
    written = write_walk(walk, out_root / f"{time.time_ns()}-{uuid.uuid4().hex[:6]}")
    sheet = Image.open(written[0])
    shown = [(sheet.resize((sheet.width * 3, sheet.height * 3), Image.NEAREST), written[0].name),
             *((str(p), p.name) for p in written if p.suffix == ".gif")]
    status = " ".join(notes + [f"36 frames in {time.perf_counter() - t0:.1f} s (seed {int(seed)})"])
    return shown, [str(p) for p in written], status


CSS = "#gallery img, #editor img, #editor canvas { image-rendering: pixelated; }"


def free_port() -> int:
    """A port nobody listens on now (gradio needs a number, not 0)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def warm_up(m) -> float:
    """One small request before serving, so that the first click does not pay for loading the text
    encoder and the first calls of each kernel. Returns its seconds."""
    from sprites import SpriteRequest, generate
    t0 = time.perf_counter()
    generate(m, SpriteRequest(m.condition.defaults(2)))
    return time.perf_counter() - t0


def serve(m, host: str, port: int, block: bool = True, walker=None):
    """Start the page; returns (app, url) when block is False (tests). The request folders go with
    the server (deleted when it stops)."""
    import atexit
    out_root = Path(tempfile.mkdtemp(prefix="pixelart-app-"))
    atexit.register(shutil.rmtree, out_root, True)
    page = build_page(m, out_root, walker)
    page.queue(default_concurrency_limit=1, max_size=32)
    _, url, _ = page.launch(server_name=host, server_port=port, prevent_thread_lock=not block,
                            max_file_size=MAX_UPLOAD, allowed_paths=[str(out_root)], css=CSS,
                            footer_links=[], quiet=True)  # quiet: no share=True hint for local users
    return page, url


# Headless Debian chromium (tests/install_tools.sh), with its calls home turned off: this machine's
# network refuses them.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def open_browser():
    """(playwright, browser): the system's chromium driven by playwright; nothing is downloaded."""
    import shutil
    exe = shutil.which("chromium")
    if exe is None:
        raise UserError("no chromium on this machine: run tests/install_tools.sh")
    from playwright.sync_api import sync_playwright
    pw = sync_playwright().start()
    return pw, pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)


def click_make(page, count: int, timeout_s: float = 600) -> float:
    """Click "Make sprites" and wait for `count` new sprites in the gallery (each request's files have
    new addresses); returns the seconds taken."""
    shown = "() => [...document.querySelectorAll('#gallery img')].map(e => e.src).join()"
    before = page.evaluate(shown)
    t0 = time.perf_counter()
    page.click("#make")
    page.wait_for_function("([n, b]) => { const s = [...document.querySelectorAll('#gallery img')]; "
                           "return s.length >= n && s.map(e => e.src).join() !== b; }",
                           arg=[count, before], timeout=timeout_s * 1000)
    return time.perf_counter() - t0


def screenshot(m, path: Path) -> None:
    """The benchmark lines and the README's picture: the page at its defaults, two clicks (the first
    and the next), then the screenshot."""
    import torch
    app, url = serve(m, "127.0.0.1", free_port(), block=False)
    pw, browser = open_browser()
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(url)
        page.locator("#make").wait_for(timeout=60_000)
        first = click_make(page, 8)
        page.get_by_text("settings").click()  # the next click asks for other sprites: seed 1
        page.fill("#seed input", "1")
        second = click_make(page, 8)
        # the gallery fills before the page leaves its pending state (results faded): wait for the
        # status line of this click and for no element still marked pending
        page.wait_for_function("document.querySelector('#status').innerText.includes('seed 1')",
                               timeout=60_000)
        page.wait_for_function("!document.querySelector('.pending, .generating, .eta-bar')", timeout=60_000)
        print(f"click to sprites: first {first:.1f} s, next {second:.1f} s (8 sprites, default settings, "
              f"{torch.get_num_threads()} threads)")
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        print(f"wrote {path}")
    finally:
        browser.close()
        pw.stop()
        app.close()


@script
def main(argv: list[str]) -> int:
    o = AppOptions()
    parse_args(argv, __doc__, o, config=False)
    if not 0 < o.port < 65536:
        raise UserError(f"port must be between 1 and 65535, got {o.port}")
    from config import resolve_path
    from model import load_model
    m = load_model(o.model)
    print(f"model: {m.source} ({m.why}); warmed up in {warm_up(m):.1f} s")
    walker = load_model(o.characters) if o.characters and resolve_path(o.characters).exists() else None
    if walker is not None:
        print(f"walk cycles: {walker.source}")
    if o.screenshot:
        screenshot(m, Path(o.screenshot))
        return 0
    print(f"serving on http://{o.host}:{o.port} (Ctrl-C stops)")
    serve(m, o.host, o.port, walker=walker)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
