"""FFHQ alignment: the quad, the warp and its inverse, real faces aligned, and `pulse align`."""

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pulse.cli import main
from pulse.errors import EXIT_INPUT_ERRORS, PulseError
from pulse.faces import align
from pulse.faces.align import align_face, align_to_quad, ffhq_quad, photo_to_aligned
from pulse.faces.detect import DetectedFace, detect_faces
from pulse.faces.paste import paste_back
from pulse.imageio import pil_to_tensor
from pulse.resample import resize

# ---- geometry, no detector -----------------------------------------------------------------------------------


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
def test_alignment_then_inverse_reproduces_the_source_region(centre, smooth_pattern, rotated_square):
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


def test_padding_blur_without_scipy_matches_ffhq_blur(monkeypatch, smooth_pattern, rotated_square):
    photo = smooth_pattern(200, 160, seed=3)
    quad = rotated_square((30, 140), 120, degrees=-10)  # leaves the photo on two sides: reflect padding
    with_scipy = np.asarray(align_to_quad(photo, quad, 96), dtype=np.float64)
    monkeypatch.setitem(sys.modules, "scipy.ndimage", None)  # import fails as if scipy were not installed
    without = np.asarray(align_to_quad(photo, quad, 96), dtype=np.float64)
    assert not np.array_equal(with_scipy, without)  # the fallback really ran
    assert np.abs(with_scipy - without).mean() < 1.0


def test_face_too_small_to_align_is_refused_with_the_minimum(smooth_pattern):
    photo = smooth_pattern(64, 64)
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48], lm[[48, 54]] = [30, 30], [34, 30], [[30, 35], [34, 35]]
    with pytest.raises(PulseError, match=r"eyes 4.0 px apart, below the 5 px"):
        align_face(photo, DetectedFace((25, 25, 39, 39), 1.0, lm), size=64)


# ---- real photo ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("landmark_model")
def test_astronaut_eyes_land_where_ffhq_alignment_puts_them(astronaut, astronaut_face, eye_centres):
    size = 512
    face = align_face(astronaut, astronaut_face, size)
    expected = face.to_aligned(eye_centres(astronaut_face.landmarks))
    assert np.allclose(face.to_photo(expected), eye_centres(astronaut_face.landmarks))
    (again,) = detect_faces(face.image)
    error = np.abs(eye_centres(again.landmarks) - expected).max() / size
    assert error < 0.02, f"eye centres {error:.2%} of the image size away"
    # FFHQ's square is 2 x max(2 x eye distance, 1.8 x eye-to-mouth) wide: eyes a quarter of it apart at most
    assert 0.15 * size < np.hypot(*(expected[1] - expected[0])) <= 0.25 * size + 1e-6


@pytest.mark.usefixtures("landmark_model")
def test_largest_face_only(two_faces):
    (face,) = align.align_faces(two_faces, 64, largest=True)
    assert face.box[2] < 512  # the full-size one, on the left


# ---- command line -------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("landmark_model")
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


@pytest.mark.usefixtures("landmark_model")
def test_cli_align_never_writes_over_a_users_file_and_reruns_over_its_own(photos, tmp_path):
    folder = tmp_path / "photos"  # the output folder is the input folder
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.open(photos / "a_plain.png").save(folder / name)
    (folder / "b_0.json").write_text("my notes\n")
    command = ["align", "--input", str(folder), "--output", str(folder), "--size", "64"]

    first = CliRunner().invoke(main, command)
    assert first.exit_code == EXIT_INPUT_ERRORS, first.output
    assert f"error: {folder / 'b.png'}: refusing to write over {folder / 'b_0.json'}" in first.stderr
    assert (folder / "b_0.json").read_text() == "my notes\n" and not (folder / "b_0.png").exists()
    assert Image.open(folder / "a_0.png").size == (64, 64)

    second = CliRunner().invoke(main, command)  # a_0.png is pulse's output, not a photo to align; a.png is done
    assert second.exit_code == EXIT_INPUT_ERRORS, second.output
    assert "1 photos, 1 skipped (already done), 0 faces aligned, 1 failed" in second.stderr
    stamp = (folder / "a_0.png").stat().st_mtime_ns
    third = CliRunner().invoke(main, [*command, "--overwrite"])  # its own outputs it may redo
    assert "2 photos, 0 skipped (already done), 1 faces aligned, 1 failed" in third.stderr
    assert (folder / "a_0.png").stat().st_mtime_ns != stamp
    assert sorted(p.name for p in folder.glob("*.png")) == ["a.png", "a_0.png", "b.png"]
    assert (folder / "b_0.json").read_text() == "my notes\n"
    other = CliRunner().invoke(main, [*command[:-1], "96"])  # other settings: stop, say which
    assert other.exit_code == 2 and "size 64 -> 96" in other.stderr
