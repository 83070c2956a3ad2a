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


def test_projected_discriminator_trains_its_heads_and_leaves_dlibs_trunk_alone(dlib_recognition_model):
    from pulse.faces.dlib_resnet import load_dlib_face_resnet
    from pulse.training.projected import HEAD_STAGES, ProjectedDiscriminator

    d = ProjectedDiscriminator(DiscriminatorConfig(32, [32, 32, 16, 8]))
    assert len(d.heads) == HEAD_STAGES and not any(k.startswith("trunk.") for k in d.state_dict())
    assert d.image_head[0].parametrizations.weight.original.shape[1] == 3  # the image itself, for colour
    assert not any(name.startswith("trunk.") for name, _ in d.named_parameters())
    trunk_before = {k: v.clone() for k, v in d.trunk.state_dict(keep_vars=True).items()}
    images = torch.rand(4, 3, 32, 32, requires_grad=True)
    optimiser = torch.optim.Adam(d.parameters(), lr=0.01)
    d.requires_grad_(True)
    d(images * 2 - 1).sum().backward()
    optimiser.step()
    assert images.grad.abs().sum() > 0  # G learns through the frozen trunk
    assert all(torch.equal(v, trunk_before[k]) for k, v in d.trunk.state_dict(keep_vars=True).items())
    # the trunk is dlib's network, unchanged: same descriptor as a freshly loaded one
    chips = torch.rand(2, 3, 150, 150) * 255
    assert torch.allclose(d.trunk(chips), load_dlib_face_resnet()(chips), atol=1e-5)
