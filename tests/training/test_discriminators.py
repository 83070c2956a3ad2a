import torch

from pulse.training.discriminators import Discriminator, DiscriminatorConfig, ResidualDiscriminator


def test_discriminator_mirrors_the_generator_widths():
    d = Discriminator(DiscriminatorConfig(32, [64, 32, 16, 8]))
    assert d.from_rgb[0].weight.shape[0] == 8 and d.head[-1].weight.shape == (1, 64)
    assert d(torch.randn(6, 3, 32, 32)).shape == (6,)


def test_residual_discriminator_names_and_output():
    d = ResidualDiscriminator(DiscriminatorConfig(32, [32, 32, 16, 8]))
    assert [name for name, _ in d.named_children()] == ["b32", "b16", "b8", "b4"]
    assert d.b32.fromrgb.weight.shape == (8, 3, 1, 1) and d.b4.fc.weight.shape == (32, 32 * 16)
    logits = d(torch.randn(6, 3, 32, 32))
    assert logits.shape == (6,) and torch.isfinite(logits).all()
