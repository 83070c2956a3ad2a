"""The PULSE search: find latents on the sphere whose generated face downscales to the LR input.

All images x samples of a call are one batch of independent problems: losses are per image, Adam is
element-wise, each row has its own seed, eps, best result and success flag. Compared with the reference
implementation this returns each image's *best* step (not the last), judges success per image, gives every
sample its own seed, and runs on whatever device the generator is on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from . import losses
from .imageio import psnr_from_mse, quantize
from .models.generator_file import MAPPING_SLOPE, LoadedGenerator
from .resample import DEFAULT_KERNEL, check_kernel, resize

SCHEDULES = ("linear1cycledrop", "linear1cycle", "fixed")
NOISE_MODES = ("trainable", "fixed", "zero")
PRECISIONS = ("fp32", "bf16")
INITS = ("random", "encoder")


@dataclass
class SearchOptions:
    """Knobs of the search; defaults are the reference implementation's (eps 2e-3, 100 steps, lr 0.4), but for
    ``eps_margin``: the L2/L1 terms stop pulling at (1 - eps_margin) * eps, not at eps. The reference's clamp at
    eps leaves many results a hair above it once delivered as 8-bit images; aiming 10 % inside lands them within
    (measured: 47/48 vs 44/48 held-out faces, +0.4 dB LR-PSNR). ``eps_margin=0`` is the reference."""

    steps: int = 100
    eps: float | tuple[float, ...] = 2e-3  # the success threshold on LR MSE: one value, or one per row
    eps_margin: float = 0.1
    loss: str = losses.DEFAULT_LOSS
    learning_rate: float = 0.4
    schedule: str = "linear1cycledrop"
    noise: str = "trainable"
    trainable_noise_layers: int = 5
    noise_lr_scale: float = 1.0  # the trainable noise maps' learning rate as a multiple of the latent's (1: PULSE's)
    tile_latent: bool = False
    early_stop: bool = False  # each row stops once a step's 8-bit result is within the aim, (1 - eps_margin) * eps
    frame_every: int = 0  # keep an intermediate frame every N steps (0: none)
    precision: str = "fp32"  # "bf16": the generator runs under autocast; losses and latents stay fp32
    # how the LR input was made, i.e. the downscale of the consistency loss and of the eps check (resample.KERNELS):
    # "box" for a mosaic (block averages), "bicubic" for PULSE's own LR
    degradation: str = DEFAULT_KERNEL
    init: str = "random"  # where each search starts: a random point, or "encoder": an encoder's guess (``start``)
    spread: float = 0.3  # started from an encoder's guess: how far each sample's own draw moves it (initial_state)
    guided_rows: int = 4  # from an encoder's guess: the coarsest W+ rows samples after the first keep (initial_state)

    def __post_init__(self):
        losses.parse_loss(self.loss)
        check_kernel(self.degradation)
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.noise_lr_scale <= 0:
            raise ValueError(f"noise_lr_scale must be > 0, got {self.noise_lr_scale}")
        if self.spread < 0:
            raise ValueError(f"spread must be >= 0, got {self.spread}")
        if self.guided_rows < 0:
            raise ValueError(f"guided_rows must be >= 0, got {self.guided_rows}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not all(e > 0 for e in (self.eps if isinstance(self.eps, tuple) else (self.eps,))):
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if not 0 <= self.eps_margin < 1:
            raise ValueError(f"eps_margin must be in [0, 1), got {self.eps_margin}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {self.noise!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


def options_for(model: LoadedGenerator, **given) -> SearchOptions:
    """The search settings for a generator: its file's ``search_defaults`` (tuned for that generator when it
    was exported), overridden by what the caller gave. Files without them (the official FFHQ conversion) get
    the reference's settings."""
    return SearchOptions(**{**model.metadata.get("search_defaults", {}), **given})


def parse_search_defaults(items) -> dict:
    """``["loss=100*L2+0.01*GEOCROSS", "trainable_noise_layers=7"]`` -> a checked dict of SearchOptions fields."""
    reference, parsed = SearchOptions(), {}
    recommendable = [f for f in vars(reference) if f not in ("frame_every", "init")]  # init: is an encoder installed?
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in recommendable:
            raise ValueError(f"{item!r}: expected FIELD=VALUE with FIELD one of {', '.join(recommendable)}")
        kind = type(getattr(reference, key))
        try:
            parsed[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
        except ValueError:
            raise ValueError(f"{item!r}: {value!r} is not a valid {kind.__name__}") from None
    SearchOptions(**parsed)
    return parsed


@dataclass
class SearchResult:
    """One row's outcome. ``image`` is the best step's face in [0, 1] at the generator's resolution."""

    image: torch.Tensor
    lr_mse: float
    success: bool
    seed: int
    steps: int
    best_step: int
    latent: torch.Tensor  # the best step's latent on the sphere (n_styles or 1, dim), Gaussianised space
    frames: list[torch.Tensor] = field(default_factory=list)

    @property
    def lr_psnr(self) -> float:
        return psnr_from_mse(self.lr_mse)


def lr_factor(step: int, steps: int, schedule: str = "linear1cycledrop") -> float:
    """Learning-rate multiplier at ``step``: linear1cycledrop goes 0.1 -> 1 (45 %) -> 0.1 (90 %) -> 0.001."""
    if schedule == "fixed":
        return 1.0
    if schedule == "linear1cycle":
        return (9 * (1 - abs(step / steps - 0.5) * 2) + 1) / 10
    peak_end = 0.9 * steps
    if step < peak_end:
        return (9 * (1 - abs(step / peak_end - 0.5) * 2) + 1) / 10
    return 0.1 + (step - peak_end) / (0.1 * steps) * (0.001 - 0.1)


def _norms(t: torch.Tensor) -> torch.Tensor:
    """Norm of each latent vector (last dim) or each noise map (all but batch)."""
    dims = (-1,) if t.dim() == 3 else tuple(range(1, t.dim()))
    return (t.pow(2).sum(dims, keepdim=True) + 1e-9).sqrt()


class _Rows:
    """The rows still searching, with everything the optimiser keeps per row: their latents and noise maps, Adam's
    moments and the sphere each vector or map lives on (PULSE's SphericalOptimizer: after every step each is put
    back to its starting radius, so the search moves in direction only, where the prior lives). ``keep`` drops
    the rows that stopped, so the next steps cost only what is left. The noise maps are Adam's second group, so
    they can move at their own rate (``noise_lr_scale``)."""

    def __init__(self, latent, noise, index, learning_rate, noise_lr_scale=1.0):
        self.latent, self.noise, self.index = latent, noise, index
        self.trainable = [i for i, maps in enumerate(noise) if maps.requires_grad]
        self.noise_lr_scale = noise_lr_scale
        self.radii = [_norms(p).detach() for p in self.params]
        self.optimizer = self._adam(learning_rate)

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.latent] + [self.noise[i] for i in self.trainable]

    def _adam(self, learning_rate: float) -> torch.optim.Adam:
        groups = [{"params": [self.latent], "lr_scale": 1.0}]
        if self.trainable:
            groups.append({"params": [self.noise[i] for i in self.trainable], "lr_scale": self.noise_lr_scale})
        return torch.optim.Adam(groups, lr=learning_rate)

    @torch.no_grad()
    def step(self, learning_rate: float):
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate * group["lr_scale"]
        self.optimizer.step()
        for p, radius in zip(self.params, self.radii):
            p.mul_(radius / _norms(p))

    @torch.no_grad()
    def keep(self, going: torch.Tensor):
        old_params, old_state = self.params, self.optimizer.state
        self.index = self.index[going]
        self.latent = self.latent[going].requires_grad_(True)
        self.noise = [maps[going].requires_grad_(i in self.trainable) for i, maps in enumerate(self.noise)]
        self.radii = [radius[going] for radius in self.radii]
        self.optimizer = self._adam(self.optimizer.param_groups[0]["lr"])
        for old, new in zip(old_params, self.params):
            state = old_state[old]
            self.optimizer.state[new] = {"step": state["step"], "exp_avg": state["exp_avg"][going],
                                         "exp_avg_sq": state["exp_avg_sq"][going]}


def initial_state(model: LoadedGenerator, seeds, options: SearchOptions, device, start: torch.Tensor | None = None,
                  samples=None):
    """Each row's starting latent and noise maps, drawn from its own seed (batch-composition independent).

    ``start`` (B, 1 or n_styles, dim), an encoder's guess in the Gaussianised space: each row starts there plus
    ``options.spread`` times its seed's draw, put back on the sphere of radius sqrt(dim) where random starts
    lie; so samples of one input still differ, and start near the answer. ``samples`` gives each row's sample
    number (default: all 0). A sample after the first keeps only the ``options.guided_rows`` coarsest rows (pose,
    face shape) near the guess and takes the finer ones from its seed's draw alone, as a random start does: the
    small LR input constrains them least (features, texture, colour), so that is where samples of one input can
    differ. The first sample stays the encoder's face."""
    g = model.generator
    n_latents = 1 if options.tile_latent else g.n_styles
    samples = [0] * len(seeds) if samples is None else samples
    latents, noises = [], []
    for row, (seed, sample) in enumerate(zip(seeds, samples)):
        rng = torch.Generator().manual_seed(int(seed))
        drawn = torch.randn(n_latents, g.style_dim, generator=rng)
        if start is not None:
            guess = start[row].float().cpu()
            guess = guess.mean(0, keepdim=True) if n_latents == 1 else guess.expand(n_latents, -1)
            guess = guess + options.spread * drawn
            if sample > 0:
                guess[options.guided_rows:] = drawn[options.guided_rows:]
            drawn = guess * g.style_dim ** 0.5 / _norms(guess)
        latents.append(drawn)
        noises.append([torch.randn(1, h, w, generator=rng) for h, w in g.noise_shapes()])
    latent = torch.stack(latents).to(device)
    noise = [torch.stack(maps).to(device) for maps in zip(*noises)]
    trainable = []
    for i, maps in enumerate(noise):
        if options.noise == "zero" or i == len(noise) - 1:  # the reference zeroes the finest layer too
            noise[i] = torch.zeros_like(maps)
        elif options.noise == "trainable" and i < options.trainable_noise_layers:
            maps.requires_grad_(True)
            trainable.append(maps)
    latent.requires_grad_(True)
    return latent, noise, trainable


def latent_to_w(model: LoadedGenerator, latent: torch.Tensor) -> torch.Tensor:
    """Gaussianised latent -> W+ (B, n_styles, dim) through the stored fit of the mapping output."""
    ws = F.leaky_relu(latent * model.std + model.mean, MAPPING_SLOPE)
    return ws.expand(-1, model.generator.n_styles, -1)


def search(model: LoadedGenerator, lr_images: torch.Tensor, seeds, options: SearchOptions | None = None,
           progress: Callable[[int, int], None] | None = None, start: torch.Tensor | None = None,
           samples=None) -> list[SearchResult]:
    """Search for each LR image (B, 3, h, w) in [0, 1]; ``seeds`` gives one seed per row.

    ``options`` default to ``options_for(model)``: the generator file's recommended settings.
    ``options.eps`` is one value for all rows or one per row. ``start``: each row's starting latent (an encoder's,
    ``initial_state``), else a random point; ``samples``: each row's sample number (``initial_state``). Returns one
    result per row.
    """
    options = options or options_for(model)
    if (options.init == "encoder") != (start is not None):
        raise ValueError("init 'encoder' starts from the encoder's latents: give them as start, and only then")
    device = model.mean.device
    batch = lr_images.shape[0]
    if len(seeds) != batch:
        raise ValueError(f"need one seed per image: {len(seeds)} seeds for {batch} images")
    if samples is not None and len(samples) != batch:
        raise ValueError(f"need one sample number per image: {len(samples)} for {batch} images")
    target = lr_images.to(device=device, dtype=torch.float32)
    lr_size = tuple(target.shape[-2:])
    eps_rows = torch.as_tensor(options.eps, dtype=torch.float32, device=device)
    eps_rows = eps_rows.expand(batch).clone()
    aim_rows = eps_rows * (1 - options.eps_margin)  # where the consistency terms stop pulling
    terms = losses.parse_loss(options.loss)

    latent, noise, _ = initial_state(model, seeds, options, device, start, samples)  # trainable maps: requires_grad
    rows = _Rows(latent, noise, torch.arange(batch, device=device), options.learning_rate, options.noise_lr_scale)

    res = model.generator.resolution
    best_image = torch.zeros(batch, 3, res, res, device=device)
    best_latent = latent.detach().clone()
    best_mse = torch.full((batch,), float("inf"), device=device)
    best_total = torch.full((batch,), float("inf"), device=device)
    best_step = torch.zeros(batch, dtype=torch.long, device=device)
    steps_run = torch.zeros(batch, dtype=torch.long, device=device)
    frames: list[list[torch.Tensor]] = [[] for _ in range(batch)]
    for step in range(options.steps):
        active = rows.index
        rows.optimizer.zero_grad(set_to_none=True)
        ws = latent_to_w(model, rows.latent)
        with torch.autocast(device.type, torch.bfloat16, enabled=options.precision == "bf16"):
            image = (model.synthesize(ws, rows.noise).float() + 1) / 2
        parts = losses.total_loss(terms, resize(image, lr_size, options.degradation), target[active], ws,
                                  aim_rows[active])
        parts["total"].sum().backward()
        with torch.no_grad():
            shown = quantize(image)  # what the user gets (8 bits); its downscale is what we promise
            mse = (resize(shown, lr_size, options.degradation) - target[active]).pow(2).mean((1, 2, 3))
            # lower LR error first (anything within eps counts as equal), then lower total loss
            eps_here = eps_rows[active]
            key, best_key = torch.maximum(mse, eps_here), torch.maximum(best_mse[active], eps_here)
            better = (key < best_key) | ((key == best_key) & (parts["total"] < best_total[active]))
            # gathered and scattered back by index, not by mask: no host sync on a GPU
            best_image[active] = torch.where(better.view(-1, 1, 1, 1), shown, best_image[active])
            best_latent[active] = torch.where(better.view(-1, 1, 1), rows.latent, best_latent[active])
            best_mse[active] = torch.where(better, mse, best_mse[active])
            best_total[active] = torch.where(better, parts["total"].detach(), best_total[active])
            best_step[active] = torch.where(better, step, best_step[active])
            if options.frame_every and step % options.frame_every == 0:
                for i, row in enumerate(active.tolist()):
                    frames[row].append(shown[i].cpu())
        rows.step(options.learning_rate * lr_factor(step, options.steps, options.schedule))
        steps_run[active] = step + 1
        if progress:
            progress(step + 1, options.steps)
        if options.early_stop:  # a face whose 8-bit result reached the aim stops; the batch goes on without it
            going = mse > aim_rows[active]
            if not bool(going.any()):
                break
            if not bool(going.all()):
                rows.keep(going)

    best_mse_list, steps_list = best_mse.tolist(), steps_run.tolist()
    return [
        SearchResult(
            image=best_image[row].cpu(),
            lr_mse=best_mse_list[row],
            success=best_mse_list[row] <= float(eps_rows[row]),
            seed=int(seeds[row]),
            steps=steps_list[row],
            best_step=int(best_step[row]),
            latent=best_latent[row].cpu(),
            frames=frames[row],
        )
        for row in range(batch)
    ]
