import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from pulse.depixelize import detect_grid, find_mosaic, pixelated_mode, reduce_mosaic
from pulse.errors import PulseError

EVAL_FACES = Path("/work/shared/data/eval/celebahq256")
EXAMPLE_PHOTO = Path(__file__).parents[1] / "examples" / "restore_astronaut.png"


def mosaic(image: Image.Image, block: int, x: int, y: int) -> tuple[Image.Image, np.ndarray]:
    """Pixelate like a censoring tool: every block (partial ones at the edges too) filled with its mean; returns
    the 8-bit mosaic and the exact means of the whole blocks, (rows, columns, 3) in levels."""
    rgb = np.asarray(image, dtype=np.float64)
    height, width = rgb.shape[:2]
    out = np.empty_like(rgb)
    for top in range(y - block if y else 0, height, block):
        for left in range(x - block if x else 0, width, block):
            rows, cols = slice(max(top, 0), top + block), slice(max(left, 0), left + block)
            out[rows, cols] = rgb[rows, cols].mean((0, 1))
    columns, rows = (width - x) // block, (height - y) // block
    whole = rgb[y:y + rows * block, x:x + columns * block].reshape(rows, block, columns, block, 3).mean((1, 3))
    return Image.fromarray(np.round(out).astype(np.uint8)), whole


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


@pytest.fixture(scope="module")
def photos(astronaut):
    """Real photos of various sizes: crops of the astronaut (her face, the flag, the whole) and the example photo."""
    example = Image.open(EXAMPLE_PHOTO).convert("RGB")
    return [astronaut.crop((140, 20, 340, 220)), astronaut.crop((0, 0, 256, 300)), astronaut.resize((160, 160)),
            astronaut, example.crop((300, 0, 812, 512)).resize((192, 192)), example]


def test_mosaics_of_random_blocks_and_offsets_reduce_to_their_block_means(photos):
    rng = np.random.default_rng(0)
    for photo in photos:
        for _ in range(3):
            block = int(rng.integers(4, 17))
            x, y = int(rng.integers(0, block)), int(rng.integers(0, block))
            shown, means = mosaic(photo, block, x, y)
            found = detect_grid(shown)
            assert found.grid is not None, (photo.size, block, x, y, found.reason)
            assert (found.grid.block, found.grid.x, found.grid.y) == (block, x, y), found.reason
            lr = reduce_mosaic(shown, found.grid)
            assert lr.shape == (3, means.shape[0], means.shape[1])
            # exactly the mosaic's block values, which are the photo's block means rounded to 8 bits
            assert np.array_equal(np.round(lr.permute(1, 2, 0).double().numpy() * 255), np.round(means))


@pytest.mark.parametrize("quality, least", [(75, 1.0), (40, 0.9)])
def test_jpeg_mosaics_are_found_and_reduced_close_to_their_means(photos, quality, least):
    rng = np.random.default_rng(1)
    cases = found_right = 0
    for photo in photos:
        for _ in range(3):
            block = int(rng.integers(4, 17))
            x, y = int(rng.integers(0, block)), int(rng.integers(0, block))
            shown, means = mosaic(photo, block, x, y)
            found = detect_grid(jpeg(shown, quality))
            cases += 1
            if found.grid is None:
                continue  # a miss is an ordinary image: allowed, rarely; a wrong grid is not
            assert (found.grid.block, found.grid.x, found.grid.y) == (block, x, y), found.reason
            found_right += 1
            lr = reduce_mosaic(jpeg(shown, quality), found.grid).permute(1, 2, 0).double().numpy() * 255
            assert np.abs(lr - means).mean() < 4  # JPEG halves colour resolution: small blocks lose the most
    assert found_right >= least * cases


def test_photos_are_never_taken_for_mosaics(photos):
    for photo in photos:
        for image in (photo, jpeg(photo, 40), jpeg(photo, 10), jpeg(photo, 5), photo.resize((16, 16), Image.BICUBIC),
                      photo.resize((32, 32), Image.BICUBIC)):
            found = detect_grid(image)
            assert found.grid is None, (image.size, found.reason)


@pytest.mark.skipif(not EVAL_FACES.is_dir(), reason="the shared eval faces are not on this machine")
def test_eval_faces_are_not_mosaics_and_their_mosaics_are():
    rng = np.random.default_rng(2)
    for path in sorted(EVAL_FACES.iterdir())[:8]:
        face = Image.open(path).convert("RGB")
        for image in (face, jpeg(face, 40), face.resize((16, 16), Image.BICUBIC)):
            assert detect_grid(image).grid is None, path
        block = int(rng.integers(4, 17))
        found = detect_grid(mosaic(face, block, 0, 0)[0])
        assert found.grid is not None and found.grid.block == block, (path, found.reason)


def test_gradients_and_text_are_not_mosaics():
    xx, yy = np.meshgrid(np.arange(512), np.arange(384))
    ramp = np.repeat(np.round(xx / 511 * 255)[..., None], 3, -1).astype(np.uint8)  # 8-bit steps every 2 px
    slow_ramp = np.repeat(np.round(xx / 511 * 40)[..., None], 3, -1).astype(np.uint8)  # steps of 1 every ~13 px
    diagonal = np.stack([xx / 2, yy / 2, (xx + yy) / 4], -1).clip(0, 255).round().astype(np.uint8)
    images = [Image.fromarray(a) for a in (ramp, slow_ramp, diagonal)]
    font = ImageFont.truetype(str(Path(ImageFont.__file__).parent / "fonts" / "DejaVuSans.ttf"), 32) \
        if (Path(ImageFont.__file__).parent / "fonts" / "DejaVuSans.ttf").is_file() else ImageFont.load_default(32)
    for mode in ("L", "1"):  # antialiased and aliased glyphs
        text = Image.new("RGB", (640, 200), "white")
        draw = ImageDraw.Draw(text)
        draw.fontmode = mode
        draw.multiline_text((8, 8), "The quick brown fox\njumps over 1234567890\nthe lazy dog", fill="black", font=font)
        images += [text, jpeg(text, 40)]
    for image in images:
        found = detect_grid(image)
        assert found.grid is None, found.reason


def test_a_nearest_enlarged_lr_face_is_a_mosaic(astronaut):
    lr = astronaut.crop((140, 20, 340, 220)).resize((16, 16), Image.BICUBIC)
    found = detect_grid(lr.resize((128, 128), Image.NEAREST))
    assert (found.grid.block, found.grid.x, found.grid.y, found.grid.columns) == (8, 0, 0, 16)
    reduced = reduce_mosaic(lr.resize((128, 128), Image.NEAREST), found.grid)
    assert np.array_equal(np.round(reduced.permute(1, 2, 0).numpy() * 255).astype(np.uint8), np.asarray(lr))


def test_pixelated_modes(astronaut):
    face = astronaut.crop((140, 20, 340, 220))
    shown, _ = mosaic(face, 10, 3, 0)
    assert find_mosaic(shown, "off").grid is None
    assert find_mosaic(shown, "auto").grid.block == 10
    given = find_mosaic(shown, 10)
    assert (given.grid.block, given.grid.x, given.grid.y) == (10, 3, 0)
    with pytest.raises(PulseError, match="shown.png: no grid of 7 px blocks"):
        find_mosaic(shown, 7, name="shown.png")
    assert [pixelated_mode(v) for v in ("auto", "OFF", "12")] == ["auto", "off", 12]
    for bad in ("1", "yes", "-4"):
        with pytest.raises(PulseError, match="--pixelated"):
            pixelated_mode(bad)
