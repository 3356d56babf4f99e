"""A Model Context Protocol server over stdio: an agent or an editor asks for sprites, variations,
tilesets and walk cycles in one call each; models are loaded once and kept warm.

Usage:
    python mcp_server.py                          # serve on stdio (an MCP client starts it)
    python mcp_server.py --out=outputs/mcp        # where each call's files go (a folder per call)

Tools: list_models; generate_sprites (prompt or classes, count, seed, steps, guidance, palette,
tileable); edit_sprite (a variation of a sprite, inpainting with a mask, outpainting to a side);
make_tileset (two terrains: the Wang and blob sets, Tiled's .tsx and a .tmx map); walk_cycle (a
character's four-direction walk from a standing frame or a prompt, when a character model exists).
Each returns its sprites as PNG images at native size and the paths of the files it wrote; a bad
argument comes back as a tool error of one sentence. Sprites are those generate.py draws with the
same model, seed and options, bit for bit.
"""

import functools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from config import GUIDANCE, OUTPUTS, PALETTE, SAMPLER, SHIPPED, UserError, option, parse_args, script

MODELS = (SHIPPED, f"{SHIPPED}/terrain", f"{SHIPPED}/characters")  # offered when they exist
MAX_COUNT = 64


@dataclass
class ServerOptions:
    out: str = option(f"{OUTPUTS}/mcp", "the folder that holds each call's files (a folder per call)")
    device: str = option("auto", "auto (a GPU if one is visible) | cpu | cuda")


@functools.cache
def model(where: str, device: str):
    """A model loaded once per server and kept on its device."""
    from devices import choose_device
    from model import load_model
    m = load_model(where)
    m.net.to(choose_device(device))
    return m


def png(images) -> list:
    """uint8 N,C,H,W -> MCP images (PNG at native size)."""
    import io
    from mcp.server.mcpserver import Image
    from dataset import to_pil
    out = []
    for img in images:
        buf = io.BytesIO()
        to_pil(img).save(buf, format="PNG")
        out.append(Image(data=buf.getvalue(), format="png"))
    return out


def prompts_of(prompt: str) -> tuple[str, ...]:
    return (prompt.strip(),) if prompt.strip() else ()


def check_count(count: int, steps: int) -> None:
    if not 1 <= count <= MAX_COUNT:
        raise UserError(f"count must be between 1 and {MAX_COUNT}, got {count}")
    if steps < 0:
        raise UserError(f"steps must be >= 0 (0: the sampler's default), got {steps}")


def build_server(opts: ServerOptions):
    import anyio
    from mcp.server.mcpserver import Context, Image, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer("pixel-art-diffusion", instructions="Pixel-art sprites, tilesets and walk cycles "
                       "from small diffusion models; call list_models first.")
    root = Path(opts.out)

    def folder(tool: str) -> Path:
        return root / f"{tool}-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}"

    async def stage(ctx: Context, done: int, total: int, message: str, fn):
        """fn() in a worker thread, reported as progress `done` of `total`."""
        await ctx.report_progress(done, total, message)
        return await anyio.to_thread.run_sync(fn)

    def tool(fn):
        """A tool whose UserError (a bad argument) comes back as a tool error of one sentence; the
        server carries on."""
        @functools.wraps(fn)
        async def wrapped(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except UserError as e:
                raise ToolError(str(e)) from None
        return server.tool()(wrapped)

    @tool
    async def list_models(ctx: Context) -> str:
        """The models this server can use, each with what it is asked for: a prompt (and the words
        its captions know), classes, or a standing frame (character models); size and channels."""
        import json
        from model import load_model
        found = []
        runs = sorted(Path("runs").glob("*/config.json")) if Path("runs").is_dir() else []
        for where in [*(m for m in MODELS if (Path(__file__).parent / m / "pixelart.json").is_file()),
                      *(str(p.parent) for p in runs)]:
            try:
                m = await anyio.to_thread.run_sync(load_model, where)
            except UserError:
                continue  # an autoencoder's run, or one not yet saved
            entry = {"model": where, "takes": m.spec.condition, "size": m.spec.image_size,
                     "channels": "RGBA" if m.spec.channels == 4 else "RGB", "classes": m.classes}
            if m.spec.condition == "text":
                entry["vocabulary"] = sorted(m.condition.vocabulary)
                entry.pop("classes")
            found.append(entry)
        return json.dumps(found, indent=1)

    @tool
    async def generate_sprites(ctx: Context, prompt: str = "", classes: str = "", count: int = 4,
                               seed: int = 0, steps: int = 0, guidance: float = GUIDANCE,
                               palette: str = PALETTE, tileable: bool = False, sampler: str = SAMPLER,
                               negative_prompt: str = "", model_path: str = SHIPPED) -> list[Image | str]:
        """New sprites: `prompt` for text models (e.g. 'a blue book'), `classes` (comma-separated) for
        class models; `count` each. palette: data (the model's), none, or a .hex/.gpl file."""
        from sprites import SpriteRequest, check, generate, save
        check_count(count, steps)
        req = SpriteRequest([], seed, sampler, steps, guidance, palette, negative_prompt, tileable=tileable)
        await stage(ctx, 0, 3, "checking the options", lambda: check(req))
        m = await stage(ctx, 1, 3, "loading the model", lambda: model(model_path, opts.device))
        rows, req.wanted = await stage(ctx, 1, 3, "reading the request", lambda: m.condition.request(
            classes, prompts_of(prompt), count))
        images, raw = await stage(ctx, 2, 3, "sampling", lambda: generate(m, req))
        written = save(images, raw, rows, count, folder("generate") / "generated_images.png", 4, tileable)
        return [*png(images), "wrote " + ", ".join(map(str, written))]

    @tool
    async def edit_sprite(ctx: Context, image: str, strength: float = 0.5, mask: str = "",
                          extend: str = "", by: int = 8, prompt: str = "", classes: str = "",
                          count: int = 4, seed: int = 0, steps: int = 0, guidance: float = GUIDANCE,
                          palette: str = PALETTE, model_path: str = SHIPPED) -> list[Image | str]:
        """Start from the sprite file `image`: a variation (strength 0..1: how much is redrawn); with
        `mask` (a PNG: white or opaque = repaint) inpainting; with `extend` (left/right/up/down) the
        sprite moved `by` pixels and the strip filled (outpainting)."""
        from sprites import SpriteRequest, check, generate, save, start_from
        check_count(count, steps)
        if not 0 <= strength <= 1:
            raise UserError(f"strength must be in [0, 1], got {strength}")
        if mask and extend:
            raise UserError("mask and extend both say what to repaint: give one")
        req = SpriteRequest([], seed, SAMPLER, steps, guidance, palette)
        await stage(ctx, 0, 3, "checking the options", lambda: check(req))
        m = await stage(ctx, 1, 3, "loading the model", lambda: model(model_path, opts.device))
        req.start = await stage(ctx, 1, 3, "reading the sprite", lambda: start_from(
            m.spec, image, mask, extend, by, 1.0 if mask or extend else strength))
        rows, req.wanted = await stage(ctx, 1, 3, "reading the request", lambda: m.condition.request(
            classes, prompts_of(prompt), count))
        images, raw = await stage(ctx, 2, 3, "sampling", lambda: generate(m, req))
        written = save(images, raw, rows, count, folder("edit") / "edited_images.png")
        return [*png(images), "wrote " + ", ".join(map(str, written))]

    @tool
    async def make_tileset(ctx: Context, terrain_a: str = "floor", terrain_b: str = "water", seed: int = 0,
                           width: int = 16, height: int = 16,
                           model_path: str = f"{SHIPPED}/terrain") -> list[Image | str]:
        """A tileset of two terrains (classes of a tile model) that joins in every placement: the
        16-tile corner Wang set, the 47-tile blob set, Tiled .tsx files and a width x height map."""
        import autotile
        if not (1 <= width <= 256 and 1 <= height <= 256):
            raise UserError(f"width and height must be between 1 and 256 tiles, got {width}x{height}")
        m = await stage(ctx, 0, 2, "loading the model", lambda: model(model_path, opts.device))
        req = autotile.TilesetRequest(terrain_a, terrain_b, seed)
        t = await stage(ctx, 1, 2, "drawing the terrains and cutting the tiles",
                        lambda: autotile.tileset(m, req, width, height, folder("tileset")))
        sheets = [Image(path=p) for p in t.written if p.suffix == ".png"]
        return [*sheets, t.summary(), "wrote " + ", ".join(map(str, t.written))]

    @tool
    async def walk_cycle(ctx: Context, image: str = "", prompt: str = "", seed: int = 0, steps: int = 0,
                         model_path: str = f"{SHIPPED}/characters") -> list[Image | str]:
        """A character's walk cycle in four directions (rows up, left, down, right; 9 frames each) from
        `image`, a 64x64 PNG of it standing and facing down with a transparent background, or drawn
        from `prompt` first; writes sheet.png, a GIF per direction, Aseprite JSON and a Godot .tres."""
        import animation
        from animation import WalkRequest, check_model, read_reference, write_walk
        check_count(1, steps)
        if not image and not prompt.strip():
            raise UserError("give the standing frame (image=path.png) or a prompt")
        ref = await stage(ctx, 0, 3, "reading the sprite", lambda: read_reference(
            image, log=lambda _: None, what="image") if image else None)
        m = await stage(ctx, 1, 3, "loading the model", lambda: model(model_path, opts.device))
        await stage(ctx, 1, 3, "checking the model", lambda: check_model(m))
        walk = await stage(ctx, 2, 3, "drawing 35 frames", lambda: animation.walk_cycle(
            m, WalkRequest(ref, prompt, seed, steps=steps)))
        written = write_walk(walk, folder("walk"))
        return [*png(walk.flatten(0, 1)), "wrote " + ", ".join(map(str, written))]

    return server


@script
def main(argv: list[str]) -> None:
    o = ServerOptions()
    parse_args(argv, __doc__, o, config=False)
    build_server(o).run("stdio")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
