"""Nothing lost, nothing crashes: signals, kill -9 mid-write, NaN, full disk, untrusted files, fuzzing."""
import csv
import errno
import io
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

import train
import trainer
from config import ROOT, UserError
from conftest import smoke_argv
from dataset import BadImage, load_image
from model import load_checkpoint, load_model


def losses(run_dir):
    return [r["loss"] for r in csv.DictReader((run_dir / "losses.csv").open())]


def before_loss_call(monkeypatch, n, action):
    """Run action() as the training loss is computed for the n-th time (during step n)."""
    real = trainer.Diffusion.loss
    calls = {"n": 0}

    def patched(*args, **kw):
        calls["n"] += 1
        if calls["n"] == n:
            action()
        return real(*args, **kw)
    monkeypatch.setattr(trainer.Diffusion, "loss", patched)


def test_sigterm_saves_checkpoint_and_resume_is_exact(tmp_path, monkeypatch, capsys):
    """SIGTERM as `kill` sends it to `python train.py`: from outside the training thread, at
    whatever point of a step it lands. The checkpoint holds the step it stopped at, the loss plot is
    drawn, and the resumed run's losses are those of one run straight through."""
    # at step 2 the run's handler is in place; the signal comes a moment later, from another thread
    before_loss_call(monkeypatch, 2, threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start)
    argv = smoke_argv(tmp_path, "sig", "--max_steps=400", "--ckpt_every=1000", "--sample_every=0")
    assert train.main(argv) == 0
    assert "checkpoint saved" in capsys.readouterr().out and (tmp_path / "sig" / "loss.png").is_file()
    monkeypatch.undo()
    step = torch.load(tmp_path / "sig" / "checkpoint.pt", weights_only=True)["step"]
    assert 2 <= step < 400 and len(losses(tmp_path / "sig")) == step
    target = f"--max_steps={step + 2}"
    assert train.main(["--resume", f"--out_dir={tmp_path}", "--run_name=sig", target]) == 0
    assert train.main(smoke_argv(tmp_path, "whole", target, "--ckpt_every=1000",
                                 "--sample_every=0")) == 0
    assert losses(tmp_path / "sig") == losses(tmp_path / "whole")


def test_ctrl_c_in_process_saves_checkpoint_and_restores_the_handler(tmp_path, monkeypatch, capsys):
    """SIGINT during step 3: the step finishes, the checkpoint holds step 3, no model is exported,
    and the caller's own SIGINT handler is back afterwards."""
    before = signal.getsignal(signal.SIGINT)
    before_loss_call(monkeypatch, 3, lambda: os.kill(os.getpid(), signal.SIGINT))
    assert train.main(smoke_argv(tmp_path, "int", "--max_steps=400", "--sample_every=0")) == 0
    assert "interrupted at step 3: checkpoint saved" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "int" / "checkpoint.pt")["step"] == 3
    assert not (tmp_path / "int" / "model").exists()
    assert signal.getsignal(signal.SIGINT) is before


KILL_MID_WRITE = """
import os, signal, sys, torch
sys.path.insert(0, {root!r})
import train
real_save = torch.save
def dying_save(obj, f):
    with open(f, "wb") as fh:
        fh.write(b"PK\\x03\\x04 half a checkpoint")
        fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of writing
train.main({argv!r} + ["--max_steps=3", "--ckpt_every=2", "--sample_every=0"])  # good checkpoint at 2
torch.save = dying_save
train.main(["--resume", "--out_dir={out}", "--run_name=k", "--max_steps=6", "--ckpt_every=1"])
"""


def test_kill_9_during_checkpoint_write_keeps_previous(tmp_path):
    code = KILL_MID_WRITE.format(root=str(ROOT), argv=smoke_argv(tmp_path, "k"), out=tmp_path)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert p.returncode == -signal.SIGKILL
    assert (tmp_path / "k" / "checkpoint.pt.tmp").exists()  # the half-written file
    assert load_checkpoint(tmp_path / "k" / "checkpoint.pt")["step"] == 3
    assert train.main(["--resume", f"--out_dir={tmp_path}", "--run_name=k", "--max_steps=4"]) == 0


def test_nan_loss_stops_naming_the_step_and_keeps_last_good(tmp_path, monkeypatch, capsys):
    real = trainer.Diffusion.loss
    calls = {"n": 0}

    def poisoned(*args, **kw):
        calls["n"] += 1
        loss = real(*args, **kw)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(trainer.Diffusion, "loss", poisoned)
    assert train.main(smoke_argv(tmp_path, "nan", "--log_every=1")) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: the loss became nan at step 5")
    assert load_checkpoint(tmp_path / "nan" / "checkpoint.pt")["step"] == 3
    assert not (tmp_path / "nan" / "model").exists()


def test_full_disk_reports_and_keeps_previous_checkpoint(tmp_path, monkeypatch, capsys):
    assert train.main(smoke_argv(tmp_path, "disk", "--max_steps=3")) == 0
    before = (tmp_path / "disk" / "checkpoint.pt").read_bytes()

    def full(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    train.main(["--resume", f"--out_dir={tmp_path}", "--run_name=disk", "--max_steps=6"])
    err = capsys.readouterr().err
    assert "could not save a checkpoint at step 6 (No space left on device)" in err
    assert (tmp_path / "disk" / "checkpoint.pt").read_bytes() == before
    assert not (tmp_path / "disk" / "checkpoint.pt.tmp").exists()


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickled_objects_are_never_loaded(tmp_path):
    (tmp_path / "run").mkdir()
    torch.save({"step": 1, "payload": Evil()}, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(UserError, match="cannot load checkpoint"):
        load_model(tmp_path / "run")


def test_code_loads_weights_only_safely():
    """Every torch.load in the repo passes weights_only=True; nothing uses pickle or eval."""
    for path in ROOT.glob("*.py"):
        text = path.read_text()
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path.name}: {line.strip()}"
        assert "import pickle" not in text and "eval(" not in text.replace("model.eval(", "") \
            .replace(".eval()", ""), path.name


def encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F", "CMYK"]


@settings(max_examples=60, deadline=None, derandomize=True,  # the same examples in every CI run
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_loader_either_loads_or_reports(tmp_path, data):
    """Random bytes, or random images of random modes and shapes, possibly truncated."""
    kind = data.draw(st.sampled_from(["bytes", "image"]))
    if kind == "bytes":
        payload = data.draw(st.binary(max_size=300))
    else:
        mode = data.draw(st.sampled_from(MODES))
        w, h = data.draw(st.integers(1, 40)), data.draw(st.integers(1, 40))
        arr = np.random.default_rng(data.draw(st.integers(0, 99))).integers(0, 255, (h, w, 4), np.uint8)
        if mode == "I;16":  # 16-bit greyscale PNG
            img = Image.fromarray(arr[..., 0].astype(np.uint16) * 257)
        elif mode in ("I", "F"):  # 32-bit modes: PNG cannot hold them, TIFF can
            img = Image.fromarray(arr, "RGBA").convert("L").convert(mode)
        else:
            img = Image.fromarray(arr, "RGBA").convert(mode)
        payload = encode(img, {"CMYK": "JPEG", "I": "TIFF", "F": "TIFF"}.get(mode, "PNG"))
        cut = data.draw(st.integers(0, len(payload)))
        payload = payload[:cut] if data.draw(st.booleans()) else payload
    path = tmp_path / "x.png"
    path.write_bytes(payload)
    channels = data.draw(st.sampled_from([3, 4]))
    try:
        arr, _ = load_image(path, 16, channels, (0, 0, 0))
    except BadImage as e:
        assert str(e)
        return
    assert arr.shape == (16, 16, channels) and arr.dtype == np.uint8
