"""The reverse process: one SampleRequest in, images out.

Usage:
    req = SampleRequest(n=16, cond=cond, null=null, seed=0, sampler="dpm", steps=10, guidance=3)
    x = sample(net, scheduler, req)          # float in [-1, 1] on the CPU (a latent model: pass vae=)

The loop is diffusers' DDPMPipeline's (tests check they agree), plus the conditioning (the backbone's
keyword arguments, from conditioning.py) with classifier-free guidance against `null`, and two small
hooks: a mask that puts the known image back outside it after every step (RePaint, Lugmayr et al.
2022), and tiling, which rolls the image before each model call.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from tqdm import tqdm

from config import GUIDANCE, SAMPLER, SAMPLER_STEPS, UserError
from model import decode, is_flow

SAMPLERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler}


@dataclass
class SampleRequest:
    """What to sample. Starting from a sprite: `init` (n,C,H,W in [-1, 1]) noised to `strength` of the
    schedule and denoised from there (0 returns it, 1 ignores it); `mask` (n,1,H,W, 1 = repaint)
    keeps the init outside it; `resample` > 0 takes each step, noises it back and takes it again that
    many times, so the inside can agree with the outside. `tileable` rolls the image by a random
    offset before each model call and the prediction back after: every pixel spends steps away from
    the border, so the sprite wraps in x and y. Guidance applies only at noise levels t/T within
    `guidance_interval` (Kynkaanniemi et al. 2024: guiding the noisiest steps costs variety, the last
    ones add little); elsewhere the plain conditional output."""
    n: int
    cond: dict = field(default_factory=dict)  # the backbone's conditioning arguments, a row per image
    null: dict = field(default_factory=dict)  # the same without the condition (guidance pushes from it)
    seed: int = 0
    sampler: str = SAMPLER
    steps: int = 0  # 0: the sampler's default
    guidance: float = GUIDANCE
    guidance_interval: tuple[float, float] = (0.0, 1.0)  # noise levels t/T that are guided (below)
    init: torch.Tensor | None = None
    strength: float = 1.0
    mask: torch.Tensor | None = None
    resample: int = 0
    tileable: bool = False
    progress: bool = False


def samplers_for(scheduler: DDPMScheduler) -> tuple[str, ...]:
    """The samplers a model's schedule has: a rectified-flow model DPM-Solver++ alone, on the flow's
    straight path (DDPM and DDIM have no flow form)."""
    return ("dpm",) if is_flow(scheduler) else tuple(SAMPLERS)


def make_sampler(scheduler: DDPMScheduler, name: str = SAMPLER, steps: int = 0):
    """A sampler (ddpm / ddim / dpm) sharing the training schedule, set to `steps` (0: its default)."""
    if name not in SAMPLERS:
        raise UserError(f"sampler must be one of {', '.join(SAMPLERS)}; got {name!r}")
    if name not in samplers_for(scheduler):
        raise UserError(f"a rectified-flow model samples with --sampler=dpm, not {name}")
    if is_flow(scheduler):
        sampler = DPMSolverMultistepScheduler.from_config(
            scheduler.config, use_flow_sigmas=True, final_sigmas_type="zero",
            thresholding=scheduler.config.clip_sample, sample_max_value=1.0)
        sampler.set_timesteps(steps or SAMPLER_STEPS[name])
        return sampler
    # DDPM and DDIM clip their estimate of the clean image to [-1, 1] (clip_sample); DPM-Solver does
    # not, and with an imperfect model its estimates run away (flat saturated colours). Its pixel-space
    # thresholding with sample_max_value=1 is the same clip.
    clip = name == "dpm" and scheduler.config.clip_sample
    extra = {"thresholding": True, "sample_max_value": 1.0} if clip else {}
    sampler = SAMPLERS[name].from_config(scheduler.config, **extra)
    sampler.set_timesteps(min(steps or SAMPLER_STEPS[name], scheduler.config.num_train_timesteps))
    return sampler


def guided_output(net, x: torch.Tensor, t, cond: dict, null: dict, guidance: float) -> torch.Tensor:
    """Model output with classifier-free guidance: uncond + w * (cond - uncond), in one batched call.
    w = 1 is the plain conditional output, w = 0 the unconditional one (one call each)."""
    if not cond or guidance == 1.0:
        return net(x, t, **cond).sample
    if guidance == 0.0:
        return net(x, t, **null).sample
    both = {k: None if v is None else torch.cat([v, null[k]]) for k, v in cond.items()}
    out_cond, out_null = net(torch.cat([x, x]), t, **both).sample.chunk(2)
    return out_null + guidance * (out_cond - out_null)


def _on(d: dict, device) -> dict:
    return {k: None if v is None else v.to(device) for k, v in d.items()}


def renoising(solver, t, s) -> tuple:
    """(a, std) with x_t = a x_s + std noise: the forward process from timestep s back up to t > s."""
    if solver.config.get("use_flow_sigmas"):  # x_t = (1 - t/T) x0 + (t/T) noise
        sig_t, sig_s = (float(v) / solver.config.num_train_timesteps for v in (t, s))
        a = (1 - sig_t) / (1 - sig_s)
        return a, max(0.0, sig_t ** 2 - (a * sig_s) ** 2) ** 0.5
    ratio = solver.alphas_cumprod[t] / solver.alphas_cumprod[s]
    return ratio.sqrt(), (1 - ratio).sqrt()


@torch.no_grad()
def sample(net, scheduler: DDPMScheduler, req: SampleRequest, vae=None) -> torch.Tensor:
    """Run the reverse process; returns req.n images as floats in [-1, 1] on the CPU (a latent model's
    latents decoded by its `vae`). Noise comes from a CPU generator seeded with req.seed, so samples
    are the same on every device."""
    solver = make_sampler(scheduler, req.sampler, req.steps)
    device = next(net.parameters()).device
    size, ch = net.config.sample_size, net.config.out_channels
    g = torch.Generator().manual_seed(req.seed)
    x = (torch.randn((req.n, ch, size, size), generator=g) * solver.init_noise_sigma).to(device)
    cond, null = _on(req.cond, device), _on(req.null, device)
    timesteps, init = solver.timesteps, None if req.init is None else req.init.to(device)
    mask = None if req.mask is None else req.mask.to(device)
    if init is not None:
        skip = round(len(timesteps) * (1 - req.strength))
        timesteps = timesteps[skip:]
        if hasattr(solver, "set_begin_index"):  # multistep solvers keep an index into the schedule
            solver.set_begin_index(skip)
        if not len(timesteps):
            return init.float().cpu()
        if skip:
            x = solver.add_noise(init, x, timesteps[:1])
    (lo, hi), level = req.guidance_interval, lambda t: float(t) / scheduler.config.num_train_timesteps
    bar = tqdm(timesteps, desc=f"{req.sampler} x{len(timesteps)}", unit="step", disable=not req.progress)
    for i, t in enumerate(bar):
        last = i + 1 == len(timesteps)
        for r in range(0 if mask is None or last else req.resample, -1, -1):
            state = copy.deepcopy(solver) if r else None  # a multistep solver's history
            # tiling hook: the model sees the image rolled by a random offset
            shift = torch.randint(size, (2,), generator=g).tolist() if req.tileable else [0, 0]
            out = guided_output(net, torch.roll(solver.scale_model_input(x, t), shift, (2, 3)), t,
                                cond, null, req.guidance if lo <= level(t) <= hi else 1.0)
            out = torch.roll(out, [-shift[0], -shift[1]], (2, 3))
            x_next = solver.step(out.float(), t, x, generator=g).prev_sample
            if mask is not None:  # mask hook: outside it, the init noised to the next level
                known = init if last else solver.add_noise(
                    init, torch.randn(x.shape, generator=g).to(device), timesteps[i + 1:i + 2])
                x_next = torch.where(mask > 0, x_next, known)
            if r:  # RePaint: back to t by the forward process from the next timestep, then again
                solver, (a, std) = state, renoising(solver, t, timesteps[i + 1])
                x_next = a * x_next + std * torch.randn(x.shape, generator=g).to(device)
            x = x_next
    if vae is not None:
        x = decode(vae.to(device), x)
    return x.float().cpu()
