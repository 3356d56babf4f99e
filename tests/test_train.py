"""Model, loss, training, resume, sampling and export, on the tiny smoke model."""
import csv
import dataclasses

import pytest
import torch
from diffusers import DDPMPipeline

import train
import trainer
from conftest import smoke_argv
from config import UserError, preset
from dataset import PixelData, augment, load_folder
from model import build, build_scheduler, load_model
from sampling import SampleRequest, sample


def losses(run_dir):
    return [float(r["loss"]) for r in csv.DictReader((run_dir / "losses.csv").open())]


def test_unet_output_shape(tiny_cfg):
    for channels, condition in ((3, "none"), (4, "class")):
        cfg = preset("smoke", channels=channels, condition=condition)
        unet = build(cfg.model, num_classes=5)
        x = torch.randn(2, channels, 32, 32)
        labels = torch.tensor([0, 5]) if condition == "class" else None
        assert unet(x, torch.tensor([1, 999]), class_labels=labels).sample.shape == x.shape


def diffusion(cfg):
    """The objective of cfg (diffusion or rectified flow), for data of 3 classes."""
    data = PixelData(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), torch.zeros(1), ["a", "b", "c"], [], [])
    return trainer.objective_for(cfg)(cfg, data, torch.device("cpu"), 1)


@pytest.mark.parametrize("target", ["v_prediction", "flow_prediction"])
def test_a_few_steps_on_one_batch_lower_the_loss(tiny_cfg, target):
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_cfg, model=dataclasses.replace(tiny_cfg.model, prediction_type=target))
    unet, objective = build(cfg.model), diffusion(cfg)
    data = load_folder(tiny_cfg.run.data_dir, tiny_cfg.model, log=lambda _: None)
    x0 = augment(data.images[:8], 0.0, torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(unet.parameters(), lr=2e-3)

    def loss_at_fixed_draw():
        return objective.loss(unet, x0, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(1),
                              torch.arange(8))

    before = loss_at_fixed_draw().item()
    for _ in range(15):
        opt.zero_grad()
        loss_at_fixed_draw().backward()
        opt.step()
    assert loss_at_fixed_draw().item() < 0.7 * before


@pytest.mark.parametrize("gamma, target", [(5.0, "epsilon"), (5.0, "v_prediction"), (0.0, "sample"),
                                           (0.0, "flow_prediction")])
def test_loss_variants_are_finite(gamma, target):
    cfg = preset("smoke", min_snr_gamma=gamma, prediction_type=target)
    x0 = torch.rand(4, 3, 32, 32) * 2 - 1
    loss = diffusion(cfg).loss(build(cfg.model), x0, torch.zeros(4, dtype=torch.long),
                               torch.Generator().manual_seed(0), torch.arange(4))
    assert torch.isfinite(loss) and loss > 0


def test_a_flow_model_samples_with_dpm_only_and_its_forward_process_is_the_straight_line(tiny_cfg):
    from model import add_noise, noise_estimate
    spec = dataclasses.replace(tiny_cfg.model, prediction_type="flow_prediction")
    unet, sched = build(spec).eval(), build_scheduler(spec)
    x0, noise, t = torch.rand(2, 3, 32, 32) * 2 - 1, torch.randn(2, 3, 32, 32), torch.tensor([250, 750])
    x_t = add_noise(sched, x0, noise, t)
    assert torch.allclose(x_t[1], 0.25 * x0[1] + 0.75 * noise[1])
    assert torch.allclose(noise_estimate(sched, noise - x0, x_t, t), noise, atol=1e-5)  # the true flow
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    x = sample(unet, sched, SampleRequest(2, steps=6, init=x0, mask=mask, resample=1))
    assert x.abs().max() <= 1.0 + 1e-4 and torch.equal(x[mask.expand_as(x) == 0], x0[mask.expand_as(x0) == 0])
    with pytest.raises(UserError, match="samples with --sampler=dpm"):
        sample(unet, sched, SampleRequest(2, sampler="ddim"))


def test_batches_cover_each_epoch_once(tiny_cfg):
    n, b = 10, 3
    stream = torch.cat([trainer.batch_indices(tiny_cfg.run.seed, n, s, b, 1, 0) for s in range(10)])
    assert sorted(stream[:10].tolist()) == list(range(10))  # epoch 0: a permutation
    assert sorted(stream[10:20].tolist()) == list(range(10))  # epoch 1: another one
    two = [torch.cat([trainer.batch_indices(tiny_cfg.run.seed, n, s, b, 2, r) for r in (0, 1)])
           for s in range(5)]
    assert torch.equal(torch.cat(two), stream[:30])  # two processes split the same stream


def test_learning_rate_warms_up_then_holds_or_falls_to_zero_along_a_cosine():
    held = preset("smoke", warmup_steps=10).run
    cosine = preset("smoke", warmup_steps=10, lr_decay="cosine").run
    for run in (held, cosine):
        assert [trainer.lr_factor(run, s, 110) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert trainer.lr_factor(held, 109, 110) == 1.0
    assert trainer.lr_factor(cosine, 60, 110) == pytest.approx(0.5)
    assert trainer.lr_factor(cosine, 110, 110) == pytest.approx(0.0, abs=1e-12)


def test_resume_reproduces_the_losses_exactly(tmp_path, smoke_run):
    """smoke_run is the unbroken run of the same config (6 steps)."""
    assert train.main(smoke_argv(tmp_path, "split", "--max_steps=3")) == 0
    assert train.main(["--resume", f"--out_dir={tmp_path}", "--run_name=split", "--max_steps=6"]) == 0
    whole, split = losses(smoke_run), losses(tmp_path / "split")
    assert len(whole) == 6 and whole == split
    a, b = (torch.load(r / "checkpoint.pt", weights_only=True) for r in (smoke_run, tmp_path / "split"))
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])


def test_time_budget_stops_exports_and_resumes(tmp_path, smoke_run):
    """--max_minutes stops at the first check past the budget (here: after step 1), exports the
    model and records the training time; the run then resumes to the same losses as an unbroken one
    (smoke_run)."""
    assert train.main(smoke_argv(tmp_path, "timed", "--max_minutes=1e-7")) == 0
    ckpt = torch.load(tmp_path / "timed" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 1 and ckpt["seconds"] > 0
    assert (tmp_path / "timed" / "model" / "pixelart.json").is_file()
    assert train.main(["--resume", f"--out_dir={tmp_path}", "--run_name=timed"]) == 2  # no time left
    assert train.main(["--resume", f"--out_dir={tmp_path}", "--run_name=timed", "--max_minutes=0"]) == 0
    assert losses(tmp_path / "timed") == losses(smoke_run)
    later = torch.load(tmp_path / "timed" / "checkpoint.pt", weights_only=True)
    assert later["step"] == 6 and later["seconds"] > ckpt["seconds"]


def test_same_seed_same_samples_and_matches_diffusers_pipeline(smoke_run):
    m = load_model(smoke_run)
    x1, x2, x3 = (sample(m.net, m.scheduler, SampleRequest(2, seed=s, sampler="ddpm", steps=5))
                  for s in (3, 3, 4))
    assert torch.equal(x1, x2) and not torch.equal(x1, x3)
    pipe = DDPMPipeline.from_pretrained(smoke_run / "model")  # no code of this repo needed
    ref = pipe(batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=5,
               output_type="np").images
    ours = ((x1.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    assert abs(ours - ref).max() < 1e-5


def test_smoke_run_writes_everything(smoke_run):
    for name in ("config.json", "checkpoint.pt", "losses.csv", "loss.png", "palette.hex",
                 "model/model_index.json", "model/unet/diffusion_pytorch_model.safetensors",
                 "model/scheduler/scheduler_config.json", "model/pixelart.json", "model/palette.hex"):
        assert (smoke_run / name).is_file(), name
    assert len(list((smoke_run / "samples").glob("step_*.png"))) == 2
    assert len(losses(smoke_run)) == 6
    ckpt = torch.load(smoke_run / "checkpoint.pt", weights_only=True)
    assert {"step", "net", "ema", "optimizer", "config", "rng"} <= set(ckpt) and ckpt["step"] == 6
    seconds = [float(r["seconds"]) for r in csv.DictReader((smoke_run / "losses.csv").open())]
    assert seconds == sorted(seconds) and seconds[0] > 0  # training time, step by step


def test_existing_run_is_not_overwritten(smoke_run, capsys):
    argv = ["--preset=smoke", f"--out_dir={smoke_run.parent}", f"--run_name={smoke_run.name}"]
    assert train.main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_resume_refuses_model_changes_and_says_how_to_go_on(smoke_run, capsys):
    argv = ["--resume", f"--out_dir={smoke_run.parent}", f"--run_name={smoke_run.name}"]
    assert train.main(argv + ["--channels=4"]) == 2
    assert "a resumed run keeps its model; drop --channels" in capsys.readouterr().err
    assert train.main(argv) == 2  # finished: more steps are needed, and the message names them
    assert f"has trained its 6 steps: give it more with python train.py --resume " \
           f"--run_name={smoke_run.name}" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpm"])
def test_every_sampler_keeps_images_in_range(tiny_cfg, name):
    """An untrained model predicts poorly; the clean-image estimate must still be clipped, or the
    samples run away to flat saturated colours (DPM-Solver did, before its thresholding was set)."""
    torch.manual_seed(0)
    unet = build(tiny_cfg.model).eval()
    x = sample(unet, build_scheduler(tiny_cfg.model), SampleRequest(4, sampler=name, steps=10))
    assert x.abs().max() <= 1.0 + 1e-4


def test_init_starts_from_a_trained_model_with_a_fresh_optimiser(prompt_run, cond_run, tmp_path, capsys):
    import train
    from conftest import SMALL_DATA
    from model import is_flow, load_model
    import torch
    base = [f"--data_dir={SMALL_DATA}", f"--out_dir={tmp_path}", "--max_steps=1", "--num_samples=0",
            "--lr=1e-12", "--ema_decay=1"]
    assert train.main([f"--init={prompt_run}", "--run_name=ft", "--short_captions=0.5", *base]) == 0
    assert "init: " in capsys.readouterr().out
    before, after = load_model(prompt_run).net.state_dict(), load_model(tmp_path / "ft").net.state_dict()
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)  # its weights, carried on
    assert load_model(tmp_path / "ft").spec == load_model(prompt_run).spec
    # trained on shorter captions too, it is saved with the data's own
    assert load_model(tmp_path / "ft").condition.captions == load_model(prompt_run).condition.captions
    # a resumed run's options are checked against its own model, not the default preset's
    assert train.main(["--resume", "--run_name=ft", f"--out_dir={tmp_path}", "--max_steps=2",
                       "--short_captions=0.2"]) == 0
    assert train.main(["--resume", f"--run_name={cond_run.name}", f"--out_dir={cond_run.parent}",
                       "--short_captions=0.2"]) == 2  # a class model: refused before anything is written
    assert "short_captions shortens captions: it needs condition=text, not class" in capsys.readouterr().err
    assert train.main([f"--init={prompt_run}", "--run_name=x", "--layers_per_block=3", *base]) == 2
    assert "keeps that model's options; drop --layers_per_block" in capsys.readouterr().err
    assert train.main([f"--init={prompt_run}", "--run_name=apart", "--colours_apart=true", *base]) == 0
    apart = load_model(tmp_path / "apart")  # the same weights, the prompt's colour words encoded apart
    assert apart.spec.colours_apart and apart.condition.colours_apart and not load_model(prompt_run).spec.colours_apart
    assert train.main([f"--init={prompt_run}", "--run_name=flow", "--prediction_type=flow_prediction", *base]) == 0
    flow = load_model(tmp_path / "flow")  # the same weights, carried on as a rectified-flow model
    assert load_model(prompt_run).spec.prediction_type != "flow_prediction" and is_flow(flow.scheduler)
    assert all(torch.allclose(before[k], v, atol=1e-6) for k, v in flow.net.state_dict().items())
    assert train.main([f"--init={cond_run}", "--run_name=z", "--colours_apart=true", *base]) == 2
    assert capsys.readouterr().err.count("colours_apart splits a prompt: it needs condition=text") == 1
    assert train.main([f"--init={cond_run}", "--run_name=z", "--short_captions=0.5", *base]) == 2
    assert "short_captions shortens captions: it needs condition=text, not class" in capsys.readouterr().err
    one_class = tmp_path / "one" / "potion"  # another number of classes than the class model's
    one_class.mkdir(parents=True)
    for p in sorted((SMALL_DATA / "potion").glob("*.png")):
        (one_class / p.name).write_bytes(p.read_bytes())
    assert train.main([f"--init={cond_run}", "--run_name=y", *base, f"--data_dir={one_class.parent}"]) == 2
    err = capsys.readouterr().err
    assert "do not fit this run's network" in err and err.count("\n") == 1


def test_repa_trains_its_projector_checkpoints_it_and_resumes_exactly(tmp_path):
    """--repa adds the alignment term (the loss differs from the same run without it), keeps its
    projector in the checkpoint and out of the export, and a split run gives the unbroken one's losses."""
    base = ["--max_steps=4", "--ckpt_every=2", "--sample_every=0"]
    assert train.main(smoke_argv(tmp_path, "plain", *base)) == 0
    assert train.main(smoke_argv(tmp_path, "whole", "--repa=0.5", *base)) == 0
    assert train.main(smoke_argv(tmp_path, "split", "--repa=0.5", *base[1:], "--max_steps=2")) == 0
    assert train.main(["--resume", f"--out_dir={tmp_path}", "--run_name=split", "--max_steps=4"]) == 0
    assert losses(tmp_path / "split") == losses(tmp_path / "whole") != losses(tmp_path / "plain")
    ckpt = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    assert "projector" in ckpt and load_model(tmp_path / "whole" / "model").steps == 4
    with pytest.raises(UserError, match="pixel UNet"):
        preset("smoke", backbone="dit", repa=0.5)
