"""Image-quality and face metrics shared by `pulse eval`, the benchmarks and the tests.

Every metric takes (3, H, W) float tensors in [0, 1] (8-bit images: what users get). PSNR and SSIM are
plain torch. LPIPS and identity need model files from optional packages (``pip install "pulse[eval]"``);
they are located on disk without importing those packages, loaded once, and never downloaded:

- LPIPS is the shift-tolerant AlexNet variant (ST-LPIPS, Ghildyal & Liu 2022) whose trunk *and* heads
  ship in the ``stlpips-pytorch`` wheel (``weights/vST0.0/alex_shift_tolerant.pth``). The package's own
  code imports IPython and torchsummary, which it does not declare, and its standard-LPIPS path needs
  torchvision's ImageNet trunk (a download) and v0.1 heads that the wheel lacks; so the network is rebuilt
  here and loaded strictly from that file (same values as the package's, see tests/evaluation/test_metrics.py).
- Identity is the Euclidean distance between dlib's 128-d face descriptors (``face-recognition-models``);
  below 0.6 dlib calls two faces the same person.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PulseError
from ..files import installed_package_file
from ..imageio import psnr_from_mse, tensor_to_pil
from ..resample import resize
from .stlpips import STLPIPSAlex

INSTALL_HINT = 'pip install "pulse[eval]"'


LPIPS_PACKAGE, LPIPS_WEIGHTS = "stlpips_pytorch", "weights/vST0.0/alex_shift_tolerant.pth"


FACE_PACKAGE = "face_recognition_models"


RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"


LANDMARKS_5_MODEL = "shape_predictor_5_face_landmarks.dat"


LPIPS_NAME = "ST-LPIPS AlexNet"


SAME_PERSON_DISTANCE = 0.6  # dlib's threshold for its face descriptors


SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


# dlib sees every face at this size (antialiased bicubic): an aligned face then spans ~150 px, well above
# the 80 px window of its HOG detector and the 150 px chip of its recognition network.
DLIB_SIZE = 256


# Where dlib's HOG detector puts the face in an FFHQ-aligned crop (mean over 80 eval faces; std 0.03-0.045).
# A fixed box keeps identity defined for outputs the detector misses, and gives steadier landmarks than the
# whole image (same face at 128 vs 256 px: distance 0.06 with this box, 0.17 and up to 0.74 with the image).
ALIGNED_FACE_BOX = (0.20, 0.31, 0.78, 0.88)  # left, top, right, bottom, as fractions of the side


def unavailable() -> dict[str, str]:
    """Metrics whose model files are missing here -> the PyPI package that provides them."""
    missing = {}
    if installed_package_file(LPIPS_PACKAGE, LPIPS_WEIGHTS) is None:
        missing["lpips"] = "stlpips-pytorch"
    if any(installed_package_file(FACE_PACKAGE, f"models/{m}") is None for m in (RECOGNITION_MODEL, LANDMARKS_5_MODEL)):
        missing["identity"] = "face-recognition-models"
    return missing


def _required_file(package: str, relative: str, pypi_name: str, metric: str) -> Path:
    path = installed_package_file(package, relative)
    if path is None:
        raise PulseError(f"{metric} needs {relative.rsplit('/', 1)[-1]} from {pypi_name}: {INSTALL_HINT}")
    return path


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dim() != 3 or a.shape[0] != 3 or a.shape != b.shape:
        raise PulseError(f"metrics compare two (3, H, W) images of one size, got {tuple(a.shape)} and {tuple(b.shape)}")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB over all pixels and RGB channels, peak 1 (inf for identical images)."""
    _check_pair(a, b)
    return psnr_from_mse(float((a.double() - b.double()).pow(2).mean()))


def _gaussian_window(device) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - SSIM_WINDOW // 2
    g = torch.exp(-x.pow(2) / (2 * SSIM_SIGMA**2))
    g /= g.sum()
    return (g[:, None] * g[None, :]).expand(3, 1, -1, -1)


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM (Wang et al. 2004) of each RGB channel, averaged: Gaussian window 11, sigma 1.5, K1 0.01,
    K2 0.03, data range 1, weighted (not sample) variances, only where the window fits inside the image
    (as scikit-image's ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)``)."""
    _check_pair(a, b)
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise PulseError(f"SSIM needs images of at least {SSIM_WINDOW} px, got {a.shape[-1]}x{a.shape[-2]}")
    x, y = a.double().unsqueeze(0), b.double().unsqueeze(0)
    window = _gaussian_window(a.device)

    def blur(t):
        return F.conv2d(t, window, groups=3)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.pow(2)
    var_y = blur(y * y) - mu_y.pow(2)
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.pow(2) + mu_y.pow(2) + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


@lru_cache(maxsize=2)
def lpips_network(device: str) -> STLPIPSAlex:
    """The ST-LPIPS AlexNet network (trunk and heads), loaded once per device, frozen."""
    path = _required_file(LPIPS_PACKAGE, LPIPS_WEIGHTS, "stlpips-pytorch", "LPIPS")
    model = STLPIPSAlex()
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    except (RuntimeError, OSError) as err:
        raise PulseError(f"LPIPS: {path} does not hold the ST-LPIPS AlexNet weights ({str(err)[:160]})") from None
    return model.eval().requires_grad_(False).to(device)


LPIPS_MIN_SIZE = 32  # smaller inputs leave the trunk's last layers no pixels to compare


@torch.no_grad()
def lpips(a: torch.Tensor, b: torch.Tensor) -> float:
    """Perceptual distance (ST-LPIPS, AlexNet): 0 for identical images, larger when less alike."""
    _check_pair(a, b)
    if min(a.shape[-2:]) < LPIPS_MIN_SIZE:
        raise PulseError(f"LPIPS needs images of at least {LPIPS_MIN_SIZE} px, got {a.shape[-1]}x{a.shape[-2]}")
    model = lpips_network(str(a.device))
    return float(model(a.float().unsqueeze(0), b.float().unsqueeze(0).to(a.device))[0])


def _dlib_array(img: torch.Tensor) -> np.ndarray:
    """The image as dlib sees it: DLIB_SIZE x DLIB_SIZE, 8-bit RGB, contiguous."""
    if img.dim() != 3 or img.shape[0] != 3 or img.shape[1] != img.shape[2]:
        raise PulseError(f"face metrics need a square (3, H, W) aligned face, got {tuple(img.shape)}")
    return np.ascontiguousarray(np.asarray(tensor_to_pil(resize(img.float().cpu(), DLIB_SIZE))))


@lru_cache(maxsize=1)
def _face_models():
    import dlib

    recognition = _required_file(FACE_PACKAGE, f"models/{RECOGNITION_MODEL}", "face-recognition-models", "identity")
    landmarks = _required_file(FACE_PACKAGE, f"models/{LANDMARKS_5_MODEL}", "face-recognition-models", "identity")
    return dlib.shape_predictor(str(landmarks)), dlib.face_recognition_model_v1(str(recognition))


def face_embedding(img: torch.Tensor) -> np.ndarray:
    """dlib's 128-d descriptor of an FFHQ-aligned face: 5 landmarks inside ALIGNED_FACE_BOX, 150 px chip."""
    import dlib

    predictor, recognizer = _face_models()
    arr = _dlib_array(img)
    left, top, right, bottom = (round(f * DLIB_SIZE) for f in ALIGNED_FACE_BOX)
    shape = predictor(arr, dlib.rectangle(left, top, right - 1, bottom - 1))
    return np.asarray(recognizer.compute_face_descriptor(arr, shape, 0), dtype=np.float64)


def distance_to(img: torch.Tensor, descriptor: np.ndarray) -> float:
    """Euclidean distance of the face's dlib descriptor to a known one (a true face's, computed once for many
    outputs); < SAME_PERSON_DISTANCE means 'same person'."""
    return float(np.linalg.norm(face_embedding(img) - descriptor))


def identity_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Euclidean distance between the faces' dlib descriptors; < SAME_PERSON_DISTANCE means 'same person'."""
    return distance_to(a, face_embedding(b))


@lru_cache(maxsize=1)
def _frontal_detector():
    import dlib

    return dlib.get_frontal_face_detector()


def detect_face(img: torch.Tensor) -> bool:
    """Whether dlib's HOG frontal detector (its default threshold, score > 0) finds a face in the image,
    seen at DLIB_SIZE px so that small outputs are enlarged rather than missed for size."""
    _, scores, _ = _frontal_detector().run(_dlib_array(img), 0, 0.0)
    return any(s > 0 for s in scores)
