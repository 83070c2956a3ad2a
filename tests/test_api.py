import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import pulse
from pulse.errors import PulseError
from pulse.resample import resize

STEPS = 15


@pytest.fixture(scope="module")
def upsampler(tiny_generator_file):
    return pulse.Upsampler(generator=tiny_generator_file, device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def lr_face(upsampler):
    """An 8x8 LR face the tiny generator can explain, as a PIL image."""
    g = upsampler.model.generator
    with torch.no_grad():
        hr = (g(z=torch.randn(1, g.style_dim, generator=torch.Generator().manual_seed(1))) + 1) / 2
    arr = (resize(hr, 8)[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr)


def test_upsample_accepts_pil_numpy_tensor_and_path(lr_face, tiny_generator_file, tmp_path):
    path = tmp_path / "face.png"
    lr_face.save(path)
    inputs = [lr_face, np.asarray(lr_face), torch.from_numpy(np.asarray(lr_face)).permute(2, 0, 1).float() / 255, path]
    outputs = [pulse.upsample(x, scale=4, generator=tiny_generator_file, device="cpu", steps=STEPS) for x in inputs]
    assert all(isinstance(o, Image.Image) and o.size == (32, 32) for o in outputs)
    # the same pixels in every form give the same face (same seed)
    assert all(np.array_equal(np.asarray(outputs[0]), np.asarray(o)) for o in outputs[1:])


@pytest.mark.slow
def test_results_carry_numbers_and_downscale_back(upsampler, lr_face):
    (res,) = upsampler.run([lr_face], scale=4, steps=200)[0]
    assert res.success and res.lr_mse <= 2e-3
    assert res.lr_psnr == pytest.approx(10 * np.log10(1 / res.lr_mse))
    got = resize(torch.from_numpy(np.asarray(res.image)).permute(2, 0, 1)[None].float() / 255, 8)[0]
    want = torch.from_numpy(np.asarray(lr_face)).permute(2, 0, 1).float() / 255
    assert (got - want).pow(2).mean().item() == pytest.approx(res.lr_mse, rel=1e-4)
    assert res.seed == 0 and res.steps == 200 and res.seconds > 0


def test_samples_have_distinct_seeds_and_outputs(upsampler, lr_face):
    results = upsampler.run([lr_face, lr_face], scale=4, samples=3, seed=5, steps=STEPS)
    assert [r.seed for r in results[0]] == [5, 6, 7] == [r.seed for r in results[1]]
    a, b = np.asarray(results[0][0].image), np.asarray(results[0][1].image)
    assert not np.array_equal(a, b)
    # batching does not change results: image 0 and image 1 are the same input
    assert np.array_equal(a, np.asarray(results[1][0].image))
    many = pulse.upsample_samples(lr_face, 2, scale=4, seed=5, generator=upsampler.model.source, device="cpu",
                                  steps=STEPS)
    assert [np.asarray(m).tobytes() for m in many] == [a.tobytes(), b.tobytes()]


def test_upsample_returns_one_image_whatever_is_asked(lr_face, tiny_generator_file):
    with pytest.raises(PulseError, match="upsample_samples"):
        pulse.upsample(lr_face, scale=4, samples=2, generator=tiny_generator_file, device="cpu", steps=STEPS)
    one = pulse.upsample_samples(lr_face, 1, scale=4, generator=tiny_generator_file, device="cpu", steps=STEPS)
    assert isinstance(one, list) and len(one) == 1 and isinstance(one[0], Image.Image)


def test_opencv_arrays_in_bgr_order_give_the_rgb_inputs_face(lr_face, tiny_generator_file):
    rgb = pulse.upsample(lr_face, scale=4, generator=tiny_generator_file, device="cpu", steps=STEPS)
    bgr = np.asarray(lr_face)[..., ::-1]
    from_bgr = pulse.upsample(bgr, scale=4, generator=tiny_generator_file, device="cpu", steps=STEPS,
                              channel_order="bgr")
    swapped = pulse.upsample(bgr, scale=4, generator=tiny_generator_file, device="cpu", steps=STEPS)
    assert np.array_equal(np.asarray(rgb), np.asarray(from_bgr)) and not np.array_equal(np.asarray(rgb),
                                                                                        np.asarray(swapped))
    with pytest.raises(PulseError, match="channel_order"):
        pulse.upsample(bgr, scale=4, generator=tiny_generator_file, device="cpu", channel_order="BGR!")


def test_a_loaded_generator_is_taken_as_it_is_and_cached_ones_can_be_released(lr_face, tiny_generator_file):
    from pulse.api import _cached_upsampler

    loaded = pulse.load_generator(tiny_generator_file)
    by_object = pulse.upsample(lr_face, scale=4, generator=loaded, device="cpu", steps=STEPS)
    by_path = pulse.upsample(lr_face, scale=4, generator=tiny_generator_file, device="cpu", steps=STEPS)
    assert np.array_equal(np.asarray(by_object), np.asarray(by_path))
    assert _cached_upsampler.cache_info().currsize >= 1
    pulse.release_models()
    assert _cached_upsampler.cache_info().currsize == 0


def test_same_seed_gives_byte_identical_output(tiny_generator_file, lr_face):
    one = pulse.Upsampler(tiny_generator_file, device="cpu").run([lr_face], scale=4, seed=3, steps=STEPS)[0][0]
    two = pulse.Upsampler(tiny_generator_file, device="cpu").run([lr_face], scale=4, seed=3, steps=STEPS)[0][0]
    assert one.image.tobytes() == two.image.tobytes()


def test_output_size_follows_scale_with_warning_past_native(upsampler, lr_face):
    small = upsampler.run([lr_face], scale=2, steps=3)[0][0]
    assert small.image.size == (16, 16)
    with pytest.warns(UserWarning, match="larger than the generator"):
        big = upsampler.run([lr_face], scale=6, steps=3)[0][0]
    assert big.image.size == (48, 48)


@pytest.mark.parametrize("bad, message", [
    (torch.full((3, 8, 8), float("nan")), "NaN"),
    (torch.zeros(3, 8, 8, dtype=torch.int64), "dtype"),
    (torch.full((3, 8, 8), 2.0), r"\[0, 1\]"),
    (np.zeros((8, 8, 3), dtype=np.float64), "uint8"),
    (np.zeros((8, 6, 3), dtype=np.uint8), "not square"),
    (np.zeros((40, 40, 3), dtype=np.uint8), "larger than the generator"),
    ("missing.png", "not found"),
    (3.0, "unsupported input type"),
])
def test_bad_inputs_raise_one_line(upsampler, bad, message):
    with pytest.raises(PulseError, match=message) as err:
        upsampler.run([bad], scale=4, steps=1)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("scale, message", [(0, "scale must be > 0"), (-2, "scale must be > 0"), (3.3, "whole number"),
                                            (float("inf"), "scale must be > 0 and finite"),
                                            (float("nan"), "scale must be > 0 and finite")])
def test_bad_scales(upsampler, lr_face, scale, message):
    with pytest.raises(PulseError, match=message):
        upsampler.run([lr_face], scale=scale, steps=1)


def test_stream_yields_bad_inputs_first_then_each_face_as_its_batch_finishes(upsampler, lr_face):
    faces = [lr_face, Image.new("RGB", (8, 6)), lr_face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), lr_face]
    steps = []
    stream = upsampler.stream(faces, scale=4, samples=2, steps=STEPS, on_step=lambda s, total: steps.append(s))
    index, problem = next(stream)
    assert (index, type(problem)) == (1, PulseError) and "not square" in str(problem) and not steps  # no search yet
    rest = list(stream)
    assert [i for i, _ in rest] == [0, 2, 3]  # 6 rows in batches of 4: inputs 0 and 2 come after the first, 3 after the second
    assert len(steps) == 2 * STEPS
    batch = upsampler.run([faces[0], faces[2], faces[3]], scale=4, samples=2, steps=STEPS)
    for (_, streamed), ran in zip(rest, batch):
        assert [r.sample for r in streamed] == [0, 1]
        assert all(np.array_equal(np.asarray(a.image), np.asarray(b.image)) for a, b in zip(streamed, ran))


def test_greyscale_and_rgba_inputs_are_converted(upsampler, lr_face):
    with pytest.warns(UserWarning, match="greyscale"):
        grey = upsampler.run([lr_face.convert("L")], scale=4, steps=2)[0][0]
    with pytest.warns(UserWarning, match="alpha"):
        rgba = upsampler.run([lr_face.convert("RGBA")], scale=4, steps=2)[0][0]
    assert grey.image.mode == rgba.image.mode == "RGB"


def test_cuda_device_errors_cleanly_without_cuda(tiny_generator_file):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(PulseError, match="CUDA is not available"):
        pulse.Upsampler(tiny_generator_file, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_search_matches_cpu_quality(tiny_generator_file, lr_face):
    cpu = pulse.Upsampler(tiny_generator_file, device="cpu").run([lr_face], scale=4, steps=200)[0][0]
    gpu = pulse.Upsampler(tiny_generator_file, device="cuda").run([lr_face], scale=4, steps=200)[0][0]
    assert gpu.success and abs(gpu.lr_psnr - cpu.lr_psnr) < 1.0


def test_out_of_gpu_memory_halves_the_batch_and_carries_on(tiny_generator_file, lr_face, monkeypatch):
    import pulse.api

    real_search = pulse.api.search
    sizes = []

    def search_with_little_memory(model, lr, seeds, *args, **kwargs):
        sizes.append(len(seeds))
        if len(seeds) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_search(model, lr, seeds, *args, **kwargs)

    plain = pulse.Upsampler(tiny_generator_file, device="cpu", batch_size=8)
    expected = plain.run([lr_face] * 3, scale=4, samples=2, steps=STEPS)
    monkeypatch.setattr(pulse.api, "search", search_with_little_memory)
    up = pulse.Upsampler(tiny_generator_file, device="cpu", batch_size=8)
    with pytest.warns(UserWarning, match="batch size lowered to 3"):
        got = up.run([lr_face] * 3, scale=4, samples=2, steps=STEPS)
    assert sizes[:3] == [6, 3, 1] and up.fit_batch_size() == 1
    assert up.fit_batch_size(precision="bf16") == 8  # another setting's rows need other memory: not lowered
    up.run([lr_face] * 2, scale=4, steps=1)
    assert sizes[-2:] == [1, 1]  # later batches keep the lowered size
    assert [[r.seed for r in per] for per in got] == [[r.seed for r in per] for per in expected]
    for per_got, per_expected in zip(got, expected):
        for a, b in zip(per_got, per_expected):
            assert np.abs(np.asarray(a.image, dtype=float) - np.asarray(b.image, dtype=float)).max() <= 1


def cxx_compiler_present() -> bool:
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c)


@pytest.mark.parametrize("device", [
    pytest.param("cpu", marks=pytest.mark.skipif(not cxx_compiler_present(), reason="no C++ compiler for torch.compile")),
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")),
])
def test_compiled_generator_gives_the_eager_results(tiny_generator_file, lr_face, device):
    from torch._dynamo.utils import counters

    from pulse.search import initial_state, latent_to_w, options_for

    eager = pulse.Upsampler(tiny_generator_file, device=device).run([lr_face] * 2, scale=4, samples=2, steps=60)
    graphs = counters["stats"]["unique_graphs"]
    up = pulse.Upsampler(tiny_generator_file, device=device, compile=True)
    compiled = up.run([lr_face] * 2, scale=4, samples=2, steps=60)
    assert counters["stats"]["unique_graphs"] > graphs  # the search really ran the compiled network
    assert all("_orig_mod" not in k for k in up.model.generator.state_dict())  # the module itself stays eager
    if device == "cpu":  # same seed, same bytes on CPU, compiled too
        again = up.run([lr_face] * 2, scale=4, samples=2, steps=60)
        assert all(np.array_equal(np.asarray(a.image), np.asarray(b.image))
                   for rows in zip(compiled, again) for a, b in zip(*rows))
    # one step, same inputs: the compiled network computes the eager one's image and gradients
    latent, noise, _ = initial_state(up.model, range(4), options_for(up.model), up.device)
    outputs = []
    for synthesize in (up.model.synthesize, up.model.generator.synthesis):
        image = synthesize(latent_to_w(up.model, latent), noise)
        (grad,) = torch.autograd.grad(image.square().sum(), latent)
        outputs.append((image.detach(), grad))
    torch.testing.assert_close(outputs[0][0], outputs[1][0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(outputs[0][1], outputs[1][1], atol=1e-3, rtol=1e-3)
    # over 60 steps the last-bit differences move the search elsewhere on the sphere, equally good
    for a, b in (pair for rows in zip(eager, compiled) for pair in zip(*rows)):
        assert b.success == a.success and abs(b.lr_psnr - a.lr_psnr) < 0.5, (a.lr_psnr, b.lr_psnr)


def test_compiled_runs_fill_a_smaller_last_batch_instead_of_compiling_anew(tiny_generator_file, lr_face, monkeypatch):
    import pulse.api

    plain = pulse.Upsampler(tiny_generator_file, device="cpu", batch_size=2).run([lr_face], scale=4, samples=3,
                                                                                 steps=STEPS)[0]
    real_search, sizes = pulse.api.search, []
    monkeypatch.setattr(pulse.api, "search", lambda model, lr, seeds, *a, **k: sizes.append(len(seeds)) or
                        real_search(model, lr, seeds, *a, **k))
    up = pulse.Upsampler(tiny_generator_file, device="cpu", batch_size=2)
    up.model.compiled = up.model.generator.synthesis  # stands in for torch.compile's module: same function
    filled = up.run([lr_face], scale=4, samples=3, steps=STEPS)[0]
    assert sizes == [2, 2]  # the last sample ran in a batch of 2, beside a copy of itself
    assert [r.seed for r in filled] == [0, 1, 2]
    assert all(np.array_equal(np.asarray(a.image), np.asarray(b.image)) for a, b in zip(plain, filled))
    up.run([lr_face] * 3, scale=4, steps=STEPS)
    assert sizes[2:] == [2, 2]
    one = pulse.Upsampler(tiny_generator_file, device="cpu", batch_size=4)
    one.model.compiled = one.model.generator.synthesis
    one.run([lr_face], scale=4, steps=STEPS)  # a first batch runs at its own size: nothing to fill up to
    assert sizes[-1] == 1


def test_a_failed_compile_is_a_one_line_error(tiny_generator_file, lr_face, monkeypatch):
    import torch._functorch.config as aot
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", ("no-such-c++",))  # as on a machine without a compiler
    monkeypatch.setattr(inductor, "fx_graph_cache", False)  # no cached kernels from another test
    monkeypatch.setattr(aot, "enable_autograd_cache", False)
    torch._dynamo.reset()
    up = pulse.Upsampler(tiny_generator_file, device="cpu", compile=True)
    with pytest.raises(PulseError, match=r"^torch.compile failed on cpu: .*C\+\+ compiler.*; run without --compile$"):
        up.run([lr_face], scale=4, steps=2)
