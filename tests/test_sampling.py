import numpy as np
import torch

from pulse.sampling import image_grid


def test_image_grid_places_each_image_between_white_gaps():
    images = torch.rand(5, 3, 8, 6)
    grid = np.asarray(image_grid(images, columns=3, gap=2), dtype=np.float64) / 255
    assert grid.shape == (2 * (8 + 2) + 2, 3 * (6 + 2) + 2, 3)  # 2 rows of 3, gaps around every image
    for i, image in enumerate(images):
        top, left = 2 + (i // 3) * 10, 2 + (i % 3) * 8
        tile = grid[top:top + 8, left:left + 6].transpose(2, 0, 1)
        assert np.abs(tile - image.numpy()).max() <= 0.5 / 255 + 1e-6  # 8-bit rounding only
    assert (grid[:2] == 1).all() and (grid[12:, 2 * 8 + 2:] == 1).all()  # gaps and the empty sixth cell are white
