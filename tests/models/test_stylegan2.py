import math

import pytest
import torch

from pulse.errors import PulseError
from pulse.models.generator_file import LoadedGenerator, gaussian_fit, load_generator, save_generator
from pulse.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator, modulated_conv2d, stylegan2_channels
from pulse.resample import resize
from pulse.search import SearchOptions, search

SMALL = dict(resolution=32, style_dim=32, mapping_layers=2, channels=[32, 32, 16, 8])


def small_generator(seed=0):
    torch.manual_seed(seed)
    g = StyleGAN2Generator(StyleGAN2Config(**SMALL)).eval().requires_grad_(False)
    for block in g.synthesis.blocks():  # images in about [-1, 1], as a trained generator's
        block.torgb.weight.mul_(0.15)
    for block in g.synthesis.blocks():  # trained generators use their noise; a fresh one has strength 0
        for layer in (getattr(block, "conv0", None), block.conv1):
            if layer is not None:
                layer.noise_strength.fill_(0.1)
    return g


def official_layout(resolution, channels, style_dim, mapping_layers):
    """Parameter and buffer shapes of NVlabs' stylegan2-ada-pytorch Generator (architecture 'skip', no
    labels), written out from its published layout, independently of pulse's classes."""
    shapes = {f"mapping.fc{i}.{p}": (style_dim, style_dim) if p == "weight" else (style_dim,)
              for i in range(mapping_layers) for p in ("weight", "bias")}
    shapes["mapping.w_avg"] = (style_dim,)
    previous = None
    for i, width in enumerate(channels):
        res = 4 * 2**i
        block = f"synthesis.b{res}"
        shapes[f"{block}.resample_filter"] = (4, 4)
        if previous is None:
            shapes[f"{block}.const"] = (width, 4, 4)
            convs = [("conv1", width)]
        else:
            convs = [("conv0", previous), ("conv1", width)]
        for name, fan_in in convs:
            shapes.update({f"{block}.{name}.weight": (width, fan_in, 3, 3), f"{block}.{name}.bias": (width,),
                           f"{block}.{name}.affine.weight": (fan_in, style_dim),
                           f"{block}.{name}.affine.bias": (fan_in,),
                           f"{block}.{name}.noise_strength": (), f"{block}.{name}.noise_const": (res, res),
                           f"{block}.{name}.resample_filter": (4, 4)})
        shapes.update({f"{block}.torgb.weight": (3, width, 1, 1), f"{block}.torgb.bias": (3,),
                       f"{block}.torgb.affine.weight": (width, style_dim), f"{block}.torgb.affine.bias": (width,)})
        previous = width
    return shapes


def test_official_state_dict_loads_strictly():
    config = StyleGAN2Config.official_ffhq(256)
    assert config.channels == [512, 512, 512, 512, 512, 256, 128]  # config F: 32768 / res, at most 512
    assert config.n_styles == 14  # 2 * log2(256) - 2, NVlabs' num_ws
    layout = official_layout(256, config.channels, 512, 8)
    state = {k: torch.randn(shape) for k, shape in layout.items()}
    g = StyleGAN2Generator(config)
    g.load_state_dict(state, strict=True)
    assert {k: tuple(v.shape) for k, v in g.state_dict().items()} == layout


def test_shapes_styles_and_noise_maps():
    g = small_generator()
    assert g.n_styles == 2 * math.log2(32) - 2 == 8
    assert g.noise_shapes() == [(4, 4), (8, 8), (8, 8), (16, 16), (16, 16), (32, 32), (32, 32)]
    out = g(z=torch.randn(3, 32))
    assert out.shape == (3, 3, 32, 32) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="ws must be"):
        g(ws=torch.randn(3, 7, 32))
    assert stylegan2_channels(128) == StyleGAN2Config().channels == [256, 256, 192, 96, 48, 24]


def test_demodulation_gives_unit_variance_per_channel():
    torch.manual_seed(0)
    x = torch.randn(16, 64, 24, 24)
    weight = torch.randn(32, 64, 3, 3) * torch.rand(32, 1, 1, 1) * 5  # channels of very different scale
    styles = torch.rand(16, 64) * 3 + 0.1  # and per-sample modulation
    out = modulated_conv2d(x, weight, styles)[:, :, 1:-1, 1:-1]  # away from the zero padding
    std = out.std(dim=(0, 2, 3))
    assert torch.allclose(std, torch.ones_like(std), atol=0.08), std
    undemodulated = modulated_conv2d(x, weight, styles, demodulate=False)[:, :, 1:-1, 1:-1].std(dim=(0, 2, 3))
    assert undemodulated.max() > 10 * undemodulated.min()


def test_noise_strength_scales_each_layers_noise():
    g = small_generator()
    ws = g.mapping(torch.randn(2, 32)).unsqueeze(1).expand(-1, g.n_styles, -1)
    noise = g.random_noise(2, torch.Generator().manual_seed(1))
    base = g.synthesis(ws, noise)
    other = [n.clone() for n in noise]
    other[3] = torch.randn_like(other[3])  # the first 16-px layer's noise
    assert not torch.allclose(base, g.synthesis(ws, other))
    g.synthesis.b16.conv0.noise_strength.zero_()
    assert torch.allclose(g.synthesis(ws, noise), g.synthesis(ws, other))


def test_style_mixing_later_styles_leave_the_coarse_layers_alone():
    g = small_generator()
    a, b = (g.mapping(torch.randn(1, 32, generator=torch.Generator().manual_seed(s))) for s in (1, 2))
    noise = g.random_noise(1, torch.Generator().manual_seed(0))
    seen = {}
    g.synthesis.b8.register_forward_hook(lambda module, args, out: seen.__setitem__("b8", out[0]))
    mixed = torch.cat([a.expand(4, -1), b.expand(4, -1)])[None]  # styles 0-3 from a, 4-7 from b
    pure = a[None].expand(1, 8, -1)
    image_pure = g.synthesis(pure, noise)
    b8_pure = seen["b8"]
    image_mixed = g.synthesis(mixed, noise)
    # b4 and b8 read styles 0..3 only: identical features; the image differs through the finer layers
    assert torch.equal(seen["b8"], b8_pure)
    assert not torch.allclose(image_mixed, image_pure)
    ws = pure.clone().requires_grad_(True)
    g.synthesis(ws, noise).square().sum().backward()
    assert (ws.grad.abs().sum(-1) > 0).all()  # every style reaches the image


def test_file_roundtrip_and_search_run_on_stylegan2(tmp_path):
    g = small_generator(3)
    fit = gaussian_fit(g.mapping, g.style_dim, samples=20_000)
    path = tmp_path / "sg2.pt"
    save_generator(path, g, fit, {"name": "sg2"})
    loaded = load_generator(path)
    assert loaded.generator.config == g.config
    noise = g.random_noise(2, torch.Generator().manual_seed(0))
    z = torch.randn(2, 32)
    assert torch.equal(loaded.generator(z=z, noise=noise), g(z=z, noise=noise))

    model = LoadedGenerator(g, fit["mean"], fit["std"], {}, "memory")
    rng = torch.Generator().manual_seed(5)
    with torch.no_grad():
        lr = resize((g(z=torch.randn(2, 32, generator=rng), noise=g.random_noise(2, rng)) + 1) / 2, 8)
    results = search(model, lr, seeds=[1, 2], options=SearchOptions(steps=150))
    assert all(r.success for r in results), [r.lr_mse for r in results]


def test_a_written_generator_file_carries_the_average_w_its_training_left_unset(tmp_path):
    from pulse.models.generator_file import write_generator_file

    g = small_generator()
    assert not g.mapping.w_avg.any()  # training never updates it
    estimate = g.average_w()
    z = torch.randn(10_000, 32, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(estimate, g.mapping(z).mean(0))
    path = write_generator_file(g, tmp_path / "g.pt", {"name": "t"}, fit_samples=1000)
    kept = load_generator(path).generator.mapping.w_avg
    assert kept.any() and torch.allclose(kept, estimate)
    kept_value = kept.clone()
    g.mapping.w_avg.fill_(0.5)  # a file's own average (a converted NVIDIA network) is kept as it is
    assert torch.equal(g.average_w(), torch.full_like(kept_value, 0.5))


def test_conv_clamp_survives_the_file_and_a_file_without_it_loads_unclamped(tmp_path):
    g = small_generator(3)
    clamped = StyleGAN2Generator(StyleGAN2Config(**SMALL, conv_clamp=0.5)).eval().requires_grad_(False)
    clamped.load_state_dict(g.state_dict())
    fit = gaussian_fit(g.mapping, g.style_dim, samples=2000)
    save_generator(tmp_path / "clamped.pt", clamped, fit)
    save_generator(tmp_path / "plain.pt", g, fit)
    ws, noise = torch.randn(2, g.n_styles, 32), g.random_noise(2, torch.Generator().manual_seed(0))
    loaded = load_generator(tmp_path / "clamped.pt").generator
    with torch.no_grad():
        image, unclamped = clamped.synthesis(ws, noise), g.synthesis(ws, noise)
        assert loaded.config.conv_clamp == 0.5 and torch.equal(loaded.synthesis(ws, noise), image)
    assert (image - unclamped).abs().max() > 0.05  # the clamp bites
    # no clamp: the field is not written, as in files from before it existed, and such a file loads unclamped
    assert "conv_clamp" not in torch.load(tmp_path / "plain.pt", weights_only=True)["config"]
    assert load_generator(tmp_path / "plain.pt").generator.config.conv_clamp is None
    for bad in (-1, "256", True):
        with pytest.raises(PulseError, match=r"conv_clamp must be None or a number from 0, got"):
            StyleGAN2Config(**SMALL, conv_clamp=bad)
