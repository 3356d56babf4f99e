"""The speed and scale-out paths, on CPU: flags that matter on a GPU must not break a CPU run, and
two processes, as torchrun or accelerate launch starts them, train and resume. (bench.py's
measurements are checked with the documented commands in test_scripts.py.)"""
import csv
import functools
import os
import subprocess
import sys

import pytest
import torch

import train
from config import ROOT, preset
from devices import fast_bf16
from conftest import smoke_argv


def rows(run_dir):
    return list(csv.DictReader((run_dir / "losses.csv").open()))


def test_mixed_precision_runs_on_cpu(tmp_path):
    argv = smoke_argv(tmp_path, "flags", "--mixed_precision=bf16", "--max_steps=2", "--sample_every=0")
    assert train.main(argv) == 0
    assert len(rows(tmp_path / "flags")) == 2
    assert all(torch.isfinite(torch.tensor(float(r["loss"]))) for r in rows(tmp_path / "flags"))


def test_auto_precision_is_bf16_exactly_where_the_device_does_it_fast(monkeypatch):
    import devices
    cpu = torch.device("cpu")
    for fast, want in ((True, "bf16"), (False, "no")):
        monkeypatch.setattr(devices, "fast_bf16", lambda device, fast=fast: fast)
        assert devices.precision("auto", cpu) == want
        assert devices.precision("no", cpu) == "no" and devices.precision("bf16", cpu) == "bf16"
    assert preset("prompt").run.mixed_precision == "auto" == preset("seed").run.mixed_precision


def test_a_cpu_does_bf16_only_where_its_flag_is_set_and_a_bf16_convolution_is_faster(monkeypatch, tmp_path):
    """Some CPUs with AVX512-BF16 run bf16 convolutions slower than fp32 (RESULTS.md): measured, not
    assumed from the flag."""
    import time

    import devices
    for flags, slow, want in ((" fpu sse", None, False), (" avx512_bf16", torch.bfloat16, False),
                              (" avx512_bf16", torch.float32, True), (" amx_bf16", torch.float32, True)):
        (tmp_path / "cpuinfo").write_text(f"flags\t:{flags}\n")
        monkeypatch.setattr(devices, "open", lambda *_, f=tmp_path / "cpuinfo": f.open(), raising=False)

        def timed_conv(a, *args, slow=slow, **kw):  # no real convolution: its time varies by CPU
            if a.dtype == slow:
                time.sleep(0.002)
            return a
        monkeypatch.setattr(torch.nn.functional, "conv2d", timed_conv)
        assert devices._cpu_bf16_faster.__wrapped__() is want, flags


@pytest.mark.parametrize("condition", ["class", "text"])
def test_cpu_attention_is_the_same_function(condition):
    """Every attention layer gets the CPU kernels (heads of 8: SDPA padded to 16 channels, in fp32;
    of 32: matmuls under bf16). fp32 outputs with heads of 32 are bit for bit diffusers' default's,
    with heads of 8 within fp32 rounding; bf16 ones within bf16's own error."""
    import bench
    import model
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0
    for heads in (8, 32):
        cfg = preset("smoke", channels=4, condition=condition, attention_head_dim=heads)
        torch.manual_seed(0)
        net = model.build(cfg.model, 3).eval()
        layers = [m for m in net.modules() if isinstance(m, Attention)]
        assert layers and all(isinstance(m.processor, model.CpuAttention) for m in layers)
        cond = bench.stand_in_conditions(cfg, 2, ["a", "b", "c"])
        x, t = torch.randn(2, 4, 32, 32), torch.tensor([10, 900])

        def both():
            with torch.no_grad():
                fp32 = net(x, t, **cond).sample
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return fp32, net(x, t, **cond).sample.float()
        fast32, fast16 = both()
        for m in layers:
            m.set_processor(AttnProcessor2_0())
        ref32, ref16 = both()
        assert torch.equal(fast32, ref32) if heads == 32 else (fast32 - ref32).abs().max() < 1e-5 * ref32.abs().max()
        assert (fast16 - ref32).norm() / ref32.norm() < 3 * (ref16 - ref32).norm() / ref32.norm() + 1e-3


def test_compile_flag_runs(tmp_path, monkeypatch):
    # Inductor's C++ compile of even the smoke model takes minutes on 2 cores; the eager backend
    # still traces the model with dynamo through the same --compile code path.
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    argv = smoke_argv(tmp_path, "compiled", "--compile", "--max_steps=2", "--sample_every=0")
    assert train.main(argv) == 0 and len(rows(tmp_path / "compiled")) == 2


TWO_RUNS = """
import sys
sys.path.insert(0, {root!r})
import train
assert train.main({first!r}) == 0
assert train.main({second!r}) == 0  # the resume, in the same process group
"""


def test_two_processes_train_checkpoint_once_and_resume(tmp_path, monkeypatch, capsys):
    """Two processes started as torchrun starts them (their rank, the group's size and the main one's
    address in the environment): this one is rank 0, a second interpreter rank 1 (a launcher and a
    third interpreter would only add start-up). Train to step 3, then resume to 5."""
    from accelerate.state import AcceleratorState
    from app import free_port
    first = smoke_argv(tmp_path, "ddp", "--max_steps=3", "--sample_every=0", "--device=cpu")
    second = ["--resume", f"--out_dir={tmp_path}", "--run_name=ddp", "--max_steps=5", "--device=cpu"]
    script = tmp_path / "two_runs.py"
    script.write_text(TWO_RUNS.format(root=str(ROOT), first=first, second=second))
    group = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2",
             "LOCAL_WORLD_SIZE": "2"}
    other = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, **group, "RANK": "1", "LOCAL_RANK": "1",
                                             "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    for key, value in {**group, "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    AcceleratorState._reset_state(reset_partial_state=True)  # this process's single-process set-up
    try:
        assert train.main(first) == 0 and train.main(second) == 0
    except BaseException:
        other.kill()  # it would wait for this one in the group
        raise
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        AcceleratorState._reset_state(reset_partial_state=True)
        out, err = other.communicate(timeout=300)
    assert other.returncode == 0, err[-3000:]
    main = capsys.readouterr().out
    assert "2 process(es) x batch 8" in main
    assert main.count("done: 3 steps") == 1 and main.count("done: 5 steps") == 1
    assert "done:" not in out  # the main process alone reports and writes
    assert [int(r["step"]) for r in rows(tmp_path / "ddp")] == [1, 2, 3, 4, 5]
    assert torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)["step"] == 5


def test_the_device_is_chosen_in_one_place_and_cuda_is_taken_when_visible(monkeypatch):
    import devices
    from config import UserError
    assert devices.choose_device("auto").type == "cpu" and devices.compile_mode(torch.device("cpu")) == "default"
    with pytest.raises(UserError, match="device=cuda but no CUDA GPU is visible"):
        devices.choose_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU, as far as the code can tell
    assert devices.choose_device("cuda") == devices.choose_device("auto") == torch.device("cuda")
    assert devices.choose_device("cpu").type == "cpu"
    assert devices.compile_mode(torch.device("cuda")) == "reduce-overhead"  # CUDA graphs
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark
    try:
        devices.configure(torch.device("cuda"))
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = flags


def test_generate_asks_for_cuda_through_the_same_chooser(capsys):
    """The old bug: --device=cuda was refused as not one of auto, cpu or cuda."""
    import generate
    assert generate.main(["--device=cuda", "--num_images=1"]) == 2
    assert "device=cuda but no CUDA GPU is visible" in capsys.readouterr().err


def test_the_prepared_gpu_check_runs_end_to_end_at_smoke_size(tmp_path, monkeypatch):
    import json

    import bench
    from conftest import SMALL_DATA
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    from test_characters import LPC
    out = tmp_path / "check"
    lpc = [f"--lpc={LPC}"] if LPC.is_dir() else []  # real layers where they exist (CI has them)
    assert bench.main([f"--gpu_check={out}", "--quick", f"--data_dir={SMALL_DATA}", "--minutes=0.5",
                       "--timed_steps=1", *lpc]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(["bench.json", "check.log", "gpu.json", "gpu.png", "seed.json", "seed.png",
                            *(["characters.json"] if lpc else [])])  # <= 8 come back
    if lpc:
        walk = json.loads((out / "characters.json").read_text())
        assert 0 <= walk["combo"]["model"]["iou"] <= 1 and walk["steps"] == 2
    b = json.loads((out / "bench.json").read_text())
    assert [r["batch_size"] for r in b["batches"]] == [2, 4] and all(r["mfu"] > 0 for r in b["batches"])
    assert b["peak_of"] == f"{'bf16' if fast_bf16(torch.device('cpu')) else 'fp32'} 1024^3 matmul" and "torch" in b
    assert json.loads((out / "seed.json").read_text())["fd_lite0"] > 0
    assert "captions" in json.loads((out / "gpu.json").read_text())
    assert "done in" in (out / "check.log").read_text()


def test_bench_times_a_rectified_flow_model_with_its_one_sampler(capsys):
    import bench
    assert bench.main(["--preset=prompt", "--samplers=ddpm,ddim"]) == 2
    assert "a rectified-flow model samples with dpm only" in capsys.readouterr().err
