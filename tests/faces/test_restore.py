"""Whole-photo restore: faces found, super-resolved, pasted back into the upscaled photo; and `pulse restore`."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pulse.api import Upsampler
from pulse.cli import main
from pulse.errors import EXIT_INPUT_ERRORS, EXIT_USAGE, PulseError
from pulse.faces import align
from pulse.faces.align import align_to_quad, aligned_to_photo, photo_to_aligned, scale_quad
from pulse.faces.restore import restore, upscale_photo
from pulse.imageio import pil_to_tensor, psnr_from_mse, tensor_to_pil
from pulse.resample import resize


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


@pytest.mark.usefixtures("landmark_model")
def test_restore_pastes_consistent_faces_and_nothing_else(two_faces, inside_quad):
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


@pytest.mark.usefixtures("landmark_model")
def test_restore_face_mask_keeps_the_photos_hair_and_background(two_faces, inside_quad):
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


@pytest.mark.usefixtures("landmark_model")
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


def test_restore_without_a_face_upscales_plainly_and_says_so(monkeypatch, smooth_pattern):
    monkeypatch.setattr(align, "detect_faces", lambda *args, **kwargs: [])
    photo = smooth_pattern(40, 30)
    with pytest.warns(UserWarning, match="wall.png: no face found; upscaled plainly"):
        restored = restore(photo, 4, ConsistentStandIn(), name="wall.png")
    assert restored.faces == [] and np.array_equal(np.asarray(restored.image), np.asarray(upscale_photo(photo, 4)))


# ---- command line -------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("landmark_model")
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
    assert Image.open(out / "grid" / "a_small.png").size == (1024, 512)
    assert Image.open(out / "x_noface.png").size == (1200, 800)
    report = json.loads((out / "a_small.json").read_text())
    assert report["lr_size"] == 8 and len(report["faces"]) == 1
    assert {"box", "landmarks", "quad", "quad_scaled", "lr_psnr", "success", "seed"} <= set(report["faces"][0])
    assert json.loads((out / "x_noface.json").read_text())["faces"] == []
    # a rerun resumes: nothing redone, and the same verdict (the photo without a face still fails)
    stamp = (out / "a_small.png").stat().st_mtime_ns
    again = CliRunner().invoke(main, ["restore", "--input", str(folder), "--output", str(out), "--scale", "4",
                                      "--generator", str(tiny_generator_file), "--steps", "3", "--device", "cpu",
                                      "--grid"])
    assert again.exit_code == EXIT_INPUT_ERRORS and "0 photos, 2 skipped (already done), 1 failed" in again.stderr
    assert (out / "a_small.png").stat().st_mtime_ns == stamp


def test_cli_usage_errors_exit_2(tmp_path, tiny_generator_file, smooth_pattern):
    runner = CliRunner()
    result = runner.invoke(main, ["align", "--input", str(tmp_path / "missing.jpg")])
    assert result.exit_code == EXIT_USAGE and "missing.jpg: no such file or folder" in result.stderr
    smooth_pattern(40, 40).save(tmp_path / "photo.png")
    result = runner.invoke(main, ["restore", "--input", str(tmp_path / "photo.png"), "--scale", "16",
                                  "--generator", str(tiny_generator_file), "--device", "cpu"])
    assert result.exit_code == EXIT_USAGE
    assert "scale 16 leaves 2 px faces for the 32 px generator" in result.stderr


@pytest.fixture
def small_photo_and_sr4(photos, tmp_path):
    """A tiny untrained x4 SR file, and a folder holding one 128 px photo of a face."""
    from pulse.models.srresnet import SRResNet, SRResNetConfig, save_sr_model

    sr_file = save_sr_model(tmp_path / "sr4.pt", SRResNet(SRResNetConfig(scale=4, channels=8, blocks=1)),
                            {"hr_size": 32})
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(photos / "a_plain.png").resize((128, 128), Image.Resampling.BICUBIC).save(folder / "a_small.png")
    return sr_file, folder


@pytest.mark.usefixtures("landmark_model")
@pytest.mark.parametrize("method", ["srresnet", "srgan"])
def test_cli_restore_with_a_feedforward_method_pastes_the_networks_faces(small_photo_and_sr4, tmp_path, method):
    sr_file, folder = small_photo_and_sr4
    if method == "srgan":  # the same untrained network, marked as the adversarial stage's
        from pulse.models.srresnet import load_sr_model, save_sr_model

        loaded = load_sr_model(sr_file)
        sr_file = save_sr_model(tmp_path / "gan4.pt", loaded.model, {**loaded.metadata, "stage": "gan"})
    out = tmp_path / "restored"
    result = CliRunner().invoke(main, ["restore", "--input", str(folder), "--output", str(out), "--scale", "4",
                                       "--method", method, "--sr-model", str(sr_file), "--device", "cpu"])
    assert result.exit_code in (0, 3), result.output  # 3: the face's LR consistency above eps
    report = json.loads((out / "a_small.json").read_text())
    assert report["method"] == method and report["lr_size"] == 8 and len(report["faces"]) == 1
    assert Image.open(out / "a_small.png").size == (512, 512)
    refused = CliRunner().invoke(main, ["restore", "--input", str(folder), "--output", str(out), "--method", method,
                                        "--sr-model", str(sr_file), "--scale", "4", "--steps", "9"])
    assert refused.exit_code == EXIT_USAGE and "--steps: search option(s)" in refused.stderr
    other = "srgan" if method == "srresnet" else "srresnet"
    wrong = CliRunner().invoke(main, ["restore", "--input", str(folder), "--output", str(tmp_path / "wrong"),
                                      "--method", other, "--sr-model", str(sr_file), "--scale", "4"])
    assert wrong.exit_code == EXIT_USAGE and f"use --method {method}" in wrong.stderr


@pytest.mark.usefixtures("landmark_model")
def test_cli_restore_into_the_input_folder_never_writes_over_the_photo(small_photo_and_sr4):
    sr_file, folder = small_photo_and_sr4
    before = (folder / "a_small.png").read_bytes()
    result = CliRunner().invoke(main, ["restore", "--input", str(folder), "--output", str(folder), "--scale", "4",
                                       "--method", "srresnet", "--sr-model", str(sr_file), "--device", "cpu"])
    assert result.exit_code == EXIT_USAGE, result.output  # as `pulse run`: stopped before any work
    assert f"refusing to write over {folder / 'a_small.png'} (an input)" in result.stderr
    assert (folder / "a_small.png").read_bytes() == before and not (folder / "a_small.json").exists()


@pytest.mark.usefixtures("landmark_model")
def test_a_pixelated_face_given_by_its_box_is_aligned_by_it_searched_and_pasted_back(astronaut, inside_quad, tmp_path):
    photo = np.array(astronaut)
    left, top, right, bottom = 168, 64, 276, 172  # her face (dlib boxes it at 176-266 x 77-167), 12 px blocks
    for y in range(top, bottom, 12):
        for x in range(left, right, 12):
            photo[y:y + 12, x:x + 12] = photo[y:y + 12, x:x + 12].reshape(-1, 3).mean(0)
    pixelated = Image.fromarray(photo)
    assert restore(pixelated, 4, ConsistentStandIn()).faces == []  # dlib does not find it
    box = align.parse_face_box(f"{left},{top},{right - left},{bottom - top}")
    restored = restore(pixelated, 4, ConsistentStandIn(), face_boxes=[box])
    (face,) = restored.faces
    assert face.result.success and face.aligned.box == (168.0, 64.0, 276.0, 172.0)
    side = np.hypot(*(face.aligned.quad[3] - face.aligned.quad[0]))
    assert side == pytest.approx(align.BOX_TO_SQUARE * 108)
    changed = (np.asarray(restored.image) != np.asarray(restored.upscaled)).any(-1)
    assert changed.any() and not (changed & ~inside_quad(face.quad_scaled, *restored.image.size)).any()
    assert face.report()["landmarks"] == []

    for bad, message in (("1,2,3", "expected x,y,w,h"), ("0,0,4,4", "smaller than 8 px")):
        with pytest.raises(PulseError, match=message):
            align.parse_face_box(bad)
    pixelated.save(tmp_path / "pixelated.png")
    result = CliRunner().invoke(main, ["restore", "--input", tmp_path / "pixelated.png", "--output", tmp_path / "out",
                                       "--face-box", "1,2,x,4"])
    assert result.exit_code == EXIT_USAGE and "expected x,y,w,h" in result.output
