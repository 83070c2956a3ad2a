"""`pulse train export`: a checkpoint to a generator file that renders, describes itself and upsamples."""

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from pulse.cli import main as pulse_main
from pulse.cli.train import train_command
from pulse.models.generator_file import load_generator, read_generator_file


def test_export_writes_a_generator_that_renders_and_upsamples(full_run, tmp_path, steps_kimg, train_arch):
    result = CliRunner().invoke(train_command, ["export", str(full_run / "latest.ckpt"), "--out",
                                                str(tmp_path / "g.pt"), "--half", "--fit-samples", "3000",
                                                "--search-default", "loss=100*L2+0.01*GEOCROSS"])
    assert result.exit_code == 0, result.output
    payload = read_generator_file(tmp_path / "g.pt")
    assert payload["config"]["architecture"] == "stylegan2"  # the default
    assert {t.dtype for t in payload["state_dict"].values() if t.is_floating_point()} == {torch.float16}
    assert payload["gaussian_fit"]["samples"] == 3000
    meta = payload["metadata"]
    assert (meta["alignment"], meta["resolution"], meta["kimg"]) == ("ffhq", 32, steps_kimg)
    assert "non-commercial research" in meta["licence"] and "32 images" in meta["data"]
    assert meta["search_defaults"] == {"loss": "100*L2+0.01*GEOCROSS"}
    info = CliRunner().invoke(pulse_main, ["weights", "info", str(tmp_path / "g.pt")])
    assert info.exit_code == 0, info.output
    assert "architecture: stylegan2, 32 px" in info.output and "stored as float16" in info.output
    assert "recommended search settings: loss=100*L2+0.01*GEOCROSS\n" in info.output
    assert "trained from 0 kimg" in info.output
    model = load_generator(tmp_path / "g.pt")
    image = model.generator(z=torch.randn(2, train_arch["style_dim"]))
    assert image.shape == (2, 3, 32, 32) and torch.isfinite(image).all()
    assert load_generator(full_run / "generator.pt").metadata["kimg"] == steps_kimg  # written at the end

    from pulse.api import Upsampler

    results = Upsampler(generator=tmp_path / "g.pt", device="cpu").run([Image.new("RGB", (8, 8), (120, 90, 80))],
                                                                       scale=4, steps=5)
    assert results[0][0].image.size == (32, 32) and np.isfinite(results[0][0].lr_mse)

    bad = CliRunner().invoke(train_command, ["export", str(full_run / "latest.ckpt"), "--out", str(tmp_path / "h.pt"),
                                             "--search-default", "learning_rate=fast"])
    assert bad.exit_code == 2 and "'learning_rate=fast': 'fast' is not a valid float" in bad.output
    assert not (tmp_path / "h.pt").exists()
