
import pytest
import torch
from click.testing import CliRunner

from pulse.cli import main
from pulse.errors import EXIT_USAGE, PulseError
from pulse.models.encoder import load_encoder
from pulse.training.encoder_loop import load_encoder_checkpoint, train_encoder
from pulse.weights.download import sha256_file


def _run(generator, out, options, **more):
    return train_encoder({**options, "generator": str(generator), "out": str(out), **more})


def test_a_run_learns_the_generators_latents_and_writes_an_encoder_for_it(tiny_encoder_file, tiny_generator_file,
                                                                          read_log):
    run = tiny_encoder_file.parent
    log = read_log(run)
    losses = [line["latent"] for line in log if "latent" in line]
    measured = [line["metrics"] for line in log if "metrics" in line]
    assert losses[-1] < 0.9 * losses[0]
    assert measured[-1]["latent_cos"] > measured[0]["latent_cos"] and "lr_psnr" in measured[-1]
    encoder = load_encoder(tiny_encoder_file)
    assert encoder.generator_sha256 == sha256_file(tiny_generator_file)
    assert (encoder.scale, encoder.search_defaults) == (4, {"steps": 30})
    assert encoder.metadata["training_commands"][0]["from_kimg"] == 0
    assert (run / "latest.ckpt").is_file()


def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tiny_generator_file, tiny_encoder_options,
                                                                    tmp_path):
    short = dict(tiny_encoder_options, kimg=0.256, checkpoint_every=0.128)
    straight = load_encoder(_run(tiny_generator_file, tmp_path / "straight", short))
    _run(tiny_generator_file, tmp_path / "legs", short, kimg=0.128)
    resumed = train_encoder({"kimg": 0.256}, resume=tmp_path / "legs" / "latest.ckpt", command="pulse again")
    resumed = load_encoder(resumed)
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=0)
    assert [leg["from_kimg"] for leg in resumed.metadata["training_commands"]] == [0, 0.128]


def test_a_run_refuses_to_start_over_another_or_resume_for_another_generator(tiny_generator_file, tiny_generator,
                                                                             tiny_encoder_options, tmp_path):
    short = dict(tiny_encoder_options, kimg=0.064, checkpoint_every=0.064)
    _run(tiny_generator_file, tmp_path / "run", short)
    with pytest.raises(PulseError, match="already holds a training run; continue it with --resume"):
        _run(tiny_generator_file, tmp_path / "run", short)
    from pulse.models.generator_file import gaussian_fit, save_generator

    other = tiny_generator(seed=1)
    save_generator(tmp_path / "other.pt", other, gaussian_fit(other.mapping, other.style_dim, samples=1000), {})
    with pytest.raises(PulseError, match="trained for another generator"):
        train_encoder({"generator": str(tmp_path / "other.pt")}, resume=tmp_path / "run" / "latest.ckpt")


def test_real_faces_add_lr_consistency_and_reconstruction_terms_through_the_generator(
        tiny_generator_file, tiny_encoder_options, blob, read_log, tmp_path):
    import numpy as np

    faces = tmp_path / "faces"
    faces.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        blob(rng).save(faces / f"{i}.png")
    short = dict(tiny_encoder_options, kimg=0.128, checkpoint_every=0.128, log_every=0.064)
    runs = {}
    for name, weights in (("lr", {"real_weight": 1.0}), ("hr", {"real_hr_weight": 1.0}),
                          ("both", {"real_weight": 1.0, "real_hr_weight": 1.0})):
        path = _run(tiny_generator_file, tmp_path / name, short, real_data=[str(faces)], real_batch=4, **weights)
        lines = [line for line in read_log(tmp_path / name) if "real_lr" in line]
        assert lines and all(line["real_lr"] > 0 and line["real_hr"] > 0 for line in lines)
        runs[name] = load_encoder(path)
    assert "1 x reconstruction" in runs["hr"].metadata["trainer"]
    assert "1 x LR consistency + 1 x reconstruction" in runs["both"].metadata["trainer"]
    # each term moves the weights: the three runs saw the same draws and faces, and end apart
    first = {k: v for k, v in runs["lr"].model.state_dict().items()}
    for other in ("hr", "both"):
        assert any(not torch.equal(first[k], v) for k, v in runs[other].model.state_dict().items())
    for weights in ({"real_weight": 1.0}, {"real_hr_weight": 1.0}):
        with pytest.raises(PulseError, match="--real-weight and --real-hr-weight need --real-data"):
            _run(tiny_generator_file, tmp_path / "other", tiny_encoder_options, **weights)


def test_init_fine_tunes_an_encoder_file_of_the_same_generator(tiny_encoder_file, tiny_generator_file,
                                                               tiny_generator, tiny_encoder_options, tmp_path):
    from pulse.models.generator_file import gaussian_fit, save_generator

    given = load_encoder(tiny_encoder_file)
    # architecture and scale come from the file: the options that would contradict it are left out
    short = {k: v for k, v in tiny_encoder_options.items() if k not in ("scale", "channels", "hidden")}
    short.update(kimg=0.032, checkpoint_every=0.032, lr=1e-12)
    tuned = load_encoder(_run(tiny_generator_file, tmp_path / "tuned", short, init=str(tiny_encoder_file)))
    assert (tuned.scale, tuned.model.config, tuned.search_defaults) == (given.scale, given.model.config,
                                                                         given.search_defaults)
    for name, value in given.model.state_dict().items():  # a vanishing learning rate: the file's weights
        torch.testing.assert_close(tuned.model.state_dict()[name], value, rtol=0, atol=1e-6)
    assert tuned.metadata["init"] == str(tiny_encoder_file)
    resumed = train_encoder({"kimg": 0.064}, resume=tmp_path / "tuned" / "latest.ckpt")
    assert load_encoder(resumed).metadata["init"] == str(tiny_encoder_file)

    mine = _run(tiny_generator_file, tmp_path / "mine", short, init=str(tiny_encoder_file),
                search_defaults={"steps": 7})
    assert load_encoder(mine).search_defaults == {"steps": 7}
    with pytest.raises(PulseError, match="its network has hidden=128, but this run asks for 32"):
        _run(tiny_generator_file, tmp_path / "wide", short, init=str(tiny_encoder_file), hidden=32)
    other = tiny_generator(seed=1)
    save_generator(tmp_path / "other.pt", other, gaussian_fit(other.mapping, other.style_dim, samples=1000), {})
    with pytest.raises(PulseError, match="an encoder for another generator"):
        _run(tmp_path / "other.pt", tmp_path / "mismatch", short, init=str(tiny_encoder_file))


def test_a_stylegan2_generator_gets_an_encoder_too(tmp_path, tiny_encoder_options):
    from pulse.models.generator_file import gaussian_fit, save_generator
    from tests.models.test_stylegan2 import small_generator

    g = small_generator()
    save_generator(tmp_path / "sg2.pt", g, gaussian_fit(g.mapping, g.style_dim, samples=1000), {})
    path = _run(tmp_path / "sg2.pt", tmp_path / "run", dict(tiny_encoder_options, kimg=0.128, checkpoint_every=0.128))
    encoder = load_encoder(path)
    assert encoder.encode(torch.rand(2, 3, 8, 8)).shape == (2, 1, g.style_dim)


def test_the_command_trains_resumes_and_exports_with_search_settings(tiny_generator_file, tmp_path):
    run = tmp_path / "run"
    args = ["train-encoder", "--generator", str(tiny_generator_file), "--output", str(run), "--scale", "4",
            "--kimg", "0.064", "--batch", "32", "--channels", "8,16", "--hidden", "16", "--device", "cpu",
            "--checkpoint-every", "0.064"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"encoder: {run / 'encoder.pt'}" in result.output
    result = CliRunner().invoke(main, ["train-encoder", "--resume", str(run / "latest.ckpt"), "--kimg", "0.128"])
    assert result.exit_code == 0, result.output
    assert load_encoder_checkpoint(run / "latest.ckpt")["progress"]["nimg"] == 128
    result = CliRunner().invoke(main, ["train-encoder", "export", str(run / "latest.ckpt"), "--output",
                                       str(tmp_path / "e.pt"), "--half", "--search-default", "steps=12",
                                       "--search-default", "learning_rate=0.2"])
    assert result.exit_code == 0, result.output
    assert load_encoder(tmp_path / "e.pt").search_defaults == {"steps": 12, "learning_rate": 0.2}
    info = CliRunner().invoke(main, ["weights", "info", str(tmp_path / "e.pt")])
    assert info.exit_code == 0 and "steps=12, learning_rate=0.2" in info.output


@pytest.mark.parametrize("args, message", [
    (["train-encoder", "--output", "x"], "Missing option '--generator'"),
    (["train-encoder", "export", "c.ckpt", "--output", "e.pt", "--search-default", "stepz=3"], "stepz=3"),
    (["train-encoder", "--generator", "g.pt", "--output", "x", "--kimg", "0"], "--kimg 0.0: out of range"),
])
def test_bad_options_are_one_line_errors(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == EXIT_USAGE
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
