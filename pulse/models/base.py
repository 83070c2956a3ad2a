"""What every generator architecture offers the search, the trainer and the sampler."""

from __future__ import annotations

import torch
import torch.nn as nn

W_AVG_SAMPLES = 10_000  # latents behind an estimated average w


class StyleGenerator(nn.Module):
    """mapping (z -> w) + synthesis (W+ and noise maps -> image in about [-1, 1]). A subclass sets ``config``
    (with ``resolution``, ``style_dim``, ``n_styles``), ``mapping`` and ``synthesis``, and says where its noise
    maps go (``noise_shapes``)."""

    config: object
    mapping: nn.Module
    synthesis: nn.Module

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def n_styles(self) -> int:
        return self.config.n_styles

    @property
    def style_dim(self) -> int:
        return self.config.style_dim

    def noise_shapes(self) -> list[tuple[int, int]]:
        raise NotImplementedError

    def random_noise(self, batch: int, generator: torch.Generator | None = None, device=None):
        device = device or next(self.parameters()).device
        return [torch.randn(batch, 1, h, w, generator=generator).to(device) for h, w in self.noise_shapes()]

    @torch.no_grad()
    def average_w(self, samples: int = W_AVG_SAMPLES, seed: int = 0) -> torch.Tensor:
        """The mean mapping output: the file's ``w_avg`` where the architecture keeps one and it is set, else
        estimated from ``samples`` latents of a fixed seed. Truncation pulls w towards it."""
        kept = getattr(self.mapping, "w_avg", None)
        if kept is not None and kept.any():
            return kept.clone()
        device = next(self.parameters()).device
        z = torch.randn(samples, self.style_dim, generator=torch.Generator().manual_seed(seed)).to(device)
        return self.mapping(z).mean(0)

    def forward(self, z=None, ws=None, noise=None):
        """Render from z (B, style_dim) via the mapping, or from ready W+ latents ``ws`` (B, n_styles, dim)."""
        if ws is None:
            ws = self.mapping(z).unsqueeze(1).expand(-1, self.n_styles, -1)
        if ws.shape[1:] != (self.n_styles, self.style_dim):
            raise ValueError(f"ws must be (B, {self.n_styles}, {self.style_dim}), got {tuple(ws.shape)}")
        if noise is None:
            noise = self.random_noise(ws.size(0), device=ws.device)
        return self.synthesis(ws, noise)
