import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pulse.cli import main
from pulse.errors import EXIT_INPUT_ERRORS, EXIT_INTERRUPTED, EXIT_NOT_CONSISTENT, EXIT_OK, EXIT_USAGE
from pulse.models.generator_file import load_generator, read_generator_file
from pulse.resample import resize
from pulse.sampling import GRID_HEADER


def lr_faces(generator_file, n):
    """n 8x8 LR faces that the tiny generator can explain."""
    g = load_generator(generator_file).generator
    rng = torch.Generator().manual_seed(42)
    with torch.no_grad():
        hr = (g(z=torch.randn(n, g.style_dim, generator=rng)) + 1) / 2
    lr = (resize(hr, 8).clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a) for a in lr]


def png_bomb(path, side=40_000):
    """A valid PNG header declaring side x side pixels: a decompression bomb without the bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.fixture()
def inputs(tmp_path, tiny_generator_file):
    folder = tmp_path / "lr"
    folder.mkdir()
    good = lr_faces(tiny_generator_file, 3)
    good[0].save(folder / "a_rgb.png")
    good[1].save(folder / "b_jpeg.jpg", quality=95)
    good[2].convert("P").save(folder / "c_palette.png")
    np16 = (np.asarray(good[0].convert("L")).astype(np.uint16) * 257)
    Image.fromarray(np16).save(folder / "d_16bit.png")
    good[1].convert("RGBA").save(folder / "e_rgba.png")
    good[2].convert("LA").save(folder / "f_la.png")
    good[0].convert("L").save(folder / "g_grey.bmp")
    good[1].save(folder / "h_webp.webp", lossless=True)
    bad = {
        "x_corrupt.png": "not a readable image",
        "x_empty.png": "empty file",
        "x_text.jpg": "not a readable image",
        "x_animated.png": "multi-frame",
        "x_nonsquare.png": "not square",
        "x_too_big.png": "larger than the generator",
        "x_bomb.png": "decompression bomb",
    }
    (folder / "x_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (folder / "x_empty.png").write_bytes(b"")
    (folder / "x_text.jpg").write_text("hello, I am not a JPEG")
    good[0].save(folder / "x_animated.png", save_all=True, append_images=[good[1]])
    Image.new("RGB", (8, 6)).save(folder / "x_nonsquare.png")
    Image.new("RGB", (40, 40)).save(folder / "x_too_big.png")
    png_bomb(folder / "x_bomb.png")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    return folder, bad


def run_cli(*args):
    return CliRunner().invoke(main, ["run", *map(str, args)])


def report(out):
    return [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]


def test_cli_end_to_end_with_bad_files_and_resume(inputs, tmp_path, tiny_generator_file):
    folder, bad = inputs
    out = tmp_path / "out"
    result = run_cli("--input", folder, "--output", out, "--scale", 4, "--steps", 200, "--generator", tiny_generator_file,
                     "--device", "cpu", "--batch-size", 8)
    assert result.exit_code == EXIT_INPUT_ERRORS, result.output
    lines = report(out)
    ok = [e for e in lines if e["status"] == "ok"]
    errors = {e["input"].rsplit("/", 1)[-1]: e["error"] for e in lines if e["status"] == "error"}
    assert len(ok) == 8
    for entry in ok:
        img = Image.open(out / entry["output"])
        assert img.size == (32, 32) and img.mode == "RGB"
        assert entry["seed"] == 0 and entry["seconds"] > 0 and entry["lr_mse"] < 0.01
        if entry["output"][0] in "aeh":  # lossless copies of a face the generator can make
            assert entry["success"] and entry["lr_mse"] <= 2e-3
    for name, problem in bad.items():
        assert problem in errors[name]
        assert name in result.output  # the one-line error names the file
    assert sorted(p.name for p in out.glob("*.png")) == sorted(e["output"] for e in ok)
    assert not list(out.glob(".*tmp"))  # no temp files left behind
    assert "alpha channel composited" in result.output and "greyscale image replicated" in result.output

    # a second run redoes nothing but the failed inputs, and keeps the first run's numbers
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    again = run_cli("--input", folder, "--output", out, "--scale", 4, "--steps", 200, "--generator",
                    tiny_generator_file, "--device", "cpu")
    assert again.exit_code == EXIT_INPUT_ERRORS
    assert "8 skipped" in again.output
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == mtimes
    assert [e for e in report(out) if e["status"] == "ok"] == ok


def test_cli_samples_overwrite_and_exit_codes(tmp_path, tiny_generator_file):
    face = lr_faces(tiny_generator_file, 1)[0]
    face.save(tmp_path / "face.png")
    out = tmp_path / "out"
    args = ["--input", tmp_path / "face.png", "--output", out, "--scale", 4, "--generator", tiny_generator_file,
            "--device", "cpu"]
    result = run_cli(*args, "--steps", 200, "--samples", 2, "--seed", 3, "--save-intermediate", "--grid")
    assert result.exit_code == EXIT_OK, result.output
    assert [e["seed"] for e in report(out)] == [3, 4]
    assert (out / "face_0.png").is_file() and (out / "face_1.png").is_file()
    assert len(list((out / "intermediate" / "face_1").glob("step_*.png"))) == 20
    # the comparison picture: LR (nearest) | bicubic | sample 0 | sample 1, each 32 px, under a label row
    grid = np.asarray(Image.open(out / "grid" / "face.png").convert("RGB"))
    assert grid.shape == (GRID_HEADER + 32, 4 * 32, 3)
    tiles = [grid[GRID_HEADER:, 32 * k : 32 * (k + 1)] for k in range(4)]
    assert np.array_equal(tiles[0], np.asarray(face.resize((32, 32), Image.Resampling.NEAREST)))
    assert np.array_equal(tiles[2], np.asarray(Image.open(out / "face_0.png")))
    assert np.array_equal(tiles[3], np.asarray(Image.open(out / "face_1.png")))
    assert not np.array_equal(tiles[1], tiles[2])
    # an eps nobody can meet: results are still written, exit code says they are not consistent
    result = run_cli(*args, "--steps", 2, "--eps", 1e-12, "--overwrite")
    assert result.exit_code == EXIT_NOT_CONSISTENT
    assert (out / "face.png").is_file() and not {e["output"]: e for e in report(out)}["face.png"]["success"]


def test_search_settings_not_given_come_from_the_generator_file(tmp_path, tiny_generator_file):
    payload = read_generator_file(tiny_generator_file)
    payload["metadata"]["search_defaults"] = {"learning_rate": 0.0}  # a search that cannot move
    frozen = tmp_path / "frozen.pt"
    torch.save(payload, frozen)
    lr_faces(tiny_generator_file, 1)[0].save(tmp_path / "face.png")
    args = ["--input", tmp_path / "face.png", "--scale", 4, "--steps", 20, "--generator", frozen, "--device", "cpu"]
    run_cli(*args, "--output", tmp_path / "recommended")
    run_cli(*args, "--output", tmp_path / "given", "--learning-rate", 0.4)
    assert report(tmp_path / "recommended")[0]["best_step"] == 0  # never improved on its starting point
    assert report(tmp_path / "given")[0]["best_step"] > 0


# for each setting a user may choose: a value a generator file can recommend, other than the reference's
RECOMMENDED = {"steps": 4, "eps": 5e-3, "eps_margin": 0.3, "loss": "100*L2+1*L1+0.02*GEOCROSS", "learning_rate": 0.2,
               "schedule": "fixed", "noise": "fixed", "trainable_noise_layers": 2, "noise_lr_scale": 3.0, "tile_latent": True,
               "early_stop": True, "precision": "bf16", "degradation": "box", "spread": 0.1,
               "guided_rows": 2}
CHOSEN_BY_THE_ENCODER = {"init"}  # where a search starts: whether an encoder is installed, not the generator's say


def test_every_search_setting_has_an_option_and_a_recommendation_to_test():
    from dataclasses import fields

    from pulse.search import SearchOptions

    settable = {f.name for f in fields(SearchOptions)} - {"frame_every"}  # frames: --save-intermediate
    assert settable == set(RECOMMENDED) | CHOSEN_BY_THE_ENCODER
    for command in ("run", "restore", "eval"):  # one option set, declared once (cli.common.search_options)
        assert settable <= {p.name for p in main.get_command(None, command).params}, command
    assert all(RECOMMENDED[name] != getattr(SearchOptions(), name) for name in RECOMMENDED)


@pytest.mark.parametrize("setting", sorted(RECOMMENDED))
def test_cli_and_api_honour_a_generator_files_recommended_setting(setting, tmp_path, tiny_generator_file):
    """What a generator file recommends, `pulse run` uses where not given, as the API does: same pixels."""
    from pulse.api import Upsampler

    payload = read_generator_file(tiny_generator_file)
    payload["metadata"]["search_defaults"] = {"steps": 3, setting: RECOMMENDED[setting]}
    recommending = tmp_path / "recommending.pt"
    torch.save(payload, recommending)
    face = one_face(tmp_path, tiny_generator_file)
    run_cli("--input", face, "--output", tmp_path / "out", "--scale", 4, "--generator", recommending, "--device", "cpu")
    line = report(tmp_path / "out")[0]
    upsampler = Upsampler(recommending, device="cpu")
    api = upsampler.run([face], scale=4)[0][0]
    assert line["made_with"]["search"][setting] == RECOMMENDED[setting]
    assert line["made_with"]["search"] == {k: v for k, v in vars(upsampler.search_options()).items()
                                           if k != "frame_every"}
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "face.png")), np.asarray(api.image))


def test_inputs_sharing_a_stem_get_distinct_outputs(tmp_path, tiny_generator_file):
    folder, out = tmp_path / "lr", tmp_path / "out"
    folder.mkdir()
    faces = lr_faces(tiny_generator_file, 3)
    faces[0].save(folder / "face.png")
    faces[1].save(folder / "face.jpg", quality=95)
    faces[2].save(folder / "other.png")
    result = run_cli("--input", folder, "--output", out, "--scale", 4, "--steps", 2, "--eps", 1,
                     "--generator", tiny_generator_file, "--device", "cpu")
    assert result.exit_code == EXIT_OK, result.output
    assert {e["output"] for e in report(out)} == {"face.jpg.png", "face.png.png", "other.png"}
    assert sorted(p.name for p in out.glob("*.png")) == ["face.jpg.png", "face.png.png", "other.png"]


def test_cli_usage_errors(tmp_path, tiny_generator_file):
    assert run_cli("--input", tmp_path / "nope", "--generator", tiny_generator_file).exit_code == EXIT_USAGE
    (tmp_path / "empty").mkdir()
    result = run_cli("--input", tmp_path / "empty", "--generator", tiny_generator_file)
    assert result.exit_code == EXIT_USAGE and "no images" in result.output
    Image.new("RGB", (8, 8)).save(tmp_path / "face.png")
    result = run_cli("--input", tmp_path / "face.png", "--generator", tmp_path / "missing.pt")
    assert result.exit_code == EXIT_USAGE and "missing.pt" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    result = run_cli("--input", tmp_path / "face.png", "--generator", tiny_generator_file, "--batch-size", "many")
    assert result.exit_code == EXIT_USAGE and result.output.strip() == (
        "error: --batch-size must be a whole number >= 1 or 'auto', got 'many'")
    for scale in ("inf", "nan", "0", "-2", "x"):  # refused before any input is read, in one usage line
        result = run_cli("--input", tmp_path / "nope", "--generator", tiny_generator_file, "--scale", scale)
        assert result.exit_code == EXIT_USAGE and "Invalid value for '--scale'" in result.output, scale
        assert "Traceback" not in result.output and "nope" not in result.output
    result = run_cli("--input", tmp_path / "nope", "--generator", tiny_generator_file, "--learning-rate", "-1")
    assert result.exit_code == EXIT_USAGE and "Invalid value for '--learning-rate'" in result.output
    result = run_cli("--input", tmp_path / "nope", "--generator", tiny_generator_file, "--loss", "100*L3")
    assert result.exit_code == EXIT_USAGE and "search options" in result.output and "nope" not in result.output


@pytest.mark.slow
def test_torchrun_shares_inputs_between_processes_and_merges_the_report(tmp_path, tiny_generator_file):
    folder, out = tmp_path / "lr", tmp_path / "out"
    folder.mkdir()
    for i, face in enumerate(lr_faces(tiny_generator_file, 5)):
        face.save(folder / f"face{i}.png")
    (folder / "broken.png").write_bytes(b"not an image")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "pulse", "run", "--input", str(folder), "--output", str(out), "--scale", "4", "--steps", "20",
               "--generator", str(tiny_generator_file), "--device", "cpu", "--eps", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == EXIT_INPUT_ERRORS, done.stderr[-2000:]
    lines = report(out)
    # every input exactly once, whichever process did it; no per-process leftovers
    assert sorted(e["input"].rsplit("/", 1)[-1] for e in lines) == ["broken.png"] + [f"face{i}.png" for i in range(5)]
    assert sorted(p.name for p in out.glob("*.png")) == [f"face{i}.png" for i in range(5)]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert done.stderr.count("5 processed, 0 skipped") == 1, done.stderr  # one summary, from rank 0


@pytest.mark.parametrize("command", ["run", "eval"])
def test_compile_flag_reaches_the_search(command, tmp_path, tiny_generator_file, monkeypatch):
    from pulse.models.generator_file import LoadedGenerator

    modes = []

    def compile_eagerly(self, mode=None):  # the real torch.compile is tested in test_api
        modes.append(mode)
        self.compiled = self.generator.synthesis
        return self

    monkeypatch.setattr(LoadedGenerator, "compile", compile_eagerly)
    face = lr_faces(tiny_generator_file, 1)[0]
    face.save(tmp_path / "lr.png")
    face.resize((32, 32), Image.Resampling.BICUBIC).save(tmp_path / "hr.png")  # eval makes its own LR from it
    common = ["--scale", 4, "--steps", 5, "--generator", tiny_generator_file, "--device", "cpu"]
    args = (["--input", tmp_path / "lr.png", "--output", tmp_path / "out", "--eps", 1] if command == "run" else
            ["--data", tmp_path / "hr.png", "--out", tmp_path / "out", "--methods", "pulse", "--grid-faces", 0])
    result = CliRunner().invoke(main, [command, *map(str, args + common)])
    assert result.exit_code == EXIT_OK and modes == [], result.output
    result = CliRunner().invoke(main, [command, *map(str, args + common), "--compile"] +
                                (["--overwrite"] if command == "run" else []))
    assert result.exit_code == EXIT_OK and modes == [None], result.output
    assert "note: the first batch compiles the generator" in result.output


# --- a batch run never loses or overwrites what the user owns, and resumes only what it may (#17) ---

def one_face(tmp_path, generator_file, folder="r1"):
    (tmp_path / folder).mkdir()
    path = tmp_path / folder / "face.png"
    lr_faces(generator_file, 1)[0].save(path)
    return path


@pytest.mark.parametrize("output", ["same", "nested", "symlinked"])
def test_output_over_input_is_refused_before_any_search(output, tmp_path, tiny_generator_file):
    face = one_face(tmp_path, tiny_generator_file)
    original = face.read_bytes()
    (tmp_path / "r1" / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "r1")
    out = {"same": tmp_path / "r1", "nested": tmp_path / "r1" / "sub" / "..", "symlinked": tmp_path / "link"}[output]
    result = run_cli("--input", tmp_path / "r1", "--output", out, "--scale", 4, "--steps", 2,
                     "--generator", tiny_generator_file, "--device", "cpu")
    assert result.exit_code == EXIT_USAGE, result.output
    assert "refusing to write over" in result.output and "face.png (an input)" in result.output
    assert face.read_bytes() == original


def test_samples_written_beside_the_inputs_are_not_taken_for_inputs(tmp_path, tiny_generator_file):
    face = one_face(tmp_path, tiny_generator_file)
    args = ["--input", face.parent, "--output", face.parent, "--scale", 4, "--steps", 2, "--eps", 1, "--samples", 2,
            "--generator", tiny_generator_file, "--device", "cpu"]
    assert run_cli(*args).exit_code == EXIT_OK
    again = run_cli(*args)
    assert again.exit_code == EXIT_OK and "0 processed, 1 skipped" in again.output, again.output


def test_a_file_the_report_does_not_name_is_never_written_over(tmp_path, tiny_generator_file):
    face = one_face(tmp_path, tiny_generator_file)
    out = tmp_path / "out"
    out.mkdir()
    (out / "face.png").write_bytes(b"the user's own file")
    args = ["--input", face, "--output", out, "--scale", 4, "--steps", 2, "--generator", tiny_generator_file,
            "--device", "cpu"]
    for extra in ([], ["--overwrite"]):
        result = run_cli(*args, *extra)
        assert result.exit_code == EXIT_USAGE and "not made by pulse" in result.output, result.output
    assert (out / "face.png").read_bytes() == b"the user's own file"
    (out / "report.jsonl").write_text("my notes, not a pulse report\n")
    (out / "face.png").unlink()
    result = run_cli(*args)
    assert result.exit_code == EXIT_USAGE and "not a pulse report" in result.output
    assert (out / "report.jsonl").read_text() == "my notes, not a pulse report\n"


def test_resume_redoes_nothing_only_when_everything_that_made_it_matches(tmp_path, tiny_generator_file, monkeypatch):
    face = one_face(tmp_path, tiny_generator_file)
    out = tmp_path / "out"
    args = ["--input", face.parent, "--output", out, "--generator", tiny_generator_file, "--device", "cpu", "--eps", 1]
    assert run_cli(*args, "--scale", 4, "--steps", 2).exit_code == EXIT_OK
    made = (out / "face.png").read_bytes()
    changed = run_cli(*args, "--scale", 2, "--steps", 3)
    assert changed.exit_code == EXIT_USAGE
    message = changed.output.strip().splitlines()[-1]
    assert "scale 4.0 -> 2.0" in message and "search.steps 2 -> 3" in message and "--overwrite" in message
    assert (out / "face.png").read_bytes() == made
    # the same folder, typed another way, is the same run: skipped, and no second report line
    monkeypatch.chdir(tmp_path)
    again = run_cli("--input", "r1/../r1", "--output", out.resolve(), "--generator", tiny_generator_file,
                    "--device", "cpu", "--eps", 1, "--scale", 4, "--steps", 2)
    assert "0 processed, 1 skipped" in again.output and len(report(out)) == 1
    # a changed input is a new face: searched again without asking
    lr_faces(tiny_generator_file, 2)[1].save(face)
    redone = run_cli(*args, "--scale", 4, "--steps", 2)
    assert "1 processed, 0 skipped" in redone.output and len(report(out)) == 1
    assert report(out)[0]["input_sha256"] == hashlib.sha256(face.read_bytes()).hexdigest()
    overwritten = run_cli(*args, "--scale", 2, "--steps", 3, "--overwrite")
    assert overwritten.exit_code == EXIT_OK and Image.open(out / "face.png").size == (16, 16)
    assert [e["made_with"]["scale"] for e in report(out)] == [2.0]


@pytest.mark.parametrize("where", ["a file", "proc"])
def test_an_output_that_cannot_be_written_stops_before_the_search(where, tmp_path, tiny_generator_file):
    face = one_face(tmp_path, tiny_generator_file)
    out = tmp_path / "taken.png" if where == "a file" else Path("/proc/pulse_out")
    if where == "a file":
        out.write_bytes(b"x")
    result = run_cli("--input", face, "--output", out, "--generator", tiny_generator_file, "--device", "cpu")
    assert result.exit_code == EXIT_USAGE, result.output
    line = result.output.strip().splitlines()
    assert len(line) == 1 and str(out) in line[0]
    assert "is a file" in line[0] if where == "a file" else "cannot create this folder in /proc" in line[0]


def test_a_full_disk_mid_run_keeps_finished_faces_and_the_rerun_resumes(tmp_path, tiny_generator_file, monkeypatch):
    from pulse.output_folder import OutputFolder

    folder = tmp_path / "lr"
    folder.mkdir()
    for i, face in enumerate(lr_faces(tiny_generator_file, 3)):
        face.save(folder / f"face{i}.png")
    out = tmp_path / "out"
    args = ["--input", folder, "--output", out, "--scale", 4, "--steps", 2, "--eps", 1, "--batch-size", 1,
            "--generator", tiny_generator_file, "--device", "cpu"]
    real_write, writes = OutputFolder.write_file, []

    def disk_fills_up(self, name, data):
        writes.append(name)
        if len(writes) == 2:
            raise OSError(28, "No space left on device")
        real_write(self, name, data)

    monkeypatch.setattr(OutputFolder, "write_file", disk_fills_up)
    result = run_cli(*args)
    assert result.exit_code == EXIT_INPUT_ERRORS, result.output
    assert "No space left on device" in result.output and "rerun the same command" in result.output
    assert "Traceback" not in result.output and sorted(p.name for p in out.glob("*.png")) == ["face0.png"]
    monkeypatch.undo()
    rerun = run_cli(*args)
    assert rerun.exit_code == EXIT_OK and "2 processed, 1 skipped" in rerun.output, rerun.output
    assert sorted(e["output"] for e in report(out)) == ["face0.png", "face1.png", "face2.png"]


def test_a_second_run_into_a_busy_folder_is_refused(tmp_path, tiny_generator_file):
    from pulse.output_folder import OutputFolder

    face = one_face(tmp_path, tiny_generator_file)
    with OutputFolder(tmp_path / "out").open():  # a run in progress holds the folder
        result = run_cli("--input", face, "--output", tmp_path / "out", "--generator", tiny_generator_file,
                         "--device", "cpu", "--steps", 2)
    assert result.exit_code == EXIT_USAGE and "another pulse run is writing into this folder" in result.output
    assert run_cli("--input", face, "--output", tmp_path / "out", "--generator", tiny_generator_file,
                   "--device", "cpu", "--steps", 2, "--scale", 4, "--eps", 1).exit_code == EXIT_OK


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_exits_130_keeps_finished_faces_and_the_rerun_resumes(stop, tmp_path, tiny_generator_file):
    folder = tmp_path / "lr"
    folder.mkdir()
    for i, face in enumerate(lr_faces(tiny_generator_file, 4)):
        face.save(folder / f"face{i}.png")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pulse", "run", "--input", str(folder), "--output", str(out), "--scale", "4",
               "--steps", "300", "--eps", "1", "--batch-size", "1", "--generator", str(tiny_generator_file),
               "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Ctrl-C's default action, even when this test runs as a background job (which ignores SIGINT)
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (out / "face0.png").is_file() and time.time() < deadline:
        time.sleep(0.1)
    process.send_signal(stop)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == EXIT_INTERRUPTED, stderr[-2000:]
    assert "interrupted: finished faces are kept" in stderr and "rerun the same command" in stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr
    finished = [e["output"] for e in report(out)]
    assert finished and all((out / name).is_file() for name in finished)
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == EXIT_OK and f"{len(finished)} skipped" in rerun.stderr, rerun.stderr
    assert sorted(e["output"] for e in report(out)) == [f"face{i}.png" for i in range(4)]


def test_passed_over_files_are_counted_and_named_with_verbose(tmp_path, tiny_generator_file):
    face = one_face(tmp_path, tiny_generator_file)
    folder = face.parent
    face.replace(folder / "face.gif")
    lr_faces(tiny_generator_file, 1)[0].save(folder / "good.png")
    (folder / "scan.tif").write_bytes(b"II*\x00")
    (folder / "loop").symlink_to(folder / "loop")
    (folder / "gone.png").symlink_to(folder / "nowhere.png")
    args = ["--input", folder, "--scale", 4, "--steps", 2, "--eps", 1, "--generator", tiny_generator_file,
            "--device", "cpu"]
    result = run_cli(*args, "--output", tmp_path / "a")
    assert result.exit_code == EXIT_OK and "passed over 4 file(s)" in result.output and "-v names them" in result.output
    verbose = run_cli(*args, "--output", tmp_path / "b", "-v")
    for name, reason in [("face.gif", "not an accepted image type (.gif)"), ("scan.tif", "(.tif)"),
                         ("loop", "link loop"), ("gone.png", "broken symbolic link")]:
        assert any(name in line and reason in line for line in verbose.output.splitlines()), (name, verbose.output)
    direct = run_cli(*args, "--output", tmp_path / "c", "--input", folder / "loop")
    assert direct.exit_code == EXIT_USAGE and "link loop" in direct.output


def test_size_is_checked_from_the_header_before_decoding(tmp_path, tiny_generator_file):
    folder = tmp_path / "lr"
    folder.mkdir()
    png_bomb(folder / "huge.png", side=6000)  # a header only: decoding it would fail as unreadable
    result = run_cli("--input", folder, "--output", tmp_path / "out", "--generator", tiny_generator_file,
                     "--device", "cpu")
    assert result.exit_code == EXIT_INPUT_ERRORS
    assert "6000x6000 is larger than the generator's 32 px output" in result.output


def test_a_16_bit_rgb_input_is_reduced_with_a_warning(tmp_path, tiny_generator_file):
    face = np.asarray(lr_faces(tiny_generator_file, 1)[0]).astype(">u2") * 257
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + row.tobytes() for row in face)
    ihdr = struct.pack(">IIBBBBB", 8, 8, 16, 2, 0, 0, 0)
    (tmp_path / "deep.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
                                        + chunk(b"IEND", b""))
    result = run_cli("--input", tmp_path / "deep.png", "--output", tmp_path / "out", "--scale", 4, "--steps", 2,
                     "--eps", 1, "--generator", tiny_generator_file, "--device", "cpu")
    assert result.exit_code == EXIT_OK and "16-bit image reduced to 8 bits" in result.output, result.output


def test_a_killed_runs_temp_file_is_cleared_and_nothing_else(tmp_path, tiny_generator_file):
    face = one_face(tmp_path, tiny_generator_file)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".face.png.4242.tmp").write_bytes(b"half a png")  # what kill -9 during an atomic write leaves
    (out / ".my.notes.tmp").write_text("the user's")
    result = run_cli("--input", face, "--output", out, "--scale", 4, "--steps", 2, "--eps", 1,
                     "--generator", tiny_generator_file, "--device", "cpu")
    assert result.exit_code == EXIT_OK, result.output
    assert not (out / ".face.png.4242.tmp").exists() and (out / ".my.notes.tmp").read_text() == "the user's"


def test_shards_share_one_batch_and_one_folder(tmp_path, tiny_generator_file):
    folder, out = tmp_path / "lr", tmp_path / "out"
    folder.mkdir()
    for k, face in enumerate(lr_faces(tiny_generator_file, 5)):
        face.save(folder / f"f{k}.png")
    args = ["--input", folder, "--output", out, "--scale", 4, "--steps", 2, "--generator", tiny_generator_file,
            "--device", "cpu"]
    first = run_cli(*args, "--shard", "0/2")
    assert first.exit_code in (EXIT_OK, EXIT_NOT_CONSISTENT), first.output
    assert sorted(p.name for p in out.glob("f*.png")) == ["f0.png", "f2.png", "f4.png"]
    assert "3 processed, 0 skipped" in first.stderr
    second = run_cli(*args, "--shard", "1/2")
    assert "2 processed, 0 skipped" in second.stderr
    assert sorted(p.name for p in out.glob("f*.png")) == [f"f{k}.png" for k in range(5)]
    whole = run_cli(*args)  # the batch is done: an unsharded rerun finds every face finished
    assert "0 processed, 5 skipped" in whole.stderr and len({e["output"] for e in report(out)}) == 5
    bad = run_cli(*args, "--shard", "2/2")
    assert bad.exit_code == EXIT_USAGE and bad.output.strip().splitlines() == [
        "error: shard '2/2': give i/n with 0 <= i < n, e.g. 0/4 for the first of four"]


def test_a_mosaic_is_reduced_searched_with_the_box_operator_and_delivered_at_its_own_size(tmp_path, tiny_generator_file):
    g = load_generator(tiny_generator_file).generator
    with torch.no_grad():
        hr = (g(z=torch.randn(1, g.style_dim, generator=torch.Generator().manual_seed(3))) + 1) / 2
    lr = Image.fromarray((resize(hr, 8, kernel="box")[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy())
    folder = tmp_path / "in"
    folder.mkdir()
    lr.resize((32, 32), Image.Resampling.NEAREST).save(folder / "mosaic.png")  # 4 px blocks
    lr_faces(tiny_generator_file, 1)[0].save(folder / "plain.png")
    out = tmp_path / "out"
    args = ["--input", folder, "--generator", tiny_generator_file, "--device", "cpu", "--steps", 50, "--eps", 1]
    result = run_cli(*args, "--output", out, "--grid")
    assert result.exit_code == EXIT_OK, result.output
    assert "mosaic.png: mosaic of 4 px blocks from (0, 0), 8x8 whole blocks" in result.output
    assert "searched as its 8 px LR with the box operator, delivered at x4" in result.output
    lines = {e["output"]: e for e in report(out)}
    mosaic, plain = lines["mosaic.png"], lines["plain.png"]
    assert Image.open(out / "mosaic.png").size == (32, 32)  # the mosaic's own size, not 8 x its 32 px
    assert mosaic["degradation"] == "box" and mosaic["pixelated"] == {"block": 4, "offset": [0, 0], "blocks": [8, 8]}
    delivered = torch.from_numpy(np.array(Image.open(out / "mosaic.png"))).permute(2, 0, 1).float() / 255
    target = torch.from_numpy(np.asarray(lr)).permute(2, 0, 1).float() / 255
    assert mosaic["lr_mse"] == pytest.approx(float((resize(delivered, 8, kernel="box") - target).pow(2).mean()),
                                             rel=1e-4)
    assert Image.open(out / "plain.png").size == (64, 64)  # an ordinary 8 px input: x8 as always
    assert plain["degradation"] == "bicubic" and plain["pixelated"] is None
    assert mosaic["made_with"]["pixelated"] == "auto" and mosaic["made_with"]["search"]["degradation"] == "bicubic"

    given_scale = run_cli(*args, "--output", tmp_path / "scaled", "--scale", 2, "--input", folder / "mosaic.png")
    assert given_scale.exit_code == EXIT_OK and Image.open(tmp_path / "scaled" / "mosaic.png").size == (16, 16)
    off = run_cli(*args, "--output", tmp_path / "off", "--pixelated", "off", "--degradation", "box", "--scale", 1,
                  "--input", folder / "mosaic.png")
    assert off.exit_code == EXIT_OK and "mosaic of" not in off.output
    (line,) = report(tmp_path / "off")
    assert line["pixelated"] is None and line["made_with"]["search"]["degradation"] == "box"
    wrong = run_cli(*args, "--output", tmp_path / "wrong", "--pixelated", 3, "--input", folder / "mosaic.png")
    assert wrong.exit_code == EXIT_INPUT_ERRORS and "mosaic.png: no grid of 3 px blocks fits" in wrong.output
    assert run_cli(*args, "--output", tmp_path / "bad", "--pixelated", "maybe").exit_code == EXIT_USAGE
