"""The MCP server as an agent meets it: started over stdio by the SDK's own client, its tools listed
and called, a bad argument answered as a tool error, the server stopped at the end."""
import base64
import io
import sys
import time

import anyio
import numpy as np
import psutil
from PIL import Image

from conftest import ROOT


def call_server(out, calls, log):
    """Start mcp_server.py, run each (tool, arguments) in turn; (tool names, results, seconds each)."""
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    async def go():
        # one thread, as each test worker has (threads that share a core stall each other)
        params = StdioServerParameters(command=sys.executable, args=["mcp_server.py", f"--out={out}"],
                                       cwd=str(ROOT), env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
        async with stdio_client(params, errlog=log) as streams:
            async with ClientSession(*streams) as s:
                await s.initialize()
                names = [t.name for t in (await s.list_tools()).tools]
                results, seconds = [], []
                for tool, args in calls:
                    t0 = time.perf_counter()
                    results.append(await s.call_tool(tool, args))
                    seconds.append(time.perf_counter() - t0)
                return names, results, seconds
    return anyio.run(go)


def test_the_server_draws_what_generate_draws(smoke_run, tmp_path, capsys):
    import generate
    args = {"model_path": str(smoke_run), "count": 2, "seed": 3, "steps": 2}
    with open(tmp_path / "server.log", "w") as log:
        names, (first, second, bad, unknown), seconds = call_server(tmp_path / "mcp", [
        ("generate_sprites", args), ("generate_sprites", {**args, "seed": 4}),
            ("generate_sprites", {**args, "count": 0}), ("generate_sprites", {**args, "palette": "nope.hex"})],
            log)
    assert {"list_models", "generate_sprites", "edit_sprite", "make_tileset", "walk_cycle"} <= set(names)
    assert not first.is_error and [c.type for c in first.content] == ["image", "image", "text"]
    assert str(tmp_path / "mcp") in first.content[-1].text
    served = [np.asarray(Image.open(io.BytesIO(base64.b64decode(c.data)))) for c in first.content[:2]]
    assert generate.main([f"--model={smoke_run}", "--num_images=2", "--seed=3", "--steps=2",
                          f"--out={tmp_path / 'g' / 'generated_images.png'}"]) == 0
    for i, img in enumerate(served):
        assert np.array_equal(img, np.asarray(Image.open(tmp_path / "g" / "generated" / f"{i:04d}.png")))
    assert bad.is_error and "count must be between 1 and 64" in bad.content[0].text
    assert unknown.is_error and "\n" not in unknown.content[0].text
    print(f"first call {seconds[0]:.1f} s (loads the model), second {seconds[1]:.1f} s")  # warm: no reload
    alive = [p for p in psutil.process_iter(["cmdline"]) if "mcp_server.py" in " ".join(p.info["cmdline"] or [])
             and str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert not alive  # the client's exit stopped the server
