import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from pulse.imageio import load_image
from pulse.training.dataset import DataOrder, FaceData


def test_corrupt_shard_members_are_skipped_with_a_count(tmp_path, blob, jpeg_bytes):
    rng = np.random.default_rng(1)
    good = jpeg_bytes(blob(rng))
    with zipfile.ZipFile(tmp_path / "train-00.zip", "w", zipfile.ZIP_STORED) as shard:
        for i in range(3):
            shard.writestr(f"aaf_{i}.jpg", jpeg_bytes(blob(rng)))
        shard.writestr("aaf_truncated.jpg", good[: len(good) // 3])
        shard.writestr("aaf_garbage.jpg", b"not an image at all")
    cached = FaceData([tmp_path / "train-00.zip"], 32, cache_bytes=2**30)
    assert cached.cached and len(cached) == 3 and cached.counts.corrupt == 2
    assert "2 corrupt skipped" in cached.summary()
    streamed = FaceData([tmp_path], 32, cache_bytes=0)  # over budget: decoded batch by batch
    order = DataOrder(len(streamed), seed=0)
    batch = streamed.take(order, 8, "cpu")
    assert batch.shape == (8, 3, 32, 32) and batch.dtype == torch.uint8
    assert streamed.counts.corrupt == 2


def test_mixed_sizes_and_modes_become_rgb_at_the_resolution(tmp_path, blob):
    rng = np.random.default_rng(2)
    blob(rng, 64).save(tmp_path / "big.png")
    blob(rng, 40, "L").save(tmp_path / "grey.png")
    blob(rng, 48, "RGBA").crop((0, 0, 48, 32)).save(tmp_path / "wide_alpha.png")
    blob(rng, 32, "P").save(tmp_path / "palette.png")
    data = FaceData([tmp_path], 32, cache_bytes=2**30)
    batch = data.take(DataOrder(len(data), seed=0), 4, "cpu")
    assert batch.shape == (4, 3, 32, 32)
    # 64 and 40 px resized; 48x32 cropped to 32x32 (no resize); L, RGBA and P converted
    assert (data.counts.resized, data.counts.cropped, data.counts.converted) == (2, 1, 3)


def test_training_decodes_images_exactly_as_inference_does(tmp_path):
    """Alpha on white and 16-bit scaling must match load_image, or G learns faces users never give it."""
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)
    rgba[..., 3] = np.linspace(0, 255, 32, dtype=np.uint8)  # a real gradient of transparency
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(rng.integers(0, 65536, (32, 32), dtype=np.uint16)).save(tmp_path / "deep.png")
    data = FaceData([tmp_path], 32, cache_bytes=2**30)
    assert data.cached and data.counts.converted == 2
    for source, pixels in zip(data.sources, data._images):
        with pytest.warns(UserWarning):
            expected = np.asarray(load_image(source.container))
        assert np.array_equal(pixels.permute(1, 2, 0).numpy(), expected), source


def test_data_order_is_a_permutation_per_epoch_and_resumes_exactly():
    order = DataOrder(10, seed=5)
    first, _ = order.next(10)
    assert sorted(first.tolist()) == list(range(10))
    order.next(3)
    saved = order.state_dict()
    expected, flips = order.next(12)
    again = DataOrder(10, seed=5)
    again.load_state_dict(saved)
    got, got_flips = again.next(12)
    assert torch.equal(got, expected) and torch.equal(got_flips, flips)
