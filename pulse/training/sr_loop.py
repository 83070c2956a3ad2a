"""Training the feed-forward super-resolver (``pulse train-sr``): SRResNet in two stages, as SRGAN.

- Stage "pixel" (the first ``pixel_kimg``): L1 to the HR face alone. It converges fast and stably and hands the
  GAN stage a generator already close to the person (PSNR-oriented, somewhat blurry).
- Stage "gan" (from there to ``kimg``): a perceptual term (``perceptual.PerceptualLoss``: distance of VGG16
  features) + an adversarial term against a discriminator built at the boundary from its own seed + a small L1
  term, ESRGAN's weights 1, 5e-3 and 1e-2. The defaults are ESRGAN's: SRGAN's ``VGGDiscriminator`` and the
  relativistic average GAN (G's gradient comes from the real faces' logits too). The remedies against the
  checkerboard those drew here are options: Real-ESRGAN's spectrally normalised per-pixel ``UNetDiscriminator``,
  a lower learning rate for D, the least-squares GAN loss, an EMA of G (exported instead of G), deep VGG layers
  only (``perceptual_layers``), and ICNR or nearest-neighbour upsampling in the network itself.
- In both stages, optionally: ``lr_consistency`` × L1 between the SR output downscaled and the LR input (its
  value is logged whatever its weight, so runs with and without it can be compared).

Pairs: an HR face (mirrored at random by ``dataset.DataOrder``) and its LR made by pulse's own antialiased
bicubic ``resample.resize``, rounded to 8 bits: exactly what ``pulse run`` reads from a file; or, with
``degradation="realesrgan"``, blurred, resized, noisy and JPEG-compressed as photos are (``degrade``), from draws
seeded by the image count. Nothing else is random, so a checkpoint (weights, optimisers, data position) resumes
exactly. The LR-consistency term and the measurements always use the clean bicubic LR.

A run folder holds ``latest.ckpt``, ``snapshot-*kimg.ckpt``, ``log.jsonl`` (losses and img/s; at each checkpoint
a line of PSNR against HR of SR and of bicubic on fixed training faces), a grid per checkpoint (LR | bicubic |
SR | HR of fixed faces) and at the end ``sr.pt``, the SR file of ``models.srresnet``. One process, no torchrun.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from ..devices import select_device
from ..errors import PulseError
from ..files import load_payload
from ..imageio import psnr_from_mse, quantize, save_image, tensor_to_pil
from ..models.srresnet import (
    SR_FILE_FORMAT,
    SR_FILE_VERSION,
    UPSAMPLE_MODES,
    SRResNet,
    SRResNetConfig,
    load_sr_model,
    save_sr_model,
)
from ..resample import resize
from ..sampling import labelled_grid
from .checkpoint import keep_copy, load_checkpoint, save_checkpoint
from .dataset import DataOrder, FaceData
from .degrade import DEGRADATIONS, degradation_generator, degrade
from .discriminators import UNetDiscriminator, VGGDiscriminator
from .ema import ema_keep, update_ema
from .losses import SR_GAN_LOSSES, lr_consistency_loss
from .perceptual import DEFAULT_LAYERS, PerceptualLoss, parse_layers
from .run_folder import LATEST, Progress, crossed, refuse_second_run, resumed_config, stop_requests, stopped

KIND = "srgan"  # a checkpoint's "kind": tells these checkpoints from `pulse train`'s
SR_FILE = "sr.pt"
LICENCE = "non-commercial research only (see weights/README.md)"
ADAM_BETAS = (0.9, 0.999)  # SRGAN's and ESRGAN's, for G and D
D_SEED = 1  # D's initial weights come from seed + D_SEED, whatever the run did before it
FIXED_FACES, GRID_FACES = 64, 8  # training faces for the PSNR line and the grid (the grid's are the first)
SCALES = (2, 4, 8)
ARCHITECTURE = ("scale", "hr_size", "channels", "blocks", "batch_norm", "upsample")
NETWORK_OPTIONS = ("scale", "channels", "blocks", "batch_norm")  # what --init's file fixes (upsample may differ)
SR_DISCRIMINATORS = ("vgg", "vgg-sn", "unet")
GAN_LOSS_NAMES = {"relativistic": "RaGAN", "lsgan": "LSGAN"}


@dataclass
class SRTrainConfig:
    """Everything that defines an SR run. Stored in each checkpoint, so ``--resume`` alone continues it."""

    data: list[str]
    out: str
    scale: int = 8
    hr_size: int = 128
    channels: int = SRResNetConfig.channels
    blocks: int = SRResNetConfig.blocks
    batch_norm: bool = False
    upsample: str = SRResNetConfig.upsample
    icnr: bool = False
    init: str = ""  # an SR file whose network starts the run (fine-tuning it); "": fresh weights
    batch: int = 16
    lr: float = 2e-4  # Adam, G and D
    kimg: float = 330.0  # training length in thousands of HR faces
    pixel_kimg: float = 300.0  # stage "pixel" lasts this long; stage "gan" the rest (far costlier per face)
    perceptual_weight: float = 1.0
    adversarial_weight: float = 5e-3
    pixel_weight: float = 1e-2  # stage "gan"'s L1 term (stage "pixel" is L1 at weight 1)
    lr_consistency: float = 0.0
    perceptual_layers: str = ",".join(DEFAULT_LAYERS)
    discriminator: str = "vgg"  # "vgg": SRGAN's VGG-style D, one logit a face ("vgg-sn": spectrally normalised, no
    # BatchNorm); "unet": Real-ESRGAN's, one logit a pixel
    d_width: int = 32  # the discriminator's first width
    d_lr: float = 0.0  # Adam learning rate of D; 0: the same as G's (lr)
    gan_loss: str = "relativistic"  # or "lsgan" (SRGAN-on-CelebA's least squares)
    ema_kimg: float = 0.0  # half-life of an EMA of G in kimg, exported instead of G; 0: no EMA
    degradation: str = "bicubic"  # the training inputs: "bicubic" (clean) or "realesrgan" (blur, resize, noise, JPEG)
    clean_share: float = 0.0  # with "realesrgan": the share of each batch given the clean bicubic input instead
    seed: int = 0
    checkpoint_every: float = 10.0  # kimg
    snapshot_every: float = 50.0  # kimg between checkpoints kept for good; 0: none
    log_every: float = 1.0  # kimg
    device: str = "auto"
    cache_gb: float = 8.0  # decode the data into memory when it fits

    def __post_init__(self):
        self.data = [str(p) for p in self.data]
        self.out = str(self.out)
        if self.scale not in SCALES:
            raise PulseError(f"--scale {self.scale}: choose 2, 4 or 8")
        if self.hr_size < max(8, 2 * self.scale) or self.hr_size & (self.hr_size - 1):
            raise PulseError(f"--hr-size {self.hr_size}: a power of two of at least {max(8, 2 * self.scale)}")
        checks = [("channels", self.channels >= 1), ("blocks", self.blocks >= 0), ("batch", self.batch > 0),
                  ("lr", self.lr > 0), ("kimg", self.kimg > 0), ("pixel_kimg", self.pixel_kimg >= 0),
                  ("perceptual_weight", self.perceptual_weight >= 0),
                  ("adversarial_weight", self.adversarial_weight >= 0), ("pixel_weight", self.pixel_weight >= 0),
                  ("lr_consistency", self.lr_consistency >= 0), ("d_width", self.d_width >= 1),
                  ("d_lr", self.d_lr >= 0), ("ema_kimg", self.ema_kimg >= 0),
                  ("discriminator", self.discriminator in SR_DISCRIMINATORS),
                  ("gan_loss", self.gan_loss in SR_GAN_LOSSES), ("degradation", self.degradation in DEGRADATIONS),
                  ("clean_share", 0 <= self.clean_share <= 1),
                  ("checkpoint_every", self.checkpoint_every > 0), ("snapshot_every", self.snapshot_every >= 0),
                  ("log_every", self.log_every > 0), ("cache_gb", self.cache_gb >= 0),
                  ("device", self.device in ("auto", "cpu", "cuda")), ("upsample", self.upsample in UPSAMPLE_MODES)]
        for name, ok in checks:
            if not ok:
                raise PulseError(f"--{name.replace('_', '-')} {getattr(self, name)}: out of range")
        if self.clean_share > 0 and self.degradation == "bicubic":
            raise PulseError("--clean-share: every input is clean already; it goes with --degradation realesrgan")
        try:
            parse_layers(self.perceptual_layers)
        except ValueError as err:
            raise PulseError(f"--perceptual-layers {err}")

    @property
    def lr_size(self) -> int:
        return self.hr_size // self.scale

    @property
    def has_gan_stage(self) -> bool:
        return self.kimg > self.pixel_kimg

    @property
    def discriminator_lr(self) -> float:
        return self.d_lr or self.lr

    def model_config(self) -> SRResNetConfig:
        return SRResNetConfig(self.scale, self.channels, self.blocks, self.batch_norm, self.upsample, self.icnr)


def resolve_sr_config(given: dict, checkpoint: dict | None = None, origin: str = "") -> SRTrainConfig:
    """Options given explicitly over a resumed checkpoint's; contradicting its architecture is an error."""
    given = {k: v for k, v in given.items() if v is not None}
    base = dict(checkpoint["config"]) if checkpoint else {}
    return resumed_config(SRTrainConfig, given, base, ARCHITECTURE, origin, "SR training")


def init_options(given: dict) -> dict:
    """``--init SR_FILE``: the network options come from the file, one given that contradicts it is an error;
    only ``--upsample`` may differ (then the ×2 stages start fresh) and ``--icnr`` applies to those."""
    path = given.get("init")
    if not path:
        return given
    try:
        network = SRResNetConfig(**load_payload(path, SR_FILE_FORMAT, SR_FILE_VERSION, "SR model file")["config"])
    except (TypeError, ValueError) as err:
        raise PulseError(f"--init {path}: unknown SR model config ({err})")
    merged = dict(given)
    merged.setdefault("upsample", network.upsample)
    if merged["upsample"] is None:
        merged["upsample"] = network.upsample
    for key in NETWORK_OPTIONS:
        value = getattr(network, key)
        if given.get(key) is not None and given[key] != value:
            raise PulseError(f"--init {path}: its network has {key}={value}, but this run asks for {given[key]}")
        merged[key] = value
    return merged


def make_lr(hr: torch.Tensor, size: int) -> torch.Tensor:
    """HR in [0, 1] -> the LR input `pulse run` would read: pulse's bicubic downscale, 8-bit levels."""
    return quantize(resize(hr, size))


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over images of each image's PSNR."""
    mse = (a - b).pow(2).flatten(1).mean(1)
    return sum(map(psnr_from_mse, mse.tolist())) / len(mse)


def _describe_losses(stats: dict) -> str:
    words = f"{stats['stage']}  L1 {stats['pixel']:.4f}  LR {stats['lr_l1']:.4f}"
    if "adversarial" in stats:
        words += f"  P {stats['perceptual']:.4f}  G {stats['adversarial']:.3f}  D {stats['loss_d']:.3f}"
    return words


class SRTrainer:
    """An SR run: SRResNet (and in stage "gan" the discriminator), optimisers, data stream and the step."""

    def __init__(self, config: SRTrainConfig, checkpoint: dict | None = None, command: str = "",
                 report=lambda line: None):
        self.config, self.report = config, report
        self.device = select_device(config.device)
        torch.manual_seed(config.seed)
        self.G = SRResNet(config.model_config()).to(self.device).train()
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=config.lr, betas=ADAM_BETAS)
        self.D = self.opt_D = None
        self.G_ema = self._new_ema() if config.ema_kimg > 0 else None
        self.perceptual = (PerceptualLoss(parse_layers(config.perceptual_layers), self.device)
                           if config.has_gan_stage and config.perceptual_weight > 0 else None)
        self.data = FaceData(config.data, config.hr_size, int(config.cache_gb * 2**30), report=report)
        if self.data.cached:
            self.data.to(self.device)
        self.order = DataOrder(len(self.data), config.seed)
        n = min(FIXED_FACES, len(self.data))
        self.fixed_hr = self.data.images_at([i * len(self.data) // n for i in range(n)]).to(self.device).float() / 255
        self.fixed_lr = make_lr(self.fixed_hr, config.lr_size)
        self.fixed_bicubic = quantize(resize(self.fixed_lr, config.hr_size))
        self.nimg = self.step = 0
        self.wall_before = 0.0
        self.run_info = {"name": Path(config.out).name, "data": self.data.description, "commands": []}
        if checkpoint is not None:
            self._restore(checkpoint)
        elif config.init:
            self._init_from(config.init)
        self.run_info["commands"].append({"from_kimg": self.nimg / 1000, "command": command})
        self._sums: dict[str, list] = {}
        report(self.data.summary())

    def _init_from(self, path):
        """G's weights from an SR file: all of them, or with another ``upsample`` mode the tensors that fit (the
        head, the residual body and the output conv), the ×2 stages starting fresh."""
        theirs, ours = load_sr_model(path).model, self.G.state_dict()
        fits = {k: v for k, v in theirs.state_dict().items() if k in ours and ours[k].shape == v.shape}
        self.G.load_state_dict({**ours, **fits})
        self.run_info["init"] = str(path)
        if self.G_ema is not None:
            self.G_ema.load_state_dict(self.G.state_dict())
        if len(fits) < len(ours):
            self.report(f"note: {len(fits)} of the {len(ours)} weight tensors from {path} (its upsampling is "
                        f"{theirs.config.upsample}); the rest start fresh")

    @property
    def stage(self) -> str:
        return "pixel" if self.D is None else "gan"

    @property
    def exported(self) -> SRResNet:
        """The network that gets measured, drawn and written to the SR file: the EMA of G when there is one."""
        return self.G_ema if self.G_ema is not None else self.G

    def _new_ema(self) -> SRResNet:
        """The EMA starts as a copy of G: at the start of a run, or where a run that had none turns it on."""
        return copy.deepcopy(self.G).eval().requires_grad_(False)

    def _start_gan_stage(self):
        cfg = self.config
        with torch.random.fork_rng(devices=[]):  # D's weights depend on the seed only, not on when it is built
            torch.manual_seed(cfg.seed + D_SEED)
            self.D = (UNetDiscriminator(cfg.d_width) if cfg.discriminator == "unet"
                      else VGGDiscriminator(cfg.hr_size, cfg.d_width, spectral_norm=cfg.discriminator == "vgg-sn")
                      ).to(self.device).train()
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.discriminator_lr, betas=ADAM_BETAS)

    # --- the step -------------------------------------------------------------------------------------

    def inputs(self, hr: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """What the network sees of a batch: pulse's clean downscale ``low``, or Real-ESRGAN's degradations of the
        HR faces but for the batch's first ``clean_share`` (the data order is random, so those faces are too),
        which keep the clean bicubic input a degradation-trained network must not over-sharpen."""
        cfg = self.config
        if cfg.degradation == "bicubic":
            return low
        clean = round(cfg.clean_share * len(hr))
        if clean == len(hr):
            return low
        return torch.cat([low[:clean], degrade(hr[clean:], cfg.lr_size, degradation_generator(cfg.seed, self.nimg))])

    def train_step(self):
        """One G step (stage "gan": then one D step on the same SR outputs)."""
        cfg = self.config
        if self.D is None and cfg.has_gan_stage and self.nimg >= round(cfg.pixel_kimg * 1000):
            self._start_gan_stage()
        hr = self.data.take(self.order, cfg.batch, self.device).float() / 255
        low = make_lr(hr, cfg.lr_size)
        sr = self.G(self.inputs(hr, low))
        stats = {"pixel": F.l1_loss(sr, hr), "lr_l1": lr_consistency_loss(sr, low)}
        if self.D is None:
            loss = stats["pixel"] + cfg.lr_consistency * stats["lr_l1"]
        else:
            self.D.requires_grad_(False)
            real_logits = None  # LSGAN's G loss does not look at real faces
            if cfg.gan_loss == "relativistic":
                with torch.no_grad():
                    real_logits = self.D(hr * 2 - 1)
            stats["adversarial"] = SR_GAN_LOSSES[cfg.gan_loss][0](real_logits, self.D(sr * 2 - 1))
            stats["perceptual"] = self.perceptual(sr, hr) if self.perceptual is not None else sr.new_zeros(())
            loss = (cfg.perceptual_weight * stats["perceptual"] + cfg.adversarial_weight * stats["adversarial"]
                    + cfg.pixel_weight * stats["pixel"] + cfg.lr_consistency * stats["lr_l1"])
        self.opt_G.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_G.step()
        if self.G_ema is not None:
            update_ema(self.G_ema, self.G, ema_keep(cfg.batch, cfg.ema_kimg * 1000))
        if self.D is not None:
            self._d_step(hr, sr.detach(), stats)
        self.nimg += cfg.batch
        self.step += 1
        for key, value in stats.items():
            total = self._sums.setdefault(key, [0.0, 0])
            total[0], total[1] = total[0] + value.detach(), total[1] + 1

    def _d_step(self, hr: torch.Tensor, sr: torch.Tensor, stats: dict):
        self.D.requires_grad_(True)
        real_logits, fake_logits = self.D(hr * 2 - 1), self.D(sr * 2 - 1)
        stats["loss_d"] = SR_GAN_LOSSES[self.config.gan_loss][1](real_logits, fake_logits)
        self.opt_D.zero_grad(set_to_none=True)
        stats["loss_d"].backward()
        self.opt_D.step()
        stats["real_logit"], stats["fake_logit"] = real_logits.detach().mean(), fake_logits.detach().mean()

    def take_stats(self) -> dict:
        """Mean of each loss since the last call (a term logged from when its stage began)."""
        stats = {"stage": self.stage}
        stats.update({key: round(float(total) / count, 6) for key, (total, count) in self._sums.items()})
        self._sums = {}
        return stats

    # --- checkpoints, measurements, grids ------------------------------------------------------------------

    def save(self, path) -> Path:
        gan = {"D": self.D.state_dict(), "opt_D": self.opt_D.state_dict()} if self.D is not None else {}
        ema = {"G_ema": self.G_ema.state_dict()} if self.G_ema is not None else {}
        return save_checkpoint(path, {
            "kind": KIND, "config": asdict(self.config),
            "G": self.G.state_dict(), "opt_G": self.opt_G.state_dict(), **gan, **ema,
            "progress": {"nimg": self.nimg, "step": self.step, "wall_s": self.wall_before},
            "data": self.order.state_dict(), "run": self.run_info,
        })

    def _restore(self, checkpoint: dict):
        try:
            self.G.load_state_dict(checkpoint["G"])
            self.opt_G.load_state_dict(checkpoint["opt_G"])
            if self.G_ema is not None:  # a run that turns the EMA on here starts it from G
                self.G_ema.load_state_dict(checkpoint.get("G_ema", checkpoint["G"]))
            if "D" in checkpoint:
                self._start_gan_stage()
                self.D.load_state_dict(checkpoint["D"])
                self.opt_D.load_state_dict(checkpoint["opt_D"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise PulseError(f"checkpoint does not fit this run ({str(err).splitlines()[0][:160]})")
        # a --lr or --d-lr given with --resume must win
        for name, optimizer, lr in (("G", self.opt_G, self.config.lr), ("D", self.opt_D, self.config.discriminator_lr)):
            before = optimizer.param_groups[0]["lr"] if optimizer is not None else lr
            if before != lr:
                self.report(f"note: {name} learning rate {before:g} at the checkpoint, {lr:g} from here on")
                for group in optimizer.param_groups:
                    group["lr"] = lr
        progress = checkpoint["progress"]
        self.nimg, self.step, self.wall_before = progress["nimg"], progress["step"], progress["wall_s"]
        if checkpoint["data"]["size"] != len(self.data):
            self.report(f"note: the data now has {len(self.data):,} images, {checkpoint['data']['size']:,} at the "
                        f"checkpoint: the data order starts a new epoch")
        self.order.load_state_dict(checkpoint["data"])
        self.run_info["commands"] = list(checkpoint["run"]["commands"])

    @torch.no_grad()
    def _super_resolve_fixed(self) -> torch.Tensor:
        self.G.eval()
        try:
            return quantize(self.exported(self.fixed_lr))
        finally:
            self.G.train()

    def measure(self) -> dict:
        """PSNR against HR of the 8-bit SR output and of bicubic, and the SR output's LR-PSNR (how well it
        downscales back to its input), on the fixed training faces."""
        sr = self._super_resolve_fixed()
        return {"psnr": round(_psnr(sr, self.fixed_hr), 3),
                "psnr_bicubic": round(_psnr(self.fixed_bicubic, self.fixed_hr), 3),
                "lr_psnr": round(_psnr(resize(sr, self.config.lr_size), self.fixed_lr), 3)}

    def write_grid(self) -> Path:
        """LR (nearest) | bicubic | SR | HR, one fixed face a row: the same faces at every checkpoint."""
        n, cell = min(GRID_FACES, len(self.fixed_hr)), max(self.config.hr_size, 64)
        sr = self._super_resolve_fixed()[:n]
        rows = [[tensor_to_pil(self.fixed_lr[i]).resize((cell, cell), Image.Resampling.NEAREST)]
                + [tensor_to_pil(resize(t[i], cell)) for t in (self.fixed_bicubic, sr, self.fixed_hr)]
                for i in range(n)]
        grid = labelled_grid([f"LR {self.config.lr_size} px", "bicubic", "SR", "HR"], rows, cell)
        return save_image(grid, Path(self.config.out) / f"samples-{self.nimg / 1000:010.3f}kimg.png")

    # --- the loop ----------------------------------------------------------------------------------------

    def run(self) -> Path:
        """Train to ``kimg``, checkpointing and logging on the way; write ``sr.pt`` at the end."""
        out = Path(self.config.out)
        if self.nimg == 0:
            self.write_grid()
        total = round(self.config.kimg * 1000)
        progress = Progress(out, total, self.nimg, self.step, self.wall_before, enabled=True,
                            describe=_describe_losses)
        with stop_requests(True) as stop:
            self._loop(progress, stop)
        progress.close()
        if stop and self.nimg < total:
            self.wall_before = progress.wall()
            self.save(out / LATEST)
            raise stopped(out, self.nimg)
        return save_sr_model(out / SR_FILE, self.exported,
                             sr_metadata(self.config, self.run_info, self.nimg, self.stage))

    def _loop(self, progress: Progress, stop: list):
        cfg, out = self.config, Path(self.config.out)
        total = round(cfg.kimg * 1000)
        log_every = max(1, round(cfg.log_every * 1000))
        checkpoint_every = max(1, round(cfg.checkpoint_every * 1000))
        snapshot_every = round(cfg.snapshot_every * 1000)
        while self.nimg < total and not stop:
            before = self.nimg
            self.train_step()
            progress.tick(self.nimg)
            done = self.nimg >= total
            if crossed(before, self.nimg, log_every) or done:
                entry = progress.record(self.nimg, self.step, self.take_stats())
                if not all(math.isfinite(v) for v in entry.values() if isinstance(v, float)):
                    raise PulseError(f"training diverged at {self.nimg / 1000:.1f} kimg "
                                     f"({_describe_losses(entry)}); {out / LATEST} holds the last good state; "
                                     f"try a lower --lr")
            snapshot = snapshot_every > 0 and crossed(before, self.nimg, snapshot_every)
            if crossed(before, self.nimg, checkpoint_every) or done or snapshot:
                started = time.monotonic()
                self.wall_before = progress.wall()
                self.save(out / LATEST)
                self.write_grid()
                progress.record_metrics(self.nimg, self.step, self.measure())
                if snapshot:
                    keep_copy(out / LATEST, out / f"snapshot-{self.nimg / 1000:010.3f}kimg.ckpt")
                progress.exclude(time.monotonic() - started)


def sr_metadata(config: SRTrainConfig, run_info: dict, nimg: int, stage: str) -> dict:
    """What an SR file says about where it came from."""
    return {
        "method": "srgan" if stage == "gan" else "srresnet",  # the pixel-loss stage alone is an SRResNet
        "name": run_info["name"],
        "scale": config.scale, "lr_size": config.lr_size, "hr_size": config.hr_size,
        "stage": stage,  # "pixel": L1 only so far; "gan": perceptual + adversarial reached
        "kimg": round(nimg / 1000, 3),
        "data": run_info["data"],
        "alignment": "ffhq",
        "licence": LICENCE,
        "training_commands": run_info["commands"],  # every leg of the run, oldest first
        "trainer": (f"pulse train-sr: L1 for {config.pixel_kimg:g} kimg, then VGG16 {config.perceptual_layers} "
                    f"x{config.perceptual_weight:g} + {GAN_LOSS_NAMES[config.gan_loss]} x{config.adversarial_weight:g} "
                    f"against the {config.discriminator} D (width {config.d_width}, lr {config.discriminator_lr:g}) "
                    f"+ L1 x{config.pixel_weight:g}; LR consistency x{config.lr_consistency:g}"
                    + (f"; EMA of G, half-life {config.ema_kimg:g} kimg" if config.ema_kimg > 0 else "")
                    + ("; inputs degraded as Real-ESRGAN's" if config.degradation == "realesrgan" else "")
                    + (f" but {config.clean_share:.0%} of each batch clean" if config.degradation == "realesrgan"
                       and config.clean_share > 0 else "")
                    + (f"; started from {Path(run_info['init']).name}" if run_info.get("init") else "")),
    }


def load_sr_checkpoint(path) -> dict:
    """A checkpoint of ``pulse train-sr`` (not of ``pulse train``), or PulseError naming the file."""
    return load_checkpoint(path, kind=KIND)


def export_sr_checkpoint(checkpoint_path, out, half: bool = False) -> Path:
    """The SR file of a checkpoint's network (``pulse train-sr export``)."""
    checkpoint = load_sr_checkpoint(checkpoint_path)
    config = SRTrainConfig(**checkpoint["config"])
    model = SRResNet(config.model_config())
    model.load_state_dict(checkpoint.get("G_ema", checkpoint["G"]))  # the EMA of G where the run kept one
    metadata = sr_metadata(config, checkpoint["run"], checkpoint["progress"]["nimg"],
                           "gan" if "D" in checkpoint else "pixel")
    return save_sr_model(out, model.eval(), metadata, half=half)


def train_sr(given: dict, resume=None, command: str = "", report=lambda line: None) -> Path:
    """Run (or continue) an SR training run from explicitly given options; returns the SR file."""
    checkpoint = load_sr_checkpoint(resume) if resume else None
    if checkpoint is None:
        given = init_options(given)
    config = resolve_sr_config(given, checkpoint, origin=str(resume or ""))
    out = Path(config.out)
    refuse_second_run(out, checkpoint is not None)
    try:
        out.mkdir(parents=True, exist_ok=True)
        trainer = SRTrainer(config, checkpoint, command, report)
        report(f"training a {sum(p.numel() for p in trainer.G.parameters()) / 1e6:.2f} M-parameter SRResNet x"
               f"{config.scale} ({config.lr_size} -> {config.hr_size} px) on {trainer.device}; batch {config.batch}; "
               f"L1 to {config.pixel_kimg:g} kimg, then perceptual + adversarial to {config.kimg:g} kimg; "
               f"from {trainer.nimg / 1000:g} kimg")
        return trainer.run()
    except OSError as err:  # a full disk while writing the log or a grid, a shard that vanished mid-run
        raise PulseError(f"{err.filename or out}: {err.strerror or err}")
