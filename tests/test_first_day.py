"""A user's first day: output paths checked before the work, threads that share the CPU, toy models
and unknown prompt words named, honest scores."""

import pytest
import torch

from conftest import ROOT


@pytest.mark.parametrize("out, message", [
    ("mine.jpg", "pictures are written as PNG"), ("mine.gif", "pictures are written as PNG"),
    ("/etc/passwd/x.png", "/etc/passwd is a file, not a folder")])
def test_a_bad_out_is_refused_before_any_work(smoke_run, tmp_path, out, message, capsys, monkeypatch):
    import generate
    import model
    monkeypatch.setattr(model, "load_model", lambda *a: pytest.fail("the model was loaded first"))
    out = out if out.startswith("/") else str(tmp_path / out)
    assert generate.main([f"--model={smoke_run}", f"--out={out}"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not list(tmp_path.iterdir())


@pytest.mark.parametrize("out", ["folder/", "noext"])
def test_a_folder_out_gets_the_default_name(smoke_run, tmp_path, out):
    import generate
    assert generate.main([f"--model={smoke_run}", f"--out={tmp_path / out}", "--num_images=1",
                          "--steps=1"]) == 0
    assert (tmp_path / out.rstrip("/") / "generated_images.png").is_file()
    assert (tmp_path / out.rstrip("/") / "generated" / "0000.png").is_file()


def test_threads_leave_busy_cores_alone(monkeypatch):
    import os
    from devices import cpu_threads
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.1, 1.0, 1.0))
    assert cpu_threads(0) == 1  # one core busy elsewhere: one thread
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.0, 0.0))
    assert cpu_threads(0) == 2 and cpu_threads(3) == 3
    monkeypatch.setattr(os, "getloadavg", lambda: (7.0, 7.0, 7.0))
    assert cpu_threads(0) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert cpu_threads(0) == 2


def test_training_says_once_when_its_steps_slow_down():
    from trainer import SlowdownWatch
    w = SlowdownWatch()
    lines = [w.check(step, seconds) for step, seconds in
             [(10, 5.0), (30, 7.0), (50, 9.0), (70, 17.0), (90, 25.0), (110, 33.0)]]
    said = [line for line in lines if line]
    assert len(said) == 1 and "4x slower" in said[0] and "--threads=1" in said[0]


def test_a_toy_model_says_so(smoke_run, tmp_path, capsys):
    import generate
    assert generate.main([f"--model={smoke_run}", f"--out={tmp_path / 'g.png'}", "--num_images=1",
                          "--steps=1"]) == 0
    assert "trained only 6 steps, a toy: expect noise" in capsys.readouterr().out.splitlines()[0]


def test_words_no_caption_holds_are_named(prompt_run, tmp_path, capsys):
    import generate
    from conditioning import TextCondition
    c = TextCondition("both", [], ["grey long sword, hand weapon", "blue potion, potion"])
    unknown = dict(c.unknown_words("a steel longsword"))
    assert set(unknown) == {"steel", "longsword"} and "sword" in unknown["longsword"]
    assert c.unknown_words("a blue long sword") == []
    assert generate.main([f"--model={prompt_run}", "--prompt=a zorbly potion", "--num_images=1",
                          "--steps=1", f"--out={tmp_path / 'g.png'}"]) == 0
    assert "no training caption holds 'zorbly'" in capsys.readouterr().out


def test_guidance_below_zero_is_refused(smoke_run, capsys):
    import generate
    assert generate.main([f"--model={smoke_run}", "--guidance=-2"]) == 2
    assert "--guidance must be >= 0" in capsys.readouterr().err


def test_train_without_a_preset_says_what_it_starts(capsys):
    import train
    assert train.main(["--data_dir=/no/such/folder", "--out_dir=/no/runs"]) == 2
    out = capsys.readouterr().out
    assert "no --preset, so the seed preset" in out and "hours on a CPU" in out


def test_scores_that_rate_noise_highly_are_not_shown_and_snapped_colours_are_on_the_palette(capsys):
    import tables
    from metrics import off_palette
    from palette import snap
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (8, 4, 8, 8), dtype=torch.uint8, generator=g)
    data[:, 3] = 255
    pal = torch.tensor([[10, 20, 30], [200, 100, 50]], dtype=torch.uint8)  # colours not in the data
    noise = torch.randint(0, 256, (8, 4, 8, 8), dtype=torch.uint8, generator=g)
    assert off_palette(snap(noise, pal), data, palette=pal) == 0
    assert off_palette(noise, torch.zeros_like(data)) > 0.9
    row = {"fd_lite0": 1.0, "kid_mean": 0.0, "recall": 0.5, "coverage": 0.5, "precision": 0.9,
           "density": 2.0, "copy_rate": 0.0, "nn_ratio": 1.0, "colours_w1": 0.0, "colours_mean": 3.0,
           "off_palette": 0.0, "semi_transparent": 0.0}
    tables.print_report({"num_samples": 8, "num_data": 8, "samples": row, "floor": row,
                         "data": {"colours_mean": 3.0, "semi_transparent": 0.0}})
    out = capsys.readouterr().out
    assert "precision" not in out and "density" not in out and "recall" in out


def test_requirements_name_the_install_script_that_exists():
    text = (ROOT / "requirements.txt").read_text()
    assert "tests/install_tools.sh" in text and (ROOT / "tests" / "install_tools.sh").is_file()
    assert "install_browser" not in text
