"""The training loop: one process's G and D steps, checkpoints, logging, and ``train`` that runs it all.

Recipe (StyleGAN2-ADA's, minus what a few-million-parameter generator on ~35k faces does not need): the
non-saturating logistic loss; a lazy R1 penalty on real images every ``R1_INTERVAL`` D steps (scaled by the
interval); an exponential moving average of G with a half-life in kimg, ramped up early so the first sample
grids already move; DiffAugment on everything D sees, real and fake; style mixing; bf16 autocast and
channels_last on CUDA; gradient accumulation; data parallelism over torchrun processes. ``--batch`` is the
images per optimiser step over all processes and micro-batches, so hyper-parameters mean the same on one
CPU and on eight GPUs.

A run folder holds ``latest.ckpt`` (always a complete checkpoint), ``snapshot-*kimg.ckpt`` (checkpoints kept
for good, to export or resume from later), ``log.jsonl``, sample grids from G_ema with fixed latents, and at the
end ``generator.pt`` (the generator file the search uses).
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..devices import select_device
from ..errors import PulseError
from ..imageio import save_image
from ..models import build_generator, generator_config
from ..models.generator_file import LoadedGenerator, load_generator, write_generator_file
from ..sampling import image_grid, sample_images
from . import distributed
from .augment import ADA_INTERVAL, ada_step, diff_augment, parse_policy
from .checkpoint import (
    capture_rng,
    keep_copy,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from .config import TrainConfig, make_discriminator, resolve_config
from .dataset import DataOrder, FaceData
from .distributed import Processes
from .ema import ema_keep, update_ema
from .export import generator_metadata
from .losses import d_logistic_loss, d_r1_loss, g_nonsaturating_loss
from .run_folder import LATEST, Progress, crossed, refuse_second_run, stop_requests, stopped

R1_INTERVAL = 16  # lazy regularisation: the R1 penalty every 16th D step, weighted 16x


EMA_RAMPUP = 0.05  # the EMA half-life is at most 5 % of the images shown so far


ADAM_BETAS = (0.0, 0.99)


GRID_FACES, GRID_SEED = 16, 0
METRICS_SEED = 1


GENERATOR_FILE = "generator.pt"


STATS = ("loss_g", "loss_d", "r1", "r1_steps", "real_logit", "fake_logit")


def _seed_process(seed: int, rank: int):
    """Different latents and augmentations in each process, reproducible from the run's seed."""
    key = (seed * 1_000_003 + rank + 1) % 2**32
    torch.manual_seed(key)
    np.random.seed(key)
    random.seed(key)


def _describe_losses(stats: dict) -> str:
    r1 = "-" if stats["r1"] is None else f"{stats['r1']:.4f}"
    return f"G {stats['loss_g']:.3f}  D {stats['loss_d']:.3f}  R1 {r1}"


class Trainer:
    """One process's share of a training run: networks, optimisers, data stream and the step."""

    def __init__(self, config: TrainConfig, checkpoint: dict | None = None, init: LoadedGenerator | None = None,
                 processes: Processes = Processes(), command: str = "", report=lambda line: None):
        """``checkpoint`` (from ``load_checkpoint``) continues a run; ``init`` starts G and G_ema from a generator."""
        if checkpoint is not None and init is not None:
            raise PulseError("--init and --resume cannot be combined: a checkpoint already holds G")
        self.config, self.processes, self.report = config, processes, report
        self.device = select_device(config.device, processes.local_rank)
        micro, rest = divmod(config.batch, processes.world * config.grad_accum)
        if rest or not micro:
            raise PulseError(f"--batch {config.batch}: must be a multiple of processes x --grad-accum "
                             f"({processes.world} x {config.grad_accum})")
        self.micro_batch = micro
        self.policy = parse_policy(config.augment)
        self.cuda = self.device.type == "cuda"
        self.amp = self.cuda and torch.cuda.is_bf16_supported()
        if self.cuda:
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

        gen_config = (init.generator.config if init else
                      generator_config(checkpoint["generator_config"]) if checkpoint else config.generator_config())
        torch.manual_seed(config.seed)  # the same initial weights in every process
        self.G = build_generator(gen_config)
        self.D = make_discriminator(config, gen_config.resolution)
        if init is not None:
            self.G.load_state_dict(init.generator.state_dict())
        for net in (self.G, self.D):
            net.to(self.device).requires_grad_(False)
            if self.cuda:
                net.to(memory_format=torch.channels_last)
        self.G_ema = copy.deepcopy(self.G).eval()
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=config.g_lr, betas=ADAM_BETAS, eps=1e-8,
                                      fused=self.cuda or None)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=config.d_lr, betas=ADAM_BETAS, eps=1e-8,
                                      fused=self.cuda or None)

        self.data = FaceData(config.data, gen_config.resolution, int(config.cache_gb * 2**30),
                             processes.rank, processes.world, report)
        if self.data.cached:
            self.data.to(self.device)
        self.order = DataOrder(len(self.data), config.seed, processes.rank)
        self.nimg = self.step = 0
        self.augment_p = 0.0 if config.ada_target > 0 else 1.0  # ADA starts without augmentation
        self._real_signs = torch.zeros(2, device=self.device)  # sum of sign D(real), count (for ADA)
        self.wall_before = 0.0
        self.run_info = {"name": Path(config.out).name, "data": self.data.description,
                         "commands": [], "init": init.source if init else ""}
        _seed_process(config.seed, processes.rank)
        if checkpoint is not None:
            self._restore(checkpoint)
        else:
            for net in (self.G, self.D, self.G_ema):
                distributed.broadcast_weights(net, processes)
        self.run_info["commands"].append({"from_kimg": self.nimg / 1000, "command": command})
        self._stats = torch.zeros(len(STATS), device=self.device)
        self._real_features = None
        self._stat_steps = 0
        report(self.data.summary())

    # --- the step -------------------------------------------------------------------------------------

    def _latents(self, n: int) -> torch.Tensor:
        """W+ latents for ``n`` images; with probability ``mixing_prob`` the later layers take a second z."""
        G = self.G
        ws = G.mapping(torch.randn(n, G.style_dim, device=self.device)).unsqueeze(1).repeat(1, G.n_styles, 1)
        if self.config.mixing_prob > 0:
            other = G.mapping(torch.randn(n, G.style_dim, device=self.device)).unsqueeze(1)
            cut = torch.randint(1, G.n_styles, (n,), device=self.device)
            cut = torch.where(torch.rand(n, device=self.device) < self.config.mixing_prob, cut, G.n_styles)
            later = torch.arange(G.n_styles, device=self.device).view(1, -1, 1) >= cut.view(-1, 1, 1)
            ws = torch.where(later, other, ws)
        return ws

    def _fakes(self, n: int) -> torch.Tensor:
        noise = [torch.randn(n, 1, h, w, device=self.device) for h, w in self.G.noise_shapes()]
        return self.G(ws=self._latents(n), noise=noise)

    def _reals(self, n: int) -> torch.Tensor:
        images = self.data.take(self.order, n, self.device).float() / 127.5 - 1
        return images.contiguous(memory_format=torch.channels_last) if self.cuda else images

    def _autocast(self, enabled: bool = True):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp and enabled)

    def train_step(self):
        """One G step (none during ``d_warmup_kimg``) and one D step (R1 every ``R1_INTERVAL``th), then the
        EMA update."""
        cfg = self.config
        stats = torch.zeros(len(STATS), device=self.device)

        if self.nimg >= cfg.d_warmup_kimg * 1000:
            self._g_step(stats)
        self._d_step(stats)

        self._update_ema()
        self.nimg += cfg.batch
        self.step += 1
        if cfg.ada_target > 0 and self.step % ADA_INTERVAL == 0:
            signs, count = distributed.average(self._real_signs, self.processes).tolist()
            self.augment_p = ada_step(self.augment_p, signs / count, cfg.ada_target, cfg.batch * ADA_INTERVAL)
            self._real_signs.zero_()
        self._stats += stats
        self._stat_steps += 1

    def _g_step(self, stats: torch.Tensor):
        n, accum = self.micro_batch, self.config.grad_accum
        self.G.requires_grad_(True)
        for _ in range(accum):
            with self._autocast():
                logits = self.D(diff_augment(self._fakes(n), self.policy, self.augment_p)).float()
            loss_g = g_nonsaturating_loss(logits)
            (loss_g / accum).backward()
            stats[0] += loss_g.detach() / accum
        self.G.requires_grad_(False)
        distributed.average_gradients(self.G, self.processes)
        self.opt_G.step()
        self.opt_G.zero_grad(set_to_none=True)

    def _d_step(self, stats: torch.Tensor):
        cfg, n, accum = self.config, self.micro_batch, self.config.grad_accum
        self.D.requires_grad_(True)
        with_r1 = self.step % R1_INTERVAL == 0 and cfg.r1_gamma > 0
        for _ in range(accum):
            with torch.no_grad(), self._autocast():
                fakes = self._fakes(n)
            reals = self._reals(n).detach().requires_grad_(with_r1)
            with self._autocast():
                fake_logits = self.D(diff_augment(fakes, self.policy, self.augment_p)).float()
            with self._autocast(enabled=not with_r1):  # the penalty's double backward runs in float32
                real_logits = self.D(diff_augment(reals, self.policy, self.augment_p)).float()
            loss_d = d_logistic_loss(real_logits, fake_logits)
            total = loss_d
            if with_r1:
                r1 = d_r1_loss(real_logits, reals)
                total = total + r1 * (cfg.r1_gamma / 2 * R1_INTERVAL)
                stats[2] += r1.detach() / accum
            (total / accum).backward()
            stats[1] += loss_d.detach() / accum
            stats[4] += real_logits.detach().mean() / accum
            self._real_signs += torch.stack([real_logits.detach().sign().sum(), real_logits.new_tensor(n)])
            stats[5] += fake_logits.detach().mean() / accum
        stats[3] = float(with_r1)
        self.D.requires_grad_(False)
        distributed.average_gradients(self.D, self.processes)
        self.opt_D.step()
        self.opt_D.zero_grad(set_to_none=True)

    def _update_ema(self):
        half_life = min(self.config.ema_kimg * 1000, self.nimg * EMA_RAMPUP)
        update_ema(self.G_ema, self.G, ema_keep(self.config.batch, half_life))

    def take_stats(self) -> dict:
        """Mean losses since the last call, over all processes (this waits for the device)."""
        values = distributed.average(self._stats / max(self._stat_steps, 1), self.processes).tolist()
        self._stats.zero_()
        self._stat_steps = 0
        stats = dict(zip(STATS, values))
        r1_share = stats.pop("r1_steps")
        stats["r1"] = stats["r1"] / r1_share if r1_share > 0 else None
        if self.config.ada_target > 0:
            stats["augment_p"] = self.augment_p
        return {k: (round(v, 6) if v is not None else None) for k, v in stats.items()}

    # --- checkpoints ------------------------------------------------------------------------------------

    def save(self, path) -> Path | None:
        """Write a checkpoint (rank 0), with every process's random and data-order state."""
        states = distributed.gather({"rng": capture_rng(self.device), "data": self.order.state_dict()},
                                    self.processes)
        if not self.processes.is_main:
            return None
        return save_checkpoint(path, {
            "config": asdict(self.config),
            "generator_config": asdict(self.G.config),
            "G": self.G.state_dict(), "G_ema": self.G_ema.state_dict(), "D": self.D.state_dict(),
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "progress": {"nimg": self.nimg, "step": self.step, "wall_s": self.wall_before, "augment_p": self.augment_p,
                         "real_signs": self._real_signs.tolist()},
            "processes": states,
            "run": self.run_info,
        })

    def _restore(self, checkpoint: dict):
        try:
            for name, net in (("G", self.G), ("G_ema", self.G_ema), ("D", self.D)):
                net.load_state_dict(checkpoint[name])
            self.opt_G.load_state_dict(checkpoint["opt_G"])
            self.opt_D.load_state_dict(checkpoint["opt_D"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise PulseError(f"checkpoint does not fit this run ({str(err).splitlines()[0][:160]})")
        # an optimizer's state carries its learning rate: set this run's, or a --g-lr/--d-lr given with
        # --resume would be silently ignored
        for name, optimizer, lr in (("G", self.opt_G, self.config.g_lr), ("D", self.opt_D, self.config.d_lr)):
            before = optimizer.param_groups[0]["lr"]
            if before != lr:
                self.report(f"note: {name} learning rate {before:g} at the checkpoint, {lr:g} from here on")
            for group in optimizer.param_groups:
                group["lr"] = lr
        progress = checkpoint["progress"]
        self.nimg, self.step, self.wall_before = progress["nimg"], progress["step"], progress["wall_s"]
        self.augment_p = progress.get("augment_p", self.augment_p)
        self._real_signs = torch.tensor(progress.get("real_signs", [0.0, 0.0]), device=self.device)
        self.run_info["init"] = checkpoint["run"]["init"]
        self.run_info["commands"] = list(checkpoint["run"]["commands"])
        states = checkpoint["processes"]
        if len(states) == self.processes.world:
            own = states[self.processes.rank]
            restore_rng(own["rng"], self.device)
            if own["data"]["size"] != len(self.data):
                self.report(f"note: this process now has {len(self.data):,} images, {own['data']['size']:,} at the "
                            f"checkpoint: the data order starts a new epoch")
            self.order.load_state_dict(own["data"])
        else:
            self.report(f"note: checkpoint was made by {len(states)} process(es), this run has "
                        f"{self.processes.world}: training continues, but not step-for-step as it would have")
            _seed_process(self.config.seed + self.step, self.processes.rank)

    @torch.no_grad()
    def measure(self) -> dict:
        """Generator metrics of G_ema against real faces of the training data (``generator_metrics``): FD, KID,
        precision/recall, diversity and dlib detection, from ``metrics_samples`` samples with a fixed seed."""
        from ..evaluation.generator_metrics import image_features, score_samples

        n = self.config.metrics_samples
        if self._real_features is None:  # the same real faces for every measurement of the run
            spread = [round(i * len(self.data) / n) for i in range(min(n, len(self.data)))]
            self._real_features = image_features(self.data.images_at(spread).float() / 255, self.device)
        samples = sample_images(self.G_ema, n, seed=METRICS_SEED)
        return score_samples(samples, self._real_features, self.device).as_dict()

    def write_grid(self) -> Path:
        """Faces from G_ema at fixed latents: the same faces at every checkpoint, to watch them form."""
        images = sample_images(self.G_ema, GRID_FACES, seed=GRID_SEED)
        return save_image(image_grid(images), Path(self.config.out) / f"samples-{self.nimg / 1000:010.3f}kimg.png")

    # --- the loop ----------------------------------------------------------------------------------------

    def run(self) -> Path | None:
        """Train to ``kimg``, checkpointing and logging on the way; export ``generator.pt`` at the end."""
        cfg, main = self.config, self.processes.is_main
        out = Path(cfg.out)
        if main and self.nimg == 0:
            self.write_grid()
        total = round(cfg.kimg * 1000)
        progress = Progress(out, total, self.nimg, self.step, self.wall_before, enabled=main,
                            describe=_describe_losses)
        with stop_requests(self.processes.world == 1) as stop:
            self._loop(progress, stop)
        progress.close()
        if stop and self.nimg < total:
            self.wall_before = progress.wall()
            self.save(out / LATEST)
            raise stopped(out, self.nimg)
        path = None
        if main:
            path = write_generator_file(self.G_ema, out / GENERATOR_FILE, generator_metadata(self.run_info, self.nimg),
                                        fit_samples=cfg.fit_samples)
        distributed.barrier(self.processes)
        return path

    def _loop(self, progress: Progress, stop: list):
        cfg, main, out = self.config, self.processes.is_main, Path(self.config.out)
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
                if not all(math.isfinite(entry[k]) for k in ("loss_g", "loss_d")):
                    raise PulseError(f"training diverged at {self.nimg / 1000:.1f} kimg (G loss {entry['loss_g']}, "
                                     f"D loss {entry['loss_d']}); {out / LATEST} holds the last good state; "
                                     f"try lower --g-lr/--d-lr or a higher --r1-gamma")
            snapshot = snapshot_every > 0 and crossed(before, self.nimg, snapshot_every)
            if crossed(before, self.nimg, checkpoint_every) or done or snapshot:
                started = time.monotonic()
                self.wall_before = progress.wall()
                self.save(out / LATEST)
                if main:
                    self.write_grid()
                    if snapshot:
                        keep_copy(out / LATEST, out / f"snapshot-{self.nimg / 1000:010.3f}kimg.ckpt")
                progress.exclude(time.monotonic() - started)
            metrics_every = round(cfg.metrics_every * 1000)
            if main and metrics_every > 0 and (crossed(before, self.nimg, metrics_every) or done):
                started = time.monotonic()
                progress.record_metrics(self.nimg, self.step, self.measure())
                progress.exclude(time.monotonic() - started)


def train(given: dict, resume=None, init=None, command: str = "", report=lambda line: None) -> Path | None:
    """Run (or continue) a training run from explicitly given options; returns the generator file (rank 0)."""
    if resume and init:
        raise PulseError("--init and --resume cannot be combined: a checkpoint already holds G")
    checkpoint = load_checkpoint(resume) if resume else None
    loaded = load_generator(init) if init else None
    config = resolve_config(given, checkpoint, asdict(loaded.generator.config) if loaded else None,
                            origin=str(resume or init or ""))
    out = Path(config.out)
    refuse_second_run(out, checkpoint is not None)
    processes = distributed.start(select_device(config.device).type)
    try:
        if processes.is_main:
            out.mkdir(parents=True, exist_ok=True)
        report = report if processes.is_main else (lambda line: None)
        trainer = Trainer(config, checkpoint, loaded, processes, command, report)
        report(f"training {sum(p.numel() for p in trainer.G.parameters()) / 1e6:.2f} M-parameter G, "
               f"{sum(p.numel() for p in trainer.D.parameters()) / 1e6:.2f} M-parameter D at "
               f"{config.resolution} px on {trainer.device} x {processes.world}; batch {config.batch} "
               f"({trainer.micro_batch} x {config.grad_accum} per process), R1 gamma {config.r1_gamma:g}, "
               f"from {trainer.nimg / 1000:g} to {config.kimg:g} kimg")
        return trainer.run()
    except OSError as err:  # a full disk while writing the log or a grid, a shard that vanished mid-run
        raise PulseError(f"{err.filename or out}: {err.strerror or err}")
    finally:
        distributed.stop(processes)
