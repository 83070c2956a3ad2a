"""Training the latent encoder (``pulse train-encoder``) from the generator itself: no data set needed.

Each step draws latents z, renders the generator's faces (its own random noise maps), downscales them with
pulse's antialiased bicubic operator to 8-bit LR faces, exactly what the search reads, and regresses the encoder's
output onto the search variable of that face: the Gaussianised mapping output (``search.latent_to_w`` inverted),
on the sphere. The draws come from a generator seeded by (seed, step), so a checkpoint (weights, optimiser, step)
resumes exactly.

Optionally (``real_data`` with ``real_weight`` and/or ``real_hr_weight``), real faces too: their LR goes through
the encoder and the frozen generator, and the rendered face's downscale is pulled towards the LR (the search's
consistency term), so the encoder also sees real inputs and not only the generator's own; and the rendered face
itself towards the real face (pixel L1, the reconstruction term of pSp and In-Domain GAN Inversion), so the start
is the person the LR came from as far as the generator can draw them, not only a face with the same 16 px shadow.

A run folder holds ``latest.ckpt``, ``log.jsonl`` (loss, and at each checkpoint the mean cosine to the true
latent and the LR-PSNR of the encoder's own face on fixed held-out draws) and at the end ``encoder.pt``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..devices import select_device
from ..errors import PulseError
from ..imageio import psnr_from_mse, quantize
from ..models.encoder import (DEFAULT_CHANNELS, EncoderConfig, LatentEncoder, load_encoder, on_sphere,
                              read_encoder_file, save_encoder)
from ..models.generator_file import MAPPING_SLOPE, LoadedGenerator
from ..resample import resize
from ..search import latent_to_w, parse_search_defaults
from .checkpoint import load_checkpoint, save_checkpoint
from .dataset import DataOrder, FaceData
from .run_folder import LATEST, Progress, crossed, refuse_second_run, resumed_config, stop_requests, stopped

KIND = "encoder"  # a checkpoint's "kind": tells these checkpoints from `pulse train`'s and `pulse train-sr`'s
ENCODER_FILE = "encoder.pt"
HELD_OUT_SEED = 1 << 40  # the fixed draws measured at each checkpoint come from here, never from training steps
HELD_OUT = 128
ARCHITECTURE = ("scale", "channels", "hidden")


@dataclass
class EncoderTrainConfig:
    """Everything that defines an encoder run. Stored in each checkpoint, so ``--resume`` alone continues it."""

    generator: str
    out: str
    scale: int = 8
    channels: list[int] = field(default_factory=lambda: list(DEFAULT_CHANNELS))
    hidden: int = EncoderConfig.hidden
    batch: int = 32
    lr: float = 3e-4
    kimg: float = 100.0  # thousands of generated faces
    real_data: list[str] = field(default_factory=list)
    real_weight: float = 0.0  # weight of the real faces' LR-consistency term (0: generated faces only)
    real_hr_weight: float = 0.0  # weight of the real faces' reconstruction term (pixel L1 at full size)
    real_batch: int = 8
    init: str = ""  # an encoder file whose network starts the run (fine-tuning it); "": fresh weights
    search_defaults: dict = field(default_factory=dict)  # written into encoder.pt (``--search-default``)
    seed: int = 0
    checkpoint_every: float = 2.0  # kimg
    log_every: float = 0.5  # kimg
    device: str = "auto"

    def __post_init__(self):
        self.generator, self.out = str(self.generator), str(self.out)
        self.real_data = [str(p) for p in self.real_data]
        checks = [("batch", self.batch > 0), ("lr", self.lr > 0), ("kimg", self.kimg > 0),
                  ("real_weight", self.real_weight >= 0), ("real_hr_weight", self.real_hr_weight >= 0),
                  ("real_batch", self.real_batch > 0),
                  ("hidden", self.hidden > 0), ("channels", bool(self.channels) and min(self.channels) > 0),
                  ("checkpoint_every", self.checkpoint_every > 0), ("log_every", self.log_every > 0),
                  ("device", self.device in ("auto", "cpu", "cuda"))]
        for name, ok in checks:
            if not ok:
                raise PulseError(f"--{name.replace('_', '-')} {getattr(self, name)}: out of range")
        if self.uses_real_faces and not self.real_data:
            raise PulseError("--real-weight and --real-hr-weight need --real-data (a folder of aligned faces)")
        try:
            parse_search_defaults(f"{k}={v}" for k, v in self.search_defaults.items())
        except ValueError as err:
            raise PulseError(f"--search-default {err}")

    @property
    def uses_real_faces(self) -> bool:
        return self.real_weight > 0 or self.real_hr_weight > 0


def resolve_encoder_config(given: dict, checkpoint: dict | None = None, origin: str = "") -> EncoderTrainConfig:
    """Options given explicitly over a resumed checkpoint's; contradicting its architecture is an error."""
    given = {k: v for k, v in given.items() if v not in (None, (), [])}
    base = dict(checkpoint["config"]) if checkpoint else {}
    return resumed_config(EncoderTrainConfig, given, base, ARCHITECTURE, origin, "encoder training",
                          required=("generator", "out"))


def search_latent(model: LoadedGenerator, w: torch.Tensor) -> torch.Tensor:
    """The search's variable for a mapping output w: Gaussianised (``latent_to_w`` inverted), on the sphere."""
    return on_sphere((F.leaky_relu(w, 1 / MAPPING_SLOPE) - model.mean) / model.std)


@torch.no_grad()
def generated_pairs(model: LoadedGenerator, count: int, lr_size: int, rng: torch.Generator):
    """``count`` of the generator's faces as (8-bit LR in [0, 1], their search latent (count, dim))."""
    g = model.generator
    device = model.mean.device
    z = torch.randn(count, g.style_dim, generator=rng).to(device)
    noise = [m.to(device) for m in g.random_noise(count, generator=rng, device="cpu")]
    w = g.mapping(z)
    face = (g.synthesis(w.unsqueeze(1).expand(-1, g.n_styles, -1), noise).float() + 1) / 2
    return quantize(resize(face.clamp(0, 1), lr_size)), search_latent(model, w)


def render(model: LoadedGenerator, latent: torch.Tensor) -> torch.Tensor:
    """The face in [0, 1] a latent (B, 1, dim) draws with zero noise (differentiable)."""
    g = model.generator
    noise = [torch.zeros(latent.size(0), 1, h, w, device=latent.device) for h, w in g.noise_shapes()]
    return (model.synthesize(latent_to_w(model, latent), noise).float() + 1) / 2


def render_lr(model: LoadedGenerator, latent: torch.Tensor, lr_size: int) -> torch.Tensor:
    """That face downscaled as the search does (differentiable)."""
    return resize(render(model, latent), lr_size)


class EncoderTrainer:
    """An encoder run: the network, its optimiser, the frozen generator and the step."""

    def __init__(self, config: EncoderTrainConfig, model: LoadedGenerator, generator_sha256: str,
                 checkpoint: dict | None = None, command: str = "", report=lambda line: None):
        self.config, self.model, self.generator_sha256 = config, model, generator_sha256
        self.device = model.mean.device
        resolution = model.generator.resolution
        if resolution % config.scale or (resolution // config.scale) & (resolution // config.scale - 1):
            raise PulseError(f"--scale {config.scale}: the generator's {resolution} px must divide into a "
                             "power-of-two LR size")
        self.lr_size = resolution // config.scale
        torch.manual_seed(config.seed)
        self.encoder = LatentEncoder(EncoderConfig(self.lr_size, model.generator.style_dim, list(config.channels),
                                                   config.hidden)).to(self.device).train()
        self.opt = torch.optim.Adam(self.encoder.parameters(), lr=config.lr)
        self.real = self.real_order = None
        if config.uses_real_faces:
            self.real = FaceData(config.real_data, resolution, 8 << 30, report=report)
            self.real_order = DataOrder(len(self.real), config.seed)
        self.held_out = generated_pairs(model, HELD_OUT, self.lr_size, torch.Generator().manual_seed(HELD_OUT_SEED))
        self.nimg = self.step = 0
        self.wall_before = 0.0
        self.run_info = {"name": Path(config.out).name, "generator": config.generator, "commands": []}
        if checkpoint is not None:
            self._restore(checkpoint)
        elif config.init:
            self._init_from(config.init)
        self.run_info["commands"].append({"from_kimg": self.nimg / 1000, "command": command})
        self._sums: dict[str, list] = {}

    def train_step(self):
        cfg = self.config
        lr, target = generated_pairs(self.model, cfg.batch, self.lr_size,
                                     torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step))
        stats = {"latent": (self.encoder(lr)[:, 0] - target).pow(2).mean()}
        loss = stats["latent"]
        if self.real is not None:
            real_hr = self.real.take(self.real_order, cfg.real_batch, self.device).float() / 255
            real_lr = quantize(resize(real_hr, self.lr_size))
            face = render(self.model, self.encoder(real_lr))
            stats["real_lr"] = (resize(face, self.lr_size) - real_lr).pow(2).mean()
            stats["real_hr"] = (face - real_hr).abs().mean()
            loss = loss + cfg.real_weight * stats["real_lr"] + cfg.real_hr_weight * stats["real_hr"]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.nimg += cfg.batch
        self.step += 1
        for key, value in stats.items():
            total = self._sums.setdefault(key, [0.0, 0])
            total[0], total[1] = total[0] + float(value.detach()), total[1] + 1

    def take_stats(self) -> dict:
        stats = {key: round(total / count, 6) for key, (total, count) in self._sums.items()}
        self._sums = {}
        return stats

    @torch.no_grad()
    def measure(self) -> dict:
        """On fixed draws no step trained on: mean cosine of the predicted latent to the true one, and the LR-PSNR
        of the face the prediction draws (what a search of 0 steps would deliver)."""
        lr, target = self.held_out
        self.encoder.eval()
        try:
            predicted = self.encoder(lr)
        finally:
            self.encoder.train()
        mse = (quantize(render_lr(self.model, predicted, self.lr_size).clamp(0, 1)) - lr).pow(2).mean((1, 2, 3))
        return {"latent_cos": round(float(F.cosine_similarity(predicted[:, 0], target, dim=-1).mean()), 4),
                "lr_psnr": round(sum(map(psnr_from_mse, mse.tolist())) / len(mse), 3)}

    def save(self, path) -> Path:
        return save_checkpoint(path, {
            "kind": KIND, "config": asdict(self.config), "generator_sha256": self.generator_sha256,
            "encoder_config": asdict(self.encoder.config), "encoder": self.encoder.state_dict(),
            "opt": self.opt.state_dict(),
            "progress": {"nimg": self.nimg, "step": self.step, "wall_s": self.wall_before},
            "real_data": self.real_order.state_dict() if self.real_order is not None else {},
            "run": self.run_info,
        })

    def _init_from(self, path):
        """The network of an encoder file made for this generator (its architecture fixed the run's options)."""
        loaded = load_encoder(path, self.device)
        self._refuse_other_generator(loaded.generator_sha256, f"--init {path}: an encoder")
        self.encoder.load_state_dict(loaded.model.state_dict())
        self.run_info["init"] = str(path)

    def _refuse_other_generator(self, sha256: str, what: str):
        if sha256 != self.generator_sha256:
            raise PulseError(f"{what} for another generator (sha256 {sha256[:12]}…, not "
                             f"{self.generator_sha256[:12]}…)")

    def _restore(self, checkpoint: dict):
        self._refuse_other_generator(checkpoint["generator_sha256"], "the checkpoint's encoder was trained")
        try:
            self.encoder.load_state_dict(checkpoint["encoder"])
            self.opt.load_state_dict(checkpoint["opt"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise PulseError(f"checkpoint does not fit this run ({str(err).splitlines()[0][:160]})")
        for group in self.opt.param_groups:  # a --lr given with --resume wins
            group["lr"] = self.config.lr
        progress = checkpoint["progress"]
        self.nimg, self.step, self.wall_before = progress["nimg"], progress["step"], progress["wall_s"]
        if self.real_order is not None and checkpoint.get("real_data"):
            self.real_order.load_state_dict(checkpoint["real_data"])
        self.run_info.update({k: v for k, v in checkpoint["run"].items() if k in ("commands", "init")})

    def export(self, path) -> Path:
        return save_encoder(path, self.encoder.eval(), self.generator_sha256, self.config.scale,
                            self.config.search_defaults, encoder_metadata(self.config, self.run_info, self.nimg))

    def run(self) -> Path:
        """Train to ``kimg``, checkpointing and logging on the way; write ``encoder.pt`` at the end."""
        cfg, out = self.config, Path(self.config.out)
        total = round(cfg.kimg * 1000)
        progress = Progress(out, total, self.nimg, self.step, self.wall_before, enabled=True,
                            describe=lambda s: "  ".join(f"{k} {v:.4f}" for k, v in s.items()))
        with stop_requests(True) as stop:
            while self.nimg < total and not stop:
                before = self.nimg
                self.train_step()
                progress.tick(self.nimg)
                done = self.nimg >= total
                if crossed(before, self.nimg, round(cfg.log_every * 1000)) or done:
                    progress.record(self.nimg, self.step, self.take_stats())
                if crossed(before, self.nimg, round(cfg.checkpoint_every * 1000)) or done:
                    started = time.monotonic()
                    self.wall_before = progress.wall()
                    self.save(out / LATEST)
                    progress.record_metrics(self.nimg, self.step, self.measure())
                    progress.exclude(time.monotonic() - started)
        progress.close()
        if stop and self.nimg < total:
            self.wall_before = progress.wall()
            self.save(out / LATEST)
            raise stopped(out, self.nimg)
        return self.export(out / ENCODER_FILE)


def encoder_metadata(config: EncoderTrainConfig, run_info: dict, nimg: int) -> dict:
    """What an encoder file says about where it came from."""
    terms = [f"{weight:g} x {name}" for weight, name in ((config.real_weight, "LR consistency"),
                                                          (config.real_hr_weight, "reconstruction")) if weight > 0]
    real = (f" + {' + '.join(terms)} through the generator on real faces ({len(config.real_data)} source(s))"
            if terms else "")
    origin = {"init": run_info["init"]} if "init" in run_info else {}
    return {"name": run_info["name"], "generator": run_info["generator"], "kimg": round(nimg / 1000, 3), **origin,
            "trainer": f"pulse train-encoder: latent regression on the generator's own faces{real}",
            "training_commands": run_info["commands"]}


def load_encoder_checkpoint(path) -> dict:
    return load_checkpoint(path, kind=KIND)


def export_encoder_checkpoint(checkpoint_path, out, search_defaults: dict | None = None, half: bool = False) -> Path:
    """The encoder file of a checkpoint (``pulse train-encoder export``); ``search_defaults`` replace the run's."""
    checkpoint = load_encoder_checkpoint(checkpoint_path)
    config = EncoderTrainConfig(**checkpoint["config"])
    if search_defaults is not None:
        config.search_defaults = dict(search_defaults)
    encoder = LatentEncoder(EncoderConfig(**checkpoint["encoder_config"]))
    encoder.load_state_dict(checkpoint["encoder"])
    metadata = encoder_metadata(config, checkpoint["run"], checkpoint["progress"]["nimg"])
    return save_encoder(out, encoder.eval(), checkpoint["generator_sha256"], config.scale, config.search_defaults,
                        metadata, half=half)


def init_options(given: dict) -> dict:
    """``--init ENCODER_FILE``: the architecture and scale come from the file, one given that contradicts it is an
    error; so do its search settings unless ``--search-default`` is given."""
    path = given.get("init")
    if not path:
        return given
    payload = read_encoder_file(path)
    fixed = {"scale": payload["scale"], "channels": list(payload["config"]["channels"]),
             "hidden": payload["config"]["hidden"]}
    for key, value in fixed.items():
        if given.get(key) not in (None, (), []) and given[key] != value:
            raise PulseError(f"--init {path}: its network has {key}={value}, but this run asks for {given[key]}")
    if given.get("search_defaults") is None:
        fixed["search_defaults"] = dict(payload["search_defaults"])
    return {**given, **fixed}


def train_encoder(given: dict, resume=None, command: str = "", report=lambda line: None) -> Path:
    """Run (or continue) an encoder training run from explicitly given options; returns the encoder file."""
    from ..models.generator_file import load_generator
    from ..weights.download import sha256_file
    from ..weights.resolve import resolve_generator

    checkpoint = load_encoder_checkpoint(resume) if resume else None
    if checkpoint is None:
        given = init_options(given)
    config = resolve_encoder_config(given, checkpoint, origin=str(resume or ""))
    out = Path(config.out)
    refuse_second_run(out, checkpoint is not None)
    path = resolve_generator(config.generator)
    model = load_generator(path, select_device(config.device))
    try:
        out.mkdir(parents=True, exist_ok=True)
        trainer = EncoderTrainer(config, model, sha256_file(path), checkpoint, command, report)
        report(f"training a {sum(p.numel() for p in trainer.encoder.parameters()) / 1e6:.2f} M-parameter latent "
               f"encoder for {config.generator} x{config.scale} ({trainer.lr_size} px LR) on {trainer.device}; "
               f"batch {config.batch}; to {config.kimg:g} kimg, from {trainer.nimg / 1000:g} kimg")
        return trainer.run()
    except OSError as err:
        raise PulseError(f"{err.filename or out}: {err.strerror or err}")
