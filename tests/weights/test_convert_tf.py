"""NVIDIA's TensorFlow network pickles (StyleGAN-1 karras2019stylegan-*.pkl, StyleGAN2 stylegan2-*-config-f.pkl):
read without TensorFlow and without running their code, converted into pulse's generator file, rendering what
TensorFlow renders.

The fixtures are built here in the on-disk format: ``pickle.dump`` of a tuple (G, D, Gs) of objects whose class is
``dnnlib.tflib.network.Network`` (a module that exists only while dumping) and whose state is what that class's
``__getstate__`` writes: version, name, static_kwargs, components (mapping, synthesis), build_module_src,
build_func_name and the variables as (name, numpy array) pairs, named and shaped as NVIDIA's ``networks_stylegan.py``
and ``networks_stylegan2.py`` create them, for tiny 32 px networks. Arrays are pickled as numpy 1 wrote them
(``numpy.core.multiarray``). The reference forwards follow those build functions straight from the variables
(TensorFlow's [kh, kw, in, out] layouts, run-time weight scaling, its transposed convolutions), not pulse's classes.
"""

import math
import pickle
import re
import sys
import types
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from pulse.cli import main as pulse_main
from pulse.errors import PulseError
from pulse.models.generator_file import load_generator
from pulse.models.stylegan2 import StyleGAN2Generator
from pulse.weights import registry as weights_registry
from pulse.weights import resolve, store
from pulse.weights.convert_tf import import_tf
from pulse.weights.unpickle import TFNetwork, load_restricted

FIT = 1000  # Gaussian-fit samples: the CLI's minimum, plenty for tiny nets
W = 32  # latent and dlatent size
MAPPING_LAYERS = 3
WIDTHS = {4: 32, 8: 32, 16: 16, 32: 8}  # nf() of fmap_base 128, fmap_max 32
OPTIONS = dict(num_channels=3, resolution=32, label_size=0, latent_size=W, dlatent_size=W,
               mapping_layers=MAPPING_LAYERS, mapping_fmaps=W, fmap_base=128, fmap_max=32)


# --- dnnlib.tflib.network.Network, as pickled -------------------------------------------------------------------

class Network:
    """Pickles as NVIDIA's Network does: the class by name, then ``__getstate__``'s dict."""

    def __init__(self, name, func, variables, components=None, version=4, source="", **static_kwargs):
        self.name, self.func, self.version, self.source = name, func, version, source
        self.variables, self.components, self.static_kwargs = dict(variables), dict(components or {}), static_kwargs

    def __getstate__(self):
        return dict(version=self.version, name=self.name, static_kwargs=dict(self.static_kwargs),
                    components=dict(self.components), build_module_src=self.source, build_func_name=self.func,
                    variables=list(self.variables.items()))

    def __setstate__(self, state):
        raise AssertionError("dnnlib.tflib.network.Network.__setstate__ was called")


Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"


@contextmanager
def dnnlib_modules():
    """dnnlib.tflib.network exists only while pickling: pulse must read without it."""
    fake = {name: types.ModuleType(name) for name in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")}
    fake["dnnlib.tflib.network"].Network = Network
    saved = {name: sys.modules.get(name) for name in fake}
    sys.modules.update(fake)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def dump_tf(data, path, protocol=3):
    """``pickle.dump`` as NVIDIA's training loops did; for protocols 2 and 3 with numpy 1's module names."""
    with dnnlib_modules():
        raw = pickle.dumps(data, protocol=protocol)
    if protocol <= 3:
        raw = raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    path.write_bytes(raw)
    return path


def build_source(marker):
    """A build_module_src that would leave a file behind if anything executed it."""
    return (f"import pathlib\npathlib.Path({str(marker)!r}).write_text('executed')\n\n"
            f"def G_main(*args, **kwargs):\n    pass\n")


# --- tiny networks with NVIDIA's variable names --------------------------------------------------------------------

def _randn(rng, *shape, scale=1.0, offset=0.0):
    return (rng.standard_normal(shape) * scale + offset).astype(np.float32)


def stylegan2_variables(seed=0) -> dict[str, dict]:
    """Gs, mapping and synthesis variables of G_main / G_mapping / G_synthesis_stylegan2 ("trained": noise in use,
    biases away from their init)."""
    rng = np.random.default_rng(seed)
    mapping = {}
    for i in range(MAPPING_LAYERS):  # weights ~ N(0, 1/lrmul) as get_weight initialises them with use_wscale
        mapping[f"Dense{i}/weight"] = _randn(rng, W, W, scale=100)
        mapping[f"Dense{i}/bias"] = _randn(rng, W, scale=10)
    synthesis = {f"noise{i}": _randn(rng, 1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2)) for i in range(7)}
    synthesis["4x4/Const/const"] = _randn(rng, 1, WIDTHS[4], 4, 4)

    def layer(prefix, fmaps_in, fmaps_out):
        synthesis.update({f"{prefix}/weight": _randn(rng, 3, 3, fmaps_in, fmaps_out),
                          f"{prefix}/mod_weight": _randn(rng, W, fmaps_in),
                          f"{prefix}/mod_bias": _randn(rng, fmaps_in, scale=0.2),
                          f"{prefix}/noise_strength": np.float32(rng.uniform(0.1, 0.5)),  # a 0-d variable: a scalar
                          f"{prefix}/bias": _randn(rng, fmaps_out, scale=0.2)})

    def torgb(prefix, fmaps_in):
        synthesis.update({f"{prefix}/weight": _randn(rng, 1, 1, fmaps_in, 3),
                          f"{prefix}/mod_weight": _randn(rng, W, fmaps_in),
                          f"{prefix}/mod_bias": _randn(rng, fmaps_in, scale=0.2),
                          f"{prefix}/bias": _randn(rng, 3, scale=0.2)})

    layer("4x4/Conv", WIDTHS[4], WIDTHS[4])
    torgb("4x4/ToRGB", WIDTHS[4])
    for res in (8, 16, 32):
        layer(f"{res}x{res}/Conv0_up", WIDTHS[res // 2], WIDTHS[res])
        layer(f"{res}x{res}/Conv1", WIDTHS[res], WIDTHS[res])
        torgb(f"{res}x{res}/ToRGB", WIDTHS[res])
    return {"Gs": {"lod": np.float32(0), "dlatent_avg": _randn(rng, W)}, "mapping": mapping, "synthesis": synthesis}


def stylegan1_variables(seed=0) -> dict[str, dict]:
    """G_style / G_mapping / G_synthesis variables, with every ToRGB_lod* of progressive growing."""
    rng = np.random.default_rng(seed)
    mapping = {}
    for i in range(MAPPING_LAYERS):
        mapping[f"Dense{i}/weight"] = _randn(rng, W, W, scale=100)
        mapping[f"Dense{i}/bias"] = _randn(rng, W, scale=10)
    synthesis = {"lod": np.float32(0)}
    synthesis.update({f"noise{i}": _randn(rng, 1, 1, 2 ** (i // 2 + 2), 2 ** (i // 2 + 2)) for i in range(8)})

    def epilogue(prefix, fmaps):
        synthesis.update({f"{prefix}/Noise/weight": _randn(rng, fmaps, scale=0.3),
                          f"{prefix}/bias": _randn(rng, fmaps, scale=0.2),
                          f"{prefix}/StyleMod/weight": _randn(rng, W, 2 * fmaps),
                          f"{prefix}/StyleMod/bias": _randn(rng, 2 * fmaps, scale=0.2)})

    synthesis["4x4/Const/const"] = _randn(rng, 1, WIDTHS[4], 4, 4, scale=0.2, offset=1.0)
    epilogue("4x4/Const", WIDTHS[4])
    synthesis["4x4/Conv/weight"] = _randn(rng, 3, 3, WIDTHS[4], WIDTHS[4])
    epilogue("4x4/Conv", WIDTHS[4])
    for res in (8, 16, 32):
        synthesis[f"{res}x{res}/Conv0_up/weight"] = _randn(rng, 3, 3, WIDTHS[res // 2], WIDTHS[res])
        epilogue(f"{res}x{res}/Conv0_up", WIDTHS[res])
        synthesis[f"{res}x{res}/Conv1/weight"] = _randn(rng, 3, 3, WIDTHS[res], WIDTHS[res])
        epilogue(f"{res}x{res}/Conv1", WIDTHS[res])
    for res in (4, 8, 16, 32):
        lod = 5 - int(math.log2(res))
        synthesis[f"ToRGB_lod{lod}/weight"] = _randn(rng, 1, 1, WIDTHS[res], 3)
        synthesis[f"ToRGB_lod{lod}/bias"] = _randn(rng, 3, scale=0.2)
    return {"Gs": {"lod": np.float32(0), "dlatent_avg": _randn(rng, W)}, "mapping": mapping, "synthesis": synthesis}


FUNCS = {"stylegan2": ("G_main", "G_synthesis_stylegan2", "D_stylegan2"),
         "stylegan1": ("G_style", "G_synthesis", "D_basic")}


def generator(arch, variables, name="Gs", source="", **options):
    main, synthesis_func, _ = FUNCS[arch]
    kwargs = {**OPTIONS, **options}
    version = 4 if arch == "stylegan2" else 3
    mapping = Network("G_mapping", "G_mapping", variables["mapping"], version=version, source=source,
                      dlatent_broadcast=8, **kwargs)
    synthesis = Network("G_synthesis", synthesis_func, variables["synthesis"], version=version, source=source, **kwargs)
    return Network(name, main, variables["Gs"], components=dict(synthesis=synthesis, mapping=mapping),
                   version=version, source=source, **kwargs)


def discriminator(arch, seed=9):
    rng = np.random.default_rng(seed)
    variables = {"FromRGB_lod0/weight": _randn(rng, 1, 1, 3, 8), "4x4/Dense1/bias": _randn(rng, 1)}
    return Network("D", FUNCS[arch][2], variables,
                   version=4 if arch == "stylegan2" else 3, **OPTIONS)


def tf_pickle(path, arch="stylegan2", variables=None, protocol=3, source="", **options):
    """NVIDIA's (G, D, Gs): G is another network than Gs (pulse must take Gs)."""
    make = stylegan2_variables if arch == "stylegan2" else stylegan1_variables
    Gs = generator(arch, variables or make(0), source=source, **options)
    G = generator(arch, make(1), name="G", source=source, **options)
    return dump_tf((G, discriminator(arch), Gs), path, protocol=protocol)


def flat(variables) -> dict[str, torch.Tensor]:
    """legacy.py's names, as float64 tensors for the references."""
    out = {name: value for name, value in variables["Gs"].items()}
    for part in ("mapping", "synthesis"):
        out.update({f"{part}/{name}": value for name, value in variables[part].items()})
    return {name: torch.from_numpy(np.asarray(value, dtype=np.float64)) for name, value in out.items()}


# --- references, from NVIDIA's build functions --------------------------------------------------------------------

def tf_mapping(v, z, arch, lrmul=0.01):
    """G_mapping: normalise, dense layers with run-time scaling, leaky ReLU (StyleGAN2: gain after the activation)."""
    x = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)
    for i in range(MAPPING_LAYERS):
        w, b = v[f"mapping/Dense{i}/weight"], v[f"mapping/Dense{i}/bias"]
        if arch == "stylegan1":  # dense(gain=sqrt(2)), apply_bias, leaky_relu
            x = F.leaky_relu(x @ (w * math.sqrt(2) / math.sqrt(w.shape[0]) * lrmul) + b * lrmul, 0.2)
        else:  # dense_layer(gain=1), apply_bias_act('lrelu'): gain sqrt(2) after the activation
            x = F.leaky_relu(x @ (w / math.sqrt(w.shape[0]) * lrmul) + b * lrmul, 0.2) * math.sqrt(2)
    return x


def tf_upfirdn(x, kernel, up, pad0, pad1):
    """upfirdn_2d: zero insertion (sample, then zeros), padding, FIR convolution."""
    n, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(n, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, (pad0, pad1, pad0, pad1))
    return F.conv2d(x, kernel.flip(0, 1)[None, None].expand(c, 1, -1, -1), groups=c)


def fir(taps):
    k = torch.tensor(taps, dtype=torch.float64)
    k = k[:, None] * k[None, :]
    return k / k.sum()


def tf_stylegan2(v, ws):
    """G_synthesis_stylegan2, architecture 'skip', randomize_noise=False (the noise variables), fused modconv."""
    kernel = fir([1, 3, 3, 1])

    def modconv(x, y, p, up=False, demodulate=True):
        w = v[f"{p}/weight"]
        k, _, fmaps_in, _ = w.shape
        w = w / math.sqrt(k * k * fmaps_in)  # get_weight(gain=1), use_wscale
        s = y @ (v[f"{p}/mod_weight"] / math.sqrt(y.shape[1])) + v[f"{p}/mod_bias"] + 1
        ww = w[None] * s[:, None, None, :, None]  # [BkkIO]
        if demodulate:
            ww = ww * torch.rsqrt(ww.square().sum((1, 2, 3)) + 1e-8)[:, None, None, None, :]
        out = []
        for b in range(x.shape[0]):  # the grouped convolution, one sample per group
            if up:  # upsample_conv_2d: flipped, [k, k, out, in] filter, VALID transposed conv, then the FIR filter
                filt = ww[b].flip(0, 1).permute(0, 1, 3, 2)
                t = F.conv_transpose2d(x[b:b + 1], filt.permute(3, 2, 0, 1), stride=2)
                out.append(tf_upfirdn(t, kernel * 4, 1, 1, 1))
            else:
                out.append(F.conv2d(x[b:b + 1], ww[b].permute(3, 2, 0, 1), padding=k // 2))
        return torch.cat(out)

    def layer(x, index, p, up=False):
        x = modconv(x, ws[:, index], p, up=up) + v[f"synthesis/noise{index}"] * v[f"{p}/noise_strength"]
        return F.leaky_relu(x + v[f"{p}/bias"].view(1, -1, 1, 1), 0.2) * math.sqrt(2)

    def torgb(x, res_log2, p):
        return modconv(x, ws[:, res_log2 * 2 - 3], p, demodulate=False) + v[f"{p}/bias"].view(1, -1, 1, 1)

    x = v["synthesis/4x4/Const/const"].expand(ws.shape[0], -1, -1, -1)
    x = layer(x, 0, "synthesis/4x4/Conv")
    y = torgb(x, 2, "synthesis/4x4/ToRGB")
    for r in (3, 4, 5):
        p = f"synthesis/{2**r}x{2**r}"
        x = layer(x, r * 2 - 5, f"{p}/Conv0_up", up=True)
        x = layer(x, r * 2 - 4, f"{p}/Conv1")
        y = tf_upfirdn(y, kernel * 4, 2, 2, 1) + torgb(x, r, f"{p}/ToRGB")  # upsample_2d
    return y


def tf_stylegan1(v, ws, fused_from=128, eps=1e-8):
    """G_synthesis, structure 'fixed' (lod 0), randomize_noise=False (the noise variables); ``eps``: instance_norm's."""
    blur_kernel = fir([1, 2, 1])

    def scaled(w, gain):
        return w * gain / math.sqrt(np.prod(w.shape[:-1]))

    def conv(x, w):
        return F.conv2d(x, w.permute(3, 2, 0, 1), padding=w.shape[0] // 2)

    def epilogue(x, p, index):  # noise, bias, leaky ReLU, instance norm, style
        x = x + v[f"synthesis/noise{index}"] * v[f"{p}/Noise/weight"].view(1, -1, 1, 1)
        x = F.leaky_relu(x + v[f"{p}/bias"].view(1, -1, 1, 1), 0.2)
        x = x - x.mean((2, 3), keepdim=True)
        x = x * torch.rsqrt(x.square().mean((2, 3), keepdim=True) + eps)
        style = ws[:, index] @ scaled(v[f"{p}/StyleMod/weight"], 1) + v[f"{p}/StyleMod/bias"]
        style = style.view(-1, 2, x.shape[1], 1, 1)
        return x * (style[:, 0] + 1) + style[:, 1]

    x = v["synthesis/4x4/Const/const"].expand(ws.shape[0], -1, -1, -1)
    x = epilogue(x, "synthesis/4x4/Const", 0)
    x = epilogue(conv(x, scaled(v["synthesis/4x4/Conv/weight"], math.sqrt(2))), "synthesis/4x4/Conv", 1)
    for r in (3, 4, 5):
        p = f"synthesis/{2**r}x{2**r}"
        w = scaled(v[f"{p}/Conv0_up/weight"], math.sqrt(2))
        if 2**r >= fused_from:  # upscale2d_conv2d, fused: [k, k, out, in], padded and summed, SAME transposed conv
            w = F.pad(w.permute(0, 1, 3, 2).permute(2, 3, 0, 1), (1, 1, 1, 1)).permute(2, 3, 0, 1)
            w = w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]
            x = F.conv_transpose2d(x, w.permute(3, 2, 0, 1), stride=2, padding=1)
        else:  # nearest-neighbour upscale2d, then conv2d
            x = conv(x.repeat_interleave(2, 2).repeat_interleave(2, 3), w)
        c = x.shape[1]
        x = F.conv2d(x, blur_kernel[None, None].expand(c, 1, 3, 3), padding=1, groups=c)
        x = epilogue(x, f"{p}/Conv0_up", r * 2 - 4)
        x = epilogue(conv(x, scaled(v[f"{p}/Conv1/weight"], math.sqrt(2))), f"{p}/Conv1", r * 2 - 3)
    return conv(x, scaled(v["synthesis/ToRGB_lod0/weight"], 1)) + v["synthesis/ToRGB_lod0/bias"].view(1, -1, 1, 1)


# --- helpers -----------------------------------------------------------------------------------------------------

def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


def _convert(source, out, kind="stylegan2-tf", **kw):
    return import_tf(kind, source, out, metadata={"name": "t"}, samples=FIT, device="cpu", **kw)


def _noise_maps(variables, count, batch):
    return [torch.from_numpy(variables["synthesis"][f"noise{i}"]).expand(batch, 1, -1, -1) for i in range(count)]


# --- the allow-list ----------------------------------------------------------------------------------------------

def test_tensorflow_networks_become_inert_state_and_their_source_never_runs(tmp_path):
    marker = tmp_path / "executed"
    variables = stylegan2_variables()
    for protocol in (2, 3, 4):  # Python 3.6's: the originals were written with pickle.HIGHEST_PROTOCOL (4) or less
        path = tf_pickle(tmp_path / f"p{protocol}.pkl", variables=variables, protocol=protocol,
                         source=build_source(marker))
        G, D, Gs = load_restricted(path)
        assert all(isinstance(n, TFNetwork) for n in (G, D, Gs)) and (G.name, D.name, Gs.name) == ("G", "D", "Gs")
        assert Gs.build_func_name == "G_main" and Gs.version == 4 and Gs.static_kwargs["resolution"] == 32
        synthesis = Gs.components["synthesis"]
        assert isinstance(synthesis, TFNetwork) and synthesis.build_module_src == build_source(marker)  # text only
        found = dict(synthesis.variables)
        assert found.keys() == variables["synthesis"].keys()
        assert np.array_equal(found["8x8/Conv0_up/weight"], variables["synthesis"]["8x8/Conv0_up/weight"])
        assert isinstance(found["4x4/Conv/noise_strength"], np.float32)  # 0-d variables come back as numpy scalars
    assert not marker.exists() and "dnnlib" not in sys.modules


class Evil:
    def __init__(self, target, how):
        self.target, self.how = target, how

    def __reduce__(self):
        import os
        if self.how == "system":
            return (os.system, (f"touch {self.target}",))
        return (open, (str(self.target), "w"))


@pytest.mark.parametrize("how", ["system", "open"])
def test_a_malicious_tensorflow_pickle_is_refused_and_creates_nothing(tmp_path, how):
    target = tmp_path / "pwned"
    variables = stylegan2_variables()
    Gs = generator("stylegan2", variables)
    Gs.components["synthesis"].static_kwargs["structure"] = Evil(target, how)
    path = dump_tf((Gs,), tmp_path / "evil.pkl")
    with pytest.raises(PulseError) as err:
        _convert(path, tmp_path / "out.pt")
    name = r"(os|posix)\.system" if how == "system" else r"(io|builtins)\.open"
    assert re.match(rf"{re.escape(str(path))}: refused: the pickle asks for {name}, which is not on pulse's "
                    r"allow-list", one_line(err)), str(err.value)
    assert not target.exists() and not (tmp_path / "out.pt").exists()


# --- conversion: each renders what TensorFlow renders ---------------------------------------------------------------

def test_stylegan2_tf_pickle_converts_loads_and_renders_as_tensorflow(tmp_path):
    marker = tmp_path / "executed"
    variables = stylegan2_variables()
    path = tf_pickle(tmp_path / "stylegan2-ffhq-config-f.pkl", variables=variables, source=build_source(marker))
    report = _convert(path, tmp_path / "g.pt")
    assert ("NVIDIA TensorFlow StyleGAN2 generator Gs (network version 4): 32 px, 3 mapping layers (lr x0.01), "
            "widths 32,32,16,8") in report[0]
    loaded = load_generator(tmp_path / "g.pt")
    config = loaded.generator.config
    assert (config.architecture, config.resolution, config.style_dim, config.channels) == ("stylegan2", 32, W,
                                                                                            [32, 32, 16, 8])
    v = flat(variables)
    assert torch.equal(loaded.generator.mapping.w_avg, v["dlatent_avg"].float())
    with torch.no_grad():
        z = torch.randn(3, W, generator=torch.Generator().manual_seed(1))
        assert (loaded.generator.mapping(z) - tf_mapping(v, z.double(), "stylegan2")).abs().max() < 1e-5
        ws = torch.randn(3, loaded.generator.n_styles, W, generator=torch.Generator().manual_seed(2))
        expected = tf_stylegan2(v, ws.double())
        noise = [layer.noise_const.expand(3, 1, -1, -1) for block in loaded.generator.synthesis.blocks()
                 for layer in ([block.conv1] if block.in_channels == 0 else [block.conv0, block.conv1])]
        got = loaded.synthesize(ws, noise)
        image = loaded.generator(z=z)
    assert expected.shape == got.shape == image.shape == (3, 3, 32, 32) and expected.std() > 0.1
    assert (got.double() - expected).abs().max() < 1e-4
    assert torch.isfinite(image).all() and not marker.exists()


def test_stylegan2_tf_conv_clamp_option_is_not_applied_as_nvidias_tensorflow_stylegan2_ignores_it(tmp_path):
    variables = stylegan2_variables()
    path = tf_pickle(tmp_path / "net.pkl", variables=variables, conv_clamp=0.5)
    report = "\n".join(_convert(path, tmp_path / "g.pt"))
    assert "option conv_clamp 0.5 not used: NVIDIA's G_synthesis_stylegan2 clamps nothing, so pulse does not" in report
    loaded = load_generator(tmp_path / "g.pt")
    assert loaded.generator.config.conv_clamp is None
    clamped = StyleGAN2Generator(replace(loaded.generator.config, conv_clamp=0.5)).eval()
    clamped.load_state_dict(loaded.generator.state_dict())
    with torch.no_grad():
        ws = torch.randn(3, loaded.generator.n_styles, W, generator=torch.Generator().manual_seed(2))
        expected = tf_stylegan2(flat(variables), ws.double())
        noise = _noise_maps(variables, 7, 3)
        got, if_clamped = loaded.synthesize(ws, noise), clamped.synthesis(ws, noise)
    assert (got.double() - expected).abs().max() < 1e-4
    assert (if_clamped.double() - expected).abs().max() > 0.1  # a clamp of 0.5 would have changed the image


@pytest.mark.parametrize("fused_scale", ["auto", True])
def test_stylegan1_tf_pickle_converts_loads_and_renders_as_tensorflow(tmp_path, fused_scale):
    variables = stylegan1_variables()
    options = {} if fused_scale == "auto" else {"fused_scale": True}
    path = tf_pickle(tmp_path / "karras2019stylegan-ffhq-32.pkl", "stylegan1", variables=variables, protocol=2,
                     **options)
    report = "\n".join(_convert(path, tmp_path / "g.pt", kind="stylegan1-tf"))
    assert "NVIDIA TensorFlow StyleGAN-1 generator Gs (network version 3): 32 px, 3 mapping layers (lr x0.01), " \
           "widths 32,32,16,8" in report
    assert ("no fused up-convolutions" if fused_scale == "auto" else "fused up-convolutions from 8 px") in report
    assert "not used: dlatent_avg (truncation), 8 fixed noise maps (the search draws its own), 3 lower-resolution " \
           "ToRGB layers" in report
    loaded = load_generator(tmp_path / "g.pt")
    assert (loaded.generator.config.architecture, loaded.generator.config.channels) == ("stylegan1", [32, 32, 16, 8])
    v = flat(variables)
    with torch.no_grad():
        z = torch.randn(3, W, generator=torch.Generator().manual_seed(1))
        assert (loaded.generator.mapping(z) - tf_mapping(v, z.double(), "stylegan1")).abs().max() < 1e-5
        ws = torch.randn(3, loaded.generator.n_styles, W, generator=torch.Generator().manual_seed(2))
        fused_from = 128 if fused_scale == "auto" else 8
        expected = tf_stylegan1(v, ws.double(), fused_from)
        same_eps = tf_stylegan1(v, ws.double(), fused_from, eps=1e-5)
        got = loaded.synthesize(ws, _noise_maps(variables, 8, 3))
        image = loaded.generator(z=z)
    assert expected.shape == got.shape == image.shape == (3, 3, 32, 32) and expected.std() > 0.1
    # pulse's StyleGAN-1 (PULSE's layout) normalises with InstanceNorm2d's eps, 1e-5; TensorFlow's is 1e-8
    assert (got.double() - same_eps).abs().max() < 1e-4
    assert (got.double() - expected).abs().max() < 1e-3 * expected.abs().max()  # the eps, and only the eps
    assert torch.isfinite(image).all()


# --- refusals ----------------------------------------------------------------------------------------------------

def _without(name):
    def change(variables):
        part, _, local = name.partition("/")
        del variables[part][local]
    return change


def _reshaped(name, shape):
    def change(variables):
        part, _, local = name.partition("/")
        variables[part][local] = np.zeros(shape, np.float32)
    return change


@pytest.mark.parametrize("case, message", [
    ("truncated", r"truncated: the file ends early"),
    ("not a pickle", r"not a readable pickle or PyTorch file"),
    ("D only", r"a discriminator only \(D\); a generator \(Gs\) is needed"),
    ("missing variable", r"variable synthesis/16x16/Conv1/noise_strength missing \(1 missing\); not a complete "
                         r"StyleGAN2 generator$"),
    ("missing width", r"variable synthesis/16x16/Conv1/weight missing; not a complete StyleGAN2 generator$"),
    ("wrong shape", r"variable synthesis/8x8/Conv1/bias has shape \(5,\), expected \(32,\)"),
    ("mapping width", r"variable mapping/Dense1/weight has shape \(32, 48\), expected \(32, 32\)"),
    ("extra variable", r"variable synthesis/8x8/Skip/weight is not part of pulse's StyleGAN2 layout \(1 such\)"),
    ("conditional", r"a class-conditional generator \(label_size=4\); pulse needs an unconditional one"),
    ("resnet", r"G_synthesis option architecture='resnet'; pulse's StyleGAN2 renders 'skip' only"),
    ("unknown option", r"unknown option use_spectral_norm=True of Gs; pulse cannot tell whether it renders the same"),
    ("nan", r"variable synthesis/4x4/Const/const holds NaN or infinite values"),
    ("stylegan1 as stylegan2", r"a StyleGAN-1 network, not StyleGAN2: use the kind stylegan1-tf"),
    ("revised synthesis", r"synthesis network built by G_synthesis_stylegan_revised, not G_synthesis_stylegan2"),
    ("arrays only", r"holds a tuple, not NVIDIA's TensorFlow network pickle"),
])
def test_stylegan2_tf_refusals_are_one_line_naming_the_file(tmp_path, case, message):
    path = tmp_path / "bad.pkl"
    variables = stylegan2_variables()
    options = {}
    if case == "truncated":
        data = tf_pickle(tmp_path / "good.pkl").read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif case == "not a pickle":
        path.write_bytes(b"<html><body>Google Drive - quota exceeded</body></html>")
    elif case == "D only":
        dump_tf(discriminator("stylegan2"), path)
    elif case == "missing variable":
        _without("synthesis/16x16/Conv1/noise_strength")(variables)
    elif case == "missing width":
        _without("synthesis/16x16/Conv1/weight")(variables)
    elif case == "wrong shape":
        _reshaped("synthesis/8x8/Conv1/bias", (5,))(variables)
    elif case == "mapping width":
        _reshaped("mapping/Dense1/weight", (32, 48))(variables)
    elif case == "extra variable":
        variables["synthesis"]["8x8/Skip/weight"] = np.zeros((1, 1, 32, 32), np.float32)
    elif case == "conditional":
        options["label_size"] = 4
    elif case == "unknown option":
        options["use_spectral_norm"] = True
    elif case == "nan":
        variables["synthesis"]["4x4/Const/const"][0, 0, 0, 0] = np.nan
    elif case == "stylegan1 as stylegan2":
        tf_pickle(path, "stylegan1")
    elif case == "revised synthesis":
        Gs = generator("stylegan2", variables)
        Gs.components["synthesis"].func = "G_synthesis_stylegan_revised"
        dump_tf((Gs,), path)
    elif case == "arrays only":
        dump_tf((np.zeros(3, np.float32),), path)
    if not path.exists():
        if case == "resnet":
            Gs = generator("stylegan2", variables)
            Gs.components["synthesis"].static_kwargs["architecture"] = "resnet"
            dump_tf((Gs,), path)
        else:
            tf_pickle(path, variables=variables, **options)
    with pytest.raises(PulseError) as err:
        _convert(path, tmp_path / "out.pt")
    assert re.match(rf"{re.escape(str(path))}: .*{message}", one_line(err)), str(err.value)
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("case, message", [
    ("missing variable", r"variable synthesis/8x8/Conv0_up/StyleMod/bias missing \(1 missing\)"),
    ("growing", r"variable synthesis/lod is 1.5: a network still growing progressively; pulse needs a finished one"),
    ("instance norm off", r"G_synthesis option use_instance_norm=False; pulse's StyleGAN-1 renders True only"),
    ("blur", r"option blur_filter=\[1, 3, 1\]; pulse's StyleGAN-1 renders \[1, 2, 1\] only"),
    ("stylegan2 as stylegan1", r"a StyleGAN2 network, not StyleGAN-1: use the kind stylegan2-tf"),
    ("too small", r"generator resolution must be a power of two from 32 to 1024, got 16"),
])
def test_stylegan1_tf_refusals_are_one_line_naming_the_file(tmp_path, case, message):
    path = tmp_path / "bad.pkl"
    variables = stylegan1_variables()
    if case == "missing variable":
        _without("synthesis/8x8/Conv0_up/StyleMod/bias")(variables)
        tf_pickle(path, "stylegan1", variables=variables)
    elif case == "growing":
        variables["synthesis"]["lod"] = np.float32(1.5)
        tf_pickle(path, "stylegan1", variables=variables)
    elif case in ("instance norm off", "blur"):
        Gs = generator("stylegan1", variables)
        key, value = ("use_instance_norm", False) if case == "instance norm off" else ("blur_filter", [1, 3, 1])
        Gs.components["synthesis"].static_kwargs[key] = value
        dump_tf((Gs,), path)
    elif case == "stylegan2 as stylegan1":
        tf_pickle(path)
    elif case == "too small":
        synthesis = variables["synthesis"]
        for name in [n for n in synthesis if n.startswith(("32x32/", "ToRGB_lod0/")) or n in ("noise6", "noise7")]:
            del synthesis[name]
        tf_pickle(path, "stylegan1", variables=variables, resolution=16)
    with pytest.raises(PulseError) as err:
        _convert(path, tmp_path / "out.pt", kind="stylegan1-tf")
    assert re.match(rf"{re.escape(str(path))}: .*{message}", one_line(err)), str(err.value)
    assert not (tmp_path / "out.pt").exists()


# --- the registry, the cache and the command line -------------------------------------------------------------------

@pytest.fixture
def tf_registry(tmp_path, monkeypatch, registry_entry):
    """A registry with a 32 px StyleGAN2 TF entry (tf2) and a 32 px StyleGAN-1 one (tf1)."""
    text = (registry_entry("tf2", "stylegan2-tf", 32, "net2.pkl", ["http://127.0.0.1:9/net2.pkl"])
            + registry_entry("tf1", "stylegan1-tf", 32, "net1.pkl", ["http://127.0.0.1:9/net1.pkl"]))
    path = tmp_path / "registry.toml"
    path.write_text(text.replace('licence = "test"', 'licence = "test"\nalignment = "ffhq"'))
    monkeypatch.setenv(weights_registry.REGISTRY_ENV, str(path))
    return path


def test_pulse_weights_import_converts_tf_pickles_and_a_bad_one_leaves_the_previous_file(tmp_path, tf_registry, cache):
    good = tf_pickle(tmp_path / "stylegan2-ffhq-config-f.pkl")
    runner = CliRunner()
    args = ["--cache-dir", str(cache), "--fit-samples", str(FIT), "--device", "cpu"]
    result = runner.invoke(pulse_main, ["weights", "import", "tf2", str(good), *args])
    assert result.exit_code == 0, result.output
    assert "NVIDIA TensorFlow StyleGAN2 generator Gs" in result.output
    out = cache / "tf2" / "tf2.pt"
    loaded = load_generator(resolve.resolve_generator("tf2", cache_dir=cache))
    assert loaded.metadata["source"] == "NVIDIA TensorFlow StyleGAN2 pickle: stylegan2-ffhq-config-f.pkl (imported)"
    assert (loaded.metadata["alignment"], loaded.metadata["resolution"]) == ("ffhq", 32)
    assert loaded.generator(z=torch.randn(2, W)).shape == (2, 3, 32, 32)
    before = out.read_bytes()

    variables = stylegan2_variables()
    _without("synthesis/32x32/ToRGB/mod_bias")(variables)
    broken = tf_pickle(tmp_path / "broken.pkl", variables=variables)
    result = runner.invoke(pulse_main, ["weights", "import", "tf2", str(broken), *args])
    assert result.exit_code == 2
    [error] = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert error == (f"error: {broken}: variable synthesis/32x32/ToRGB/mod_bias missing (1 missing); not a complete "
                     f"StyleGAN2 generator")
    evil = tmp_path / "evil.pkl"
    Gs = generator("stylegan2", stylegan2_variables())
    Gs.static_kwargs["truncation_psi"] = Evil(tmp_path / "pwned", "system")
    dump_tf((Gs,), evil)
    with pytest.raises(PulseError, match="refused: the pickle asks for"):
        resolve.import_files("tf2", [evil], cache_dir=cache, fit_samples=FIT, device="cpu")
    assert out.read_bytes() == before and not (tmp_path / "pwned").exists()  # the previous good file, untouched
    assert [s.state for s in store.verify("tf2", cache_dir=cache)] == ["ok"]
    assert sorted(p.name for p in out.parent.iterdir()) == [".tf2.pt.lock", "tf2.pt", "tf2.pt.sha256"]

    sg1 = tf_pickle(tmp_path / "karras2019stylegan.pkl", "stylegan1")
    lines = resolve.import_files("tf1", [sg1], cache_dir=cache, fit_samples=FIT, device="cpu")
    assert any("NVIDIA TensorFlow StyleGAN-1 generator Gs" in line for line in lines)
    assert load_generator(cache / "tf1" / "tf1.pt").generator.config.architecture == "stylegan1"
    with pytest.raises(PulseError, match=r"a StyleGAN2 network, not StyleGAN-1: use the kind stylegan2-tf$"):
        resolve.import_files("tf1", [good], cache_dir=cache, fit_samples=FIT, device="cpu")


def test_shipped_registry_names_nvidias_tensorflow_pickles():
    models = weights_registry.load_registry()
    sg1, sg2 = models["ffhq-1024-tf"], models["stylegan2-ffhq-config-f"]
    assert (sg1.kind, sg1.resolution, sg1.alignment) == ("stylegan1-tf", 1024, "ffhq")
    assert sg1.layout == "stylegan1-ffhq-1024"
    assert (sg2.kind, sg2.resolution, sg2.alignment, sg2.layout) == ("stylegan2-tf", 1024, "ffhq", "stylegan2-f-1024")
    assert sg1.layout == models["ffhq-1024"].layout and sg2.layout == models["stylegan2-ffhq-1024"].layout
    [f1], [f2] = sg1.files, sg2.files
    assert f1.name == "karras2019stylegan-ffhq-1024x1024.pkl"
    assert f1.urls == ("https://drive.google.com/uc?export=download&id=1MEGjdvVpUsu1jB4zrXZN7Y4kBBOzizDQ",)
    assert f2.urls[0] == "https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks/stylegan2-ffhq-config-f.pkl"
    assert f1.sha256 is None and f2.sha256 is None  # pinned on first use (--no-verify)
    assert {sg1.kind, sg2.kind} <= set(weights_registry.CONVERTED_KINDS)
