"""Face detection, FFHQ alignment, paste-back and whole-photo restore.

Tests that need dlib's 68-landmark model (package face-recognition-models) or the astronaut photo
(scikit-image, public domain) skip when those are not installed; the geometry tests never need them.
"""

import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pulse.faces import align, detect
from pulse.faces.detect import DetectedFace, detect_faces
from pulse.faces.align import align_face, aligned_to_photo, align_to_quad, ffhq_quad, photo_to_aligned, scale_quad
from pulse.faces.paste import face_region_mask, paste_back
from pulse.api import Upsampler
from pulse.cli import main
from pulse.errors import EXIT_INPUT_ERRORS, EXIT_USAGE
from pulse.errors import PulseError
from pulse.imageio import pil_to_tensor, tensor_to_pil
from pulse.resample import resize
from pulse.faces.restore import restore, upscale_photo
from pulse.imageio import psnr_from_mse
from pulse.files import installed_package_file


needs_landmarks = pytest.mark.skipif(
    installed_package_file("face_recognition_models", f"models/{detect.LANDMARK_MODEL}") is None,
    reason="needs dlib's 68-landmark model from face-recognition-models (pip install face-recognition-models)")


@pytest.fixture(scope="module")
def astronaut():
    data = pytest.importorskip("skimage.data", reason="the astronaut photo comes from scikit-image "
                                                      "(pip install scikit-image)")
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def astronaut_face(astronaut):
    (face,) = detect_faces(astronaut)
    return face


def smooth_pattern(width, height, seed=0):
    """A smooth colourful image: every region distinct, nothing finer than interpolation can follow."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width].astype(np.float64)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.02, 0.06), rng.uniform(0.02, 0.06), rng.uniform(0, 6)
        channels.append(0.5 + 0.2 * np.sin(fx * x + phase) + 0.2 * np.cos(fy * y + 0.01 * x * (1 + phase)))
    return Image.fromarray(np.uint8(np.clip(np.stack(channels, -1), 0, 1) * 255 + 0.5), "RGB")


def rotated_square(centre, side, degrees):
    """An FFHQ-ordered quad (top-left, bottom-left, bottom-right, top-right) turned by ``degrees``."""
    t = np.deg2rad(degrees)
    x = np.array([np.cos(t), np.sin(t)]) * side / 2
    y = np.array([-np.sin(t), np.cos(t)]) * side / 2
    c = np.asarray(centre, dtype=np.float64)
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def inside_quad(quad, width, height):
    """Which pixel centres lie inside the quad (cross products; independent of pulse's affine maps)."""
    y, x = np.mgrid[:height, :width].astype(np.float64)
    inside = np.ones((height, width), bool)
    for a, b in zip(quad, np.roll(quad, -1, axis=0)):  # top-left -> bottom-left -> ... runs one way round
        inside &= (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0]) <= 0
    return inside


def eye_centres(landmarks):
    return np.stack([landmarks[36:42].mean(0), landmarks[42:48].mean(0)])


class ConsistentStandIn:
    """Stands in for pulse.api.Upsampler the way a successful search behaves: its output, downscaled, is the
    LR face (bicubic upsampling corrected by back-projection, LR MSE ~1e-5)."""

    resolution = 64

    def run(self, images, scale, samples=1, seed=0, **options):
        results = []
        for img in images:
            lr = pil_to_tensor(img)
            hr = resize(lr, lr.shape[-1] * scale)
            for _ in range(10):
                hr = (hr + resize(lr - resize(hr, lr.shape[-1]), hr.shape[-1])).clamp(0, 1)
            image = tensor_to_pil(hr)
            mse = float((resize(pil_to_tensor(image), lr.shape[-1]) - lr).pow(2).mean())
            results.append([SimpleNamespace(image=image, lr_mse=mse, lr_psnr=psnr_from_mse(mse), success=True,
                                            seed=seed)])
        return results


# ---- geometry, no detector ---------------------------------------------------------------------------------

def test_ffhq_quad_turns_and_scales_with_the_face():
    lm = np.random.default_rng(0).uniform(0, 10, (68, 2))
    lm[36:42] += [30, 40]  # image-left eye
    lm[42:48] += [70, 40]  # image-right eye
    lm[[48, 54]] = [[40, 95], [80, 95]]  # mouth corners
    quad = ffhq_quad(lm)
    edges = np.roll(quad, -1, axis=0) - quad
    assert np.allclose(np.hypot(*edges.T), np.hypot(*edges[0]))  # a square...
    assert abs(edges[0] @ edges[1]) < 1e-9  # ...with right angles
    turn = np.array([[np.cos(0.5), -np.sin(0.5)], [np.sin(0.5), np.cos(0.5)]])
    assert np.allclose(ffhq_quad(2 * lm @ turn.T + [5, -3]), 2 * quad @ turn.T + [5, -3])
    corners = photo_to_aligned(quad, quad, 100)
    assert np.allclose(corners, [[-0.5, -0.5], [-0.5, 99.5], [99.5, 99.5], [99.5, -0.5]])
    assert np.allclose(align.aligned_to_photo(corners, quad, 100), quad)


@pytest.mark.parametrize("centre", [(150, 120), (40, 120)], ids=["inside", "cut-by-left-border"])
def test_alignment_then_inverse_reproduces_the_source_region(centre):
    photo = smooth_pattern(300, 240)
    quad = rotated_square(centre, 140, degrees=23)
    face = align_to_quad(photo, quad, size=128)
    canvas = Image.new("RGB", photo.size)
    back = np.asarray(paste_back(canvas, face, quad, feather=0.05), dtype=np.float64)
    # compare where the face is fully opaque (8 aligned px in from its edge) and FFHQ did not blur: it blurs a
    # band 0.1 x the square's side wide inside the photo edge it pads
    y, x = np.mgrid[:240, :300]
    where = photo_to_aligned(np.stack([x, y], -1).reshape(-1, 2), quad, 128).reshape(240, 300, 2)
    solid = ((where > 8) & (where < 119)).all(-1) & (x >= 0.1 * 140 + 1)
    assert solid.sum() > 5000
    error = np.abs(back - np.asarray(photo, dtype=np.float64))[solid]
    # 8-bit levels. PIL's 8-bit QUAD warp truncates (FFHQ's data carry that -0.45 level bias too); placing
    # the face a quarter pixel off would add ~0.2 to the mean
    assert error.mean() < 0.65 and error.max() <= 2


def test_padding_blur_without_scipy_matches_ffhq_blur(monkeypatch):
    photo = smooth_pattern(200, 160, seed=3)
    quad = rotated_square((30, 140), 120, degrees=-10)  # leaves the photo on two sides: reflect padding
    with_scipy = np.asarray(align_to_quad(photo, quad, 96), dtype=np.float64)
    monkeypatch.setitem(sys.modules, "scipy.ndimage", None)  # import fails as if scipy were not installed
    without = np.asarray(align_to_quad(photo, quad, 96), dtype=np.float64)
    assert not np.array_equal(with_scipy, without)  # the fallback really ran
    assert np.abs(with_scipy - without).mean() < 1.0


def test_paste_back_changes_only_pixels_inside_the_quad_and_feathers_them():
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


def test_paste_back_with_landmarks_replaces_only_the_face_region():
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


def test_face_too_small_to_align_is_refused_with_the_minimum():
    photo = smooth_pattern(64, 64)
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48], lm[[48, 54]] = [30, 30], [34, 30], [[30, 35], [34, 35]]
    with pytest.raises(PulseError, match=r"eyes 4.0 px apart, below the 5 px"):
        align_face(photo, DetectedFace((25, 25, 39, 39), 1.0, lm), size=64)


def test_missing_landmark_model_says_how_to_get_it(monkeypatch):
    def unavailable(name):
        raise PulseError(f"{name}: not downloaded")

    monkeypatch.setattr(detect, "installed_package_file", lambda package, relative: None)
    monkeypatch.setattr(detect, "resolve_file", unavailable)
    with pytest.raises(PulseError) as err:
        detect.landmark_model_path()
    message = str(err.value)
    assert "pip install" in message and "pulse weights download dlib-68-landmarks" in message
    assert "\n" not in message


# ---- real photo: detection and alignment -------------------------------------------------------------------

@needs_landmarks
def test_astronaut_eyes_land_where_ffhq_alignment_puts_them(astronaut, astronaut_face):
    size = 512
    face = align_face(astronaut, astronaut_face, size)
    expected = face.to_aligned(eye_centres(astronaut_face.landmarks))
    assert np.allclose(face.to_photo(expected), eye_centres(astronaut_face.landmarks))
    (again,) = detect_faces(face.image)
    error = np.abs(eye_centres(again.landmarks) - expected).max() / size
    assert error < 0.02, f"eye centres {error:.2%} of the image size away"
    # FFHQ's square is 2 x max(2 x eye distance, 1.8 x eye-to-mouth) wide: eyes a quarter of it apart at most
    assert 0.15 * size < np.hypot(*(expected[1] - expected[0])) <= 0.25 * size + 1e-6


@needs_landmarks
def test_turned_photos_sideways_and_rolled(astronaut, astronaut_face):
    # sideways (no EXIF): found by turning the photo, landmarks mapped back to the sideways photo
    (side,) = detect_faces(astronaut.transpose(Image.Transpose.ROTATE_90))
    x, y = astronaut_face.landmarks.T
    assert np.abs(side.landmarks - np.stack([y, astronaut.width - 1 - x], 1)).mean() < 2.0
    # rolled 25 degrees: the aligned face comes out upright
    rolled = astronaut.rotate(25, resample=Image.Resampling.BICUBIC, expand=True, fillcolor="white")
    (face,) = detect_faces(rolled)
    aligned = align_face(rolled, face, 256)
    (again,) = detect_faces(aligned.image)
    left, right = eye_centres(again.landmarks)
    assert abs(left[1] - right[1]) / 256 < 0.02


@needs_landmarks
def test_huge_photo_detected_on_a_copy_and_aligned_from_the_original(astronaut, astronaut_face):
    big = astronaut.resize((3072, 3072), Image.Resampling.BICUBIC)
    (face,) = detect_faces(big)  # searched at 2048 px, landmarks from the 3072 px original
    assert np.abs((face.landmarks + 0.5) / 6 - 0.5 - astronaut_face.landmarks).mean() < 1.0
    small = np.asarray(align_face(astronaut, astronaut_face, 128).image, dtype=np.float64)
    large = np.asarray(align_face(big, face, 128).image, dtype=np.float64)  # FFHQ's shrink step runs here
    assert psnr_from_mse(np.mean(((small - large) / 255) ** 2)) > 25


# ---- restore -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_faces(astronaut):
    """The astronaut and, smaller, her mirror image, side by side."""
    photo = Image.new("RGB", (960, 512), "white")
    photo.paste(astronaut, (0, 0))
    photo.paste(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((420, 420)), (520, 60))
    return photo


@needs_landmarks
def test_largest_face_only(two_faces):
    (face,) = align.align_faces(two_faces, 64, largest=True)
    assert face.box[2] < 512  # the full-size one, on the left


@needs_landmarks
def test_restore_pastes_consistent_faces_and_nothing_else(two_faces):
    scale = 4
    restored = restore(two_faces, scale, ConsistentStandIn(), mask="square")
    assert restored.image.size == (3840, 2048) and len(restored.faces) == 2
    plain = np.asarray(upscale_photo(two_faces, scale))
    assert np.array_equal(np.asarray(restored.upscaled), plain)
    changed = (np.asarray(restored.image) != plain).any(-1)
    inside = [inside_quad(face.quad_scaled, *restored.image.size) for face in restored.faces]
    assert not (changed & ~(inside[0] | inside[1])).any()  # exact: nothing changes outside the face squares
    assert all(changed[i].mean() > 0.9 for i in inside)
    for face in restored.faces:
        assert np.allclose(face.quad_scaled, scale_quad(face.aligned.quad, scale))

    for face in restored.faces:  # cut each pasted face out of the restored photo again, at the LR size
        lr = pil_to_tensor(face.lr)
        recut = resize(pil_to_tensor(align_to_quad(restored.image, face.quad_scaled, 64)), lr.shape[-1])
        result_lr = resize(pil_to_tensor(face.result.image), lr.shape[-1])
        geometry_psnr = psnr_from_mse(float((recut - result_lr).pow(2).mean()))
        lr_psnr = psnr_from_mse(float((recut - lr).pow(2).mean()))
        # The stand-in's output downscales to the LR face within 60 dB, so what is left is paste + re-cut
        # (warps, FFHQ's shrink, the feathered edge mixing in the bicubic background): 36.7 and 37.3 dB
        # measured. The same faces pasted a tenth of an LR pixel off measure 31 dB, half a pixel off ~20 dB.
        assert geometry_psnr > 35 and lr_psnr > 35, (geometry_psnr, lr_psnr)


@needs_landmarks
def test_restore_face_mask_keeps_the_photos_hair_and_background(two_faces):
    scale = 4
    square = restore(two_faces, scale, ConsistentStandIn(), mask="square")
    face = restore(two_faces, scale, ConsistentStandIn())  # the default
    plain = np.asarray(square.upscaled)
    changed = {name: (np.asarray(r.image) != plain).any(-1) for name, r in (("square", square), ("face", face))}
    for f in face.faces:
        inside = inside_quad(f.quad_scaled, *face.image.size)
        share = changed["face"][inside].mean()
        assert 0.3 < share < 0.75 < changed["square"][inside].mean(), share
        top = photo_to_aligned(np.argwhere(inside)[:, ::-1], f.quad_scaled, 64)[:, 1] < 64 * 0.06
        assert not changed["face"][inside][top].any()  # the top of the square (hair) is the photo's own
        centre = aligned_to_photo([[32, 36]], f.quad_scaled, 64)[0].round().astype(int)
        assert changed["face"][centre[1], centre[0]]
    with pytest.raises(PulseError, match="mask must be one of face, square"):
        restore(two_faces, scale, ConsistentStandIn(), mask="oval")


@needs_landmarks
def test_restore_with_the_search_on_a_tiny_generator(astronaut, tiny_generator_file):
    upsampler = Upsampler(generator=tiny_generator_file, device="cpu")
    steps_seen = []  # what `pulse restore` shows on its progress bar
    restored = restore(astronaut.resize((128, 128), Image.Resampling.BICUBIC), 4, upsampler, steps=5,
                       on_step=lambda step, total: steps_seen.append((step, total)))
    assert steps_seen == [(k, 5) for k in range(1, 6)]
    (face,) = restored.faces
    assert face.lr.size == (8, 8) and face.result.image.size == (32, 32)
    assert restored.image.size == (512, 512)
    report = face.report()
    assert report["lr_size"] == 8 and report["seed"] == 0 and np.isfinite(report["lr_psnr"])


def test_restore_without_a_face_upscales_plainly_and_says_so(monkeypatch):
    monkeypatch.setattr(align, "detect_faces", lambda *args, **kwargs: [])
    photo = smooth_pattern(40, 30)
    with pytest.warns(UserWarning, match="wall.png: no face found; upscaled plainly"):
        restored = restore(photo, 4, ConsistentStandIn(), name="wall.png")
    assert restored.faces == [] and np.array_equal(np.asarray(restored.image), np.asarray(upscale_photo(photo, 4)))


# ---- command line ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photos(astronaut, tmp_path_factory):
    """Photos in the forms users have them, plus two that must fail."""
    folder = tmp_path_factory.mktemp("photos")
    astronaut.save(folder / "a_plain.png")
    astronaut.convert("CMYK").save(folder / "b_cmyk.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": the pixels are stored turned counter-clockwise
    astronaut.transpose(Image.Transpose.ROTATE_90).save(folder / "c_exif.jpg", quality=95, exif=exif)
    astronaut.convert("L").save(folder / "d_grey.png")
    rgba = astronaut.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(folder / "e_rgba.png")
    smooth_pattern(300, 200).save(folder / "x_noface.png")
    (folder / "x_broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return folder


@needs_landmarks
def test_cli_align_writes_faces_reports_and_one_line_per_problem(photos, tmp_path):
    assert Image.open(photos / "b_cmyk.jpg").mode == "CMYK"
    out = tmp_path / "aligned"
    result = CliRunner().invoke(main, ["align", "--input", str(photos), "--output", str(out), "--size", "256",
                                       "--lr-size", "16"])
    assert result.exit_code == EXIT_INPUT_ERRORS, result.output
    problems = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(problems) == 2
    assert any("x_noface.png: no face found" in line for line in problems)
    assert any("x_broken.jpg: not a readable image" in line for line in problems)
    assert "d_grey.png: greyscale image replicated to RGB" in result.stderr

    reports = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert sorted(reports) == ["a_plain_0", "b_cmyk_0", "c_exif_0", "d_grey_0", "e_rgba_0"]
    reference = np.array(reports["a_plain_0"]["landmarks"])
    for stem, report in reports.items():
        assert report["size"] == 256 and report["source_size"] == [512, 512]
        assert Image.open(out / report["image"]).size == (256, 256)
        assert Image.open(out / report["lr_image"]).size == (16, 16)
        # same face at the same place: EXIF orientation honoured, CMYK/grey/RGBA converted
        assert np.abs(np.array(report["landmarks"]) - reference).mean() < 2.5, stem
    lr = pil_to_tensor(Image.open(out / "a_plain_0_lr.png"))
    made_by_resize = resize(pil_to_tensor(Image.open(out / "a_plain_0.png")), 16).clamp(0, 1)
    assert (lr - made_by_resize).abs().max() <= 0.5 / 255 + 1e-6  # pulse's operator, rounded to 8 bits


@needs_landmarks
def test_cli_restore_writes_photos_grid_and_reports(photos, tmp_path, tiny_generator_file):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(photos / "a_plain.png").resize((128, 128), Image.Resampling.BICUBIC).save(folder / "a_small.png")
    Image.open(photos / "x_noface.png").save(folder / "x_noface.png")
    out = tmp_path / "restored"
    result = CliRunner().invoke(main, ["restore", "--input", str(folder), "--output", str(out), "--scale", "4",
                                       "--generator", str(tiny_generator_file), "--steps", "3", "--device", "cpu",
                                       "--grid"])
    assert result.exit_code == EXIT_INPUT_ERRORS, result.output  # the photo without a face
    assert "x_noface.png: no face found; upscaled plainly" in result.stderr
    assert Image.open(out / "a_small.png").size == (512, 512)
    assert Image.open(out / "a_small_grid.png").size == (1024, 512)
    assert Image.open(out / "x_noface.png").size == (1200, 800)
    report = json.loads((out / "a_small.json").read_text())
    assert report["lr_size"] == 8 and len(report["faces"]) == 1
    assert {"box", "landmarks", "quad", "quad_scaled", "lr_psnr", "success", "seed"} <= set(report["faces"][0])
    assert json.loads((out / "x_noface.json").read_text())["faces"] == []


def test_cli_usage_errors_exit_2(tmp_path, tiny_generator_file):
    runner = CliRunner()
    result = runner.invoke(main, ["align", "--input", str(tmp_path / "missing.jpg")])
    assert result.exit_code == EXIT_USAGE and "missing.jpg: no such file or folder" in result.stderr
    smooth_pattern(40, 40).save(tmp_path / "photo.png")
    result = runner.invoke(main, ["restore", "--input", str(tmp_path / "photo.png"), "--scale", "16",
                                  "--generator", str(tiny_generator_file), "--device", "cpu"])
    assert result.exit_code == EXIT_USAGE
    assert "scale 16 leaves 2 px faces for the 32 px generator" in result.stderr
