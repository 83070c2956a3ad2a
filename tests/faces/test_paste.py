"""Paste-back: only the face square (or the face region) changes, with a feathered edge."""

import numpy as np
from PIL import Image

from pulse.faces.align import photo_to_aligned, scale_quad
from pulse.faces.paste import face_region_mask, paste_back
from pulse.faces.restore import upscale_photo


def test_paste_back_changes_only_pixels_inside_the_quad_and_feathers_them(smooth_pattern, rotated_square, inside_quad):
    photo = upscale_photo(smooth_pattern(120, 90), 4)
    face = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    quad = scale_quad(rotated_square((50, 40), 50, degrees=-17), 4)
    pasted = np.asarray(paste_back(photo, face, quad, feather=0.1), dtype=np.int64)
    diff = np.abs(pasted - np.asarray(photo, dtype=np.int64)).sum(-1)
    inside = inside_quad(quad, photo.width, photo.height)
    assert diff[~inside].max() == 0  # exact: not one pixel outside the face square changes
    assert (diff[inside] > 0).mean() > 0.95
    where = photo_to_aligned(np.stack(np.mgrid[:photo.height, :photo.width][::-1], -1).reshape(-1, 2), quad, 64)
    to_edge = np.minimum(where + 0.5, 63.5 - where).min(-1).reshape(diff.shape) / 64  # fraction of the side
    ramp, solid = inside & (to_edge < 0.03), to_edge > 0.15
    assert diff[ramp].mean() < 0.4 * diff[solid].mean()  # the face fades in at its edge


def face_layout():
    """68 landmarks laid out like an FFHQ-aligned face, as fractions of its side: jaw on a half circle, brows
    above it."""
    points = np.zeros((68, 2))
    angles = np.linspace(np.pi, 0, 17)  # left ear, down round the chin, right ear
    points[0:17] = np.stack([0.5 + 0.3 * np.cos(angles), 0.45 + 0.4 * np.sin(angles)], -1)
    points[17:27] = np.stack([np.linspace(0.25, 0.75, 10), np.full(10, 0.4)], -1)
    points[27:68] = [0.5, 0.6]  # nose, eyes, mouth: inside; the mask does not use them
    return points


def test_face_region_mask_covers_jaw_to_forehead_and_fades():
    size = 64
    mask = face_region_mask(face_layout(), size, feather=0.1)
    at = lambda x, y: mask[int(y * size), int(x * size)]  # noqa: E731
    assert at(0.5, 0.6) == 1 and at(0.5, 0.33) > 0.95  # the face, and the forehead above the brows
    assert at(0.5, 0.1) == 0 and at(0.05, 0.05) == 0 and at(0.05, 0.95) == 0  # hair, background, shoulder
    assert 0 < at(0.5, 0.85) < 1  # the chin line is feathered
    assert face_region_mask(face_layout(), size, feather=0).max() == 1


def test_paste_back_with_landmarks_replaces_only_the_face_region(smooth_pattern, rotated_square, inside_quad):
    photo = upscale_photo(smooth_pattern(120, 90), 4)
    face = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    quad = scale_quad(rotated_square((50, 40), 50, degrees=-17), 4)
    region = face_region_mask(face_layout(), 64, feather=0.1)
    pasted = np.asarray(paste_back(photo, face, quad, feather=0.1, landmarks=face_layout()), dtype=np.int64)
    diff = np.abs(pasted - np.asarray(photo, dtype=np.int64)).sum(-1)
    where = photo_to_aligned(np.stack(np.mgrid[:photo.height, :photo.width][::-1], -1).reshape(-1, 2), quad, 64)
    cell = np.floor(where).astype(int).reshape(*diff.shape, 2)
    inside = inside_quad(quad, photo.width, photo.height) & (cell >= 0).all(-1) & (cell < 64).all(-1)
    padded = np.pad(region, 1)
    near = np.max([padded[dy : dy + 64, dx : dx + 64] for dy in range(3) for dx in range(3)], 0)  # bilinear reach
    weight, reach = np.zeros(diff.shape), np.zeros(diff.shape)
    weight[inside] = region[cell[inside][:, 1], cell[inside][:, 0]]
    reach[inside] = near[cell[inside][:, 1], cell[inside][:, 0]]
    assert diff[~inside].max() == 0
    assert diff[inside & (reach == 0)].max() == 0  # hair and background of the square stay the photo's
    assert (inside & (reach == 0)).sum() > 0.3 * inside.sum()
    assert (diff[weight > 0.99] > 0).mean() > 0.95
