import numpy as np
import pytest
import torch
from PIL import Image

from pulse.resample import resample_matrix, resize


@pytest.fixture(scope="module")
def photo():
    """A 1024 px natural-looking image: smooth structure plus fine detail, as uint8 RGB."""
    rng = np.random.default_rng(0)
    coarse = Image.fromarray((rng.random((48, 48, 3)) * 255).astype(np.uint8)).resize((1024, 1024), Image.BICUBIC)
    fine = rng.normal(0, 12, (1024, 1024, 3))
    return Image.fromarray(np.clip(np.asarray(coarse) + fine, 0, 255).astype(np.uint8))


def as_tensor(img):
    return torch.from_numpy(np.asarray(img).astype(np.float64) / 255).permute(2, 0, 1)[None]


@pytest.mark.parametrize("out_size", [512, 341, 256, 128, 64, 16, 700, (300, 170)])
def test_downscale_matches_pillow_bicubic(photo, out_size):
    w, h = (out_size, out_size) if isinstance(out_size, int) else out_size
    ref = np.asarray(photo.resize((w, h), Image.BICUBIC)).astype(np.float64) / 255
    ours = resize(as_tensor(photo), (h, w))[0].permute(1, 2, 0).clamp(0, 1).numpy()
    assert np.abs(ours - ref).mean() < 0.5 / 255


def test_upscale_matches_pillow_bicubic(photo):
    small = photo.resize((16, 16), Image.BICUBIC)
    ref = np.asarray(small.resize((128, 128), Image.BICUBIC)).astype(np.float64) / 255
    ours = resize(as_tensor(small), 128)[0].permute(1, 2, 0).clamp(0, 1).numpy()
    assert np.abs(ours - ref).mean() < 0.5 / 255


def test_rows_are_normalised_and_batched():
    m = resample_matrix(37, 5, dtype=torch.float64)
    assert torch.allclose(m.sum(1), torch.ones(5, dtype=torch.float64))
    x = torch.rand(4, 3, 37, 37, dtype=torch.float64)
    batched = resize(x, 5)
    assert batched.shape == (4, 3, 5, 5)
    assert torch.allclose(batched[2], resize(x[2:3], 5)[0])
    assert torch.allclose(resize(torch.ones(1, 1, 37, 23, dtype=torch.float64), (5, 9)), torch.ones(1, 1, 5, 9, dtype=torch.float64))


def test_gradcheck_even_after_first_use_under_inference_mode():
    with torch.inference_mode():  # the matrices are cached: one made here must still work with autograd
        resize(torch.rand(1, 3, 12, 10, dtype=torch.float64), (5, 3))
    x = torch.rand(2, 3, 12, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: resize(t, (5, 3)), (x,))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_matches_cpu():
    x = torch.rand(2, 3, 128, 128)
    assert torch.allclose(resize(x.cuda(), 16).cpu(), resize(x, 16), atol=1e-5)


def test_box_of_an_integer_factor_is_the_block_means():
    x = torch.rand(2, 3, 24, 40, dtype=torch.float64)
    blocks = x.reshape(2, 3, 3, 8, 5, 8).mean((3, 5))
    assert torch.allclose(resize(x, (3, 5), kernel="box"), blocks)


@pytest.mark.parametrize("in_size, out_size", [(37, 5), (10, 4), (128, 48), (7, 7 * 3)])
def test_box_weighs_each_pixel_by_its_overlap(in_size, out_size):
    m = resample_matrix(in_size, out_size, dtype=torch.float64, kernel="box")
    assert torch.allclose(m.sum(1), torch.ones(out_size, dtype=torch.float64))
    # every input pixel is spent exactly once in total: the mean of the image is kept for any factor
    assert torch.allclose(m.sum(0), torch.full((in_size,), out_size / in_size, dtype=torch.float64))
    # 10 -> 4: output 0 covers pixels 0, 1 and half of 2
    if (in_size, out_size) == (10, 4):
        assert torch.allclose(m[0, :4], torch.tensor([0.4, 0.4, 0.2, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("out_size", [256, 100, 16])
def test_bilinear_matches_pillow_bilinear(photo, out_size):
    ref = np.asarray(photo.resize((out_size, out_size), Image.BILINEAR)).astype(np.float64) / 255
    ours = resize(as_tensor(photo), out_size, kernel="bilinear")[0].permute(1, 2, 0).clamp(0, 1).numpy()
    assert np.abs(ours - ref).mean() < 0.5 / 255


def test_kernels_differ_and_unknown_kernel_is_refused(photo):
    x = as_tensor(photo)
    small = {k: resize(x, 16, kernel=k) for k in ("bicubic", "box", "bilinear")}
    assert (small["box"] - small["bicubic"]).abs().max() > 1e-3
    assert (small["bilinear"] - small["bicubic"]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="kernel must be one of"):
        resize(x, 16, kernel="lanczos")
