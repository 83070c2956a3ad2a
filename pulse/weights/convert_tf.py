"""NVIDIA's TensorFlow network pickles -> a pulse generator file, without TensorFlow.

StyleGAN-1 (``karras2019stylegan-ffhq-1024x1024.pkl``) and StyleGAN2 (``stylegan2-ffhq-config-f.pkl``) came out
as pickles of a tuple (G, D, Gs) of ``dnnlib.tflib`` Networks. ``pulse.weights.unpickle`` keeps each one as an
inert ``TFNetwork`` (the module source it carries is never run); Gs, the averaged generator, is converted. Its
options (``static_kwargs``) are checked against what pulse's classes render, its variables are named the way
NVlabs' ``legacy.py`` names them (``mapping/Dense0/weight``, ``synthesis/8x8/Conv1/bias`` ...), and each one
is checked by name and shape, then mapped. TensorFlow keeps conv weights as [kh, kw, in, out] and dense weights
as [in, out], unscaled, with the equalised-lr gains applied at run time as pulse's classes do, so values only
move: transposes; StyleGAN2's ``Conv0_up`` kernels are also flipped (TensorFlow's ``upsample_conv_2d`` flips
them before its transposed convolution, pulse's does not) and its style biases take the +1 TensorFlow adds at
run time. Anything pulse would render differently is refused in one line naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from ..errors import PulseError
from ..models.generator_file import FIT_SAMPLES, write_generator_file
from ..models.stylegan1 import StyleGAN1Config, StyleGAN1Generator
from ..models.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from .convert_stylegan2 import read_pickle
from .unpickle import PersistentObject, TFNetwork

STYLEGAN1_TF = "stylegan1-tf"
STYLEGAN2_TF = "stylegan2-tf"
KINDS = (STYLEGAN1_TF, STYLEGAN2_TF)
ARCHITECTURE = {STYLEGAN1_TF: "StyleGAN-1", STYLEGAN2_TF: "StyleGAN2"}
SYNTHESIS_FUNCS = {STYLEGAN1_TF: "G_synthesis", STYLEGAN2_TF: "G_synthesis_stylegan2"}

ANY = None  # an option that does not change what the generator renders (training, speed, or read off the tensors)
_COMMON_OPTIONS = {
    **dict.fromkeys(("latent_size", "dlatent_size", "dlatent_broadcast", "resolution", "fmap_base", "fmap_decay",
                     "fmap_min", "fmap_max", "mapping_layers", "mapping_fmaps", "mapping_lrmul", "dtype",
                     "randomize_noise", "structure", "truncation_psi", "truncation_cutoff", "truncation_psi_val",
                     "truncation_cutoff_val", "dlatent_avg_beta", "style_mixing_prob"), ANY),
    "label_size": (0,), "num_channels": (3,), "mapping_nonlinearity": ("lrelu",), "nonlinearity": ("lrelu",),
    "normalize_latents": (True,), "use_noise": (True,),
}
OPTIONS = {  # the build functions' keyword arguments, and the values pulse's classes render the same
    STYLEGAN1_TF: {**_COMMON_OPTIONS, "use_wscale": (True,), "use_styles": (True,), "const_input_layer": (True,),
                   "use_pixel_norm": (False,), "use_instance_norm": (True,), "fused_scale": ("auto", True, False),
                   "blur_filter": ([1, 2, 1],)},
    STYLEGAN2_TF: {**_COMMON_OPTIONS, "architecture": ("skip",), "resample_kernel": ([1, 3, 3, 1],),
                   "mapping_func": ("G_mapping",), "synthesis_func": ("G_synthesis_stylegan2",),
                   **dict.fromkeys(("fused_modconv", "num_fp16_res", "conv_clamp", "w_avg_beta"), ANY)},
}

# how a TensorFlow variable becomes a pulse tensor, and the TensorFlow shape a pulse shape comes from
_MOVES = {
    "copy": (lambda a: a, lambda s: s),
    "dense": (lambda a: a.T, lambda s: s[::-1]),  # [in, out] -> (out, in)
    "conv": (lambda a: a.transpose(3, 2, 0, 1), lambda s: (s[2], s[3], s[1], s[0])),  # [kh, kw, in, out]
    "conv_up": (lambda a: a[::-1, ::-1].transpose(3, 2, 0, 1), lambda s: (s[2], s[3], s[1], s[0])),
    "const": (lambda a: a[0], lambda s: (1, *s)),
    "noise": (lambda a: a[0, 0], lambda s: (1, 1, *s)),
    "style_bias": (lambda a: a + 1, lambda s: s),
}


def import_tf(kind: str, source, out, *, metadata: dict, resolution: int | None = None,
              samples: int = FIT_SAMPLES, device=None) -> list[str]:
    """Convert one NVIDIA TensorFlow pickle (``kind`` "stylegan1-tf" or "stylegan2-tf") into the generator file
    ``out`` (written atomically: on any error ``out`` is left as it was).

    ``resolution``: refuse a generator of another size. The mapping output is fitted on ``samples`` latents
    (CUDA when available). Returns one line per thing done, ignored or noticed.
    """
    if kind not in KINDS:
        raise PulseError(f"unknown TensorFlow source kind {kind!r} (known: {', '.join(KINDS)})")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PulseError(f"device {device}: CUDA is not available here; use --device cpu")
    source = Path(source)
    net = generator_network(source, read_pickle(source))
    variables = tf_variables(source, net)
    options = _options(source, net, kind)
    _check_kind(source, net, variables, kind)
    layout = _stylegan1_layout if kind == STYLEGAN1_TF else _stylegan2_layout
    config, names, ignored, report = layout(source, net, variables, options)
    if resolution is not None and config.resolution != resolution:
        name = metadata.get("name", "the registry entry")
        raise PulseError(f"{source}: a {config.resolution} px generator, but {name} is {resolution} px")
    generator = (StyleGAN1Generator if kind == STYLEGAN1_TF else StyleGAN2Generator)(config)
    expected = generator.state_dict()
    state = _convert(source, variables, names, expected, ignored, ARCHITECTURE[kind])
    state.update({k: v for k, v in expected.items() if k not in state and k.endswith(("resample_filter", ".kernel"))})
    generator.load_state_dict(state, strict=True)
    generator.eval().requires_grad_(False)
    write_generator_file(generator, out, metadata, fit_samples=samples, device=device)
    return report + [f"Gaussian fit of the mapping output: {samples:,} samples on {device}", f"wrote {out}"]


def generator_network(path: Path, data) -> TFNetwork:
    """Gs of NVIDIA's (G, D, Gs) tuple (or a generator pickled on its own), or one line saying what the file is."""
    if isinstance(data, dict) and any(isinstance(v, PersistentObject) for v in data.values()):
        raise PulseError(f"{path}: an NVlabs PyTorch network pickle, not a TensorFlow one: use the kind "
                         f"stylegan2-nvlabs")
    nets = list(data) if isinstance(data, tuple) else [data]
    if not nets or not all(isinstance(n, TFNetwork) for n in nets):
        raise PulseError(f"{path}: holds a {type(data).__name__}, not NVIDIA's TensorFlow network pickle (a tuple "
                         f"(G, D, Gs) of dnnlib.tflib Networks)")
    generators = [n for n in nets if {"mapping", "synthesis"} <= set(n.components)]
    if not generators:
        names = ", ".join(n.name for n in nets)
        if all(n.build_func_name.startswith("D_") or n.name.startswith("D") for n in nets):
            raise PulseError(f"{path}: a discriminator only ({names}); a generator (Gs) is needed")
        raise PulseError(f"{path}: no generator with mapping and synthesis networks in the pickle (it holds: {names})")
    return generators[-1]  # (G, D, Gs): Gs, the moving average of G, is the one to use


def tf_variables(path: Path, net: TFNetwork) -> dict[str, np.ndarray]:
    """Every variable of ``net`` and its sub-networks by legacy.py's names (``synthesis/4x4/Conv/weight``)."""
    found: dict[str, np.ndarray] = {}
    seen: set[int] = set()

    def collect(prefix: str, net: TFNetwork):
        if id(net) in seen:
            raise PulseError(f"{path}: network {net.name} appears twice among its own components; not NVIDIA's layout")
        seen.add(id(net))
        for item in net.variables:
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
                raise PulseError(f"{path}: network {net.name} has a malformed variable entry")
            name, value = prefix + item[0], item[1]
            if not isinstance(value, (np.ndarray, np.floating)) or np.asarray(value).dtype.kind != "f":
                raise PulseError(f"{path}: variable {name} is a {type(value).__name__}, not a float array")
            found[name] = np.asarray(value)
        for key, component in net.components.items():
            if not isinstance(component, TFNetwork):
                raise PulseError(f"{path}: component {prefix}{key} of {net.name} is not a dnnlib.tflib network")
            collect(f"{prefix}{key}/", component)

    collect("", net)
    return found


def _options(path: Path, net: TFNetwork, kind: str) -> dict:
    """The generator's and its sub-networks' options, each one checked against ``OPTIONS[kind]``."""
    merged = {}
    for network in (net, *net.components.values()):
        for key, value in network.static_kwargs.items():
            if key not in OPTIONS[kind]:
                raise PulseError(f"{path}: unknown option {key}={value!r} of {network.name}; pulse cannot tell "
                                 f"whether it renders the same")
            allowed = OPTIONS[kind][key]
            if key == "label_size" and value:
                raise PulseError(f"{path}: a class-conditional generator (label_size={value}); pulse needs an "
                                 f"unconditional one")
            if allowed is not ANY and not any(_same(value, a) for a in allowed):
                raise PulseError(f"{path}: {network.name} option {key}={value!r}; pulse's {ARCHITECTURE[kind]} "
                                 f"renders {' or '.join(map(repr, allowed))} only")
            merged[key] = value
    return merged


def _same(value, allowed) -> bool:
    if isinstance(allowed, list):
        try:
            return [float(v) for v in value] == [float(a) for a in allowed]
        except (TypeError, ValueError):
            return False
    flag = (bool, np.bool_)
    return isinstance(value, flag) == isinstance(allowed, flag) and value == allowed  # True is not 1 here


def _check_kind(path: Path, net: TFNetwork, variables: dict, kind: str):
    if "synthesis/4x4/Conv/mod_weight" in variables and kind == STYLEGAN1_TF:
        raise PulseError(f"{path}: a StyleGAN2 network, not StyleGAN-1: use the kind {STYLEGAN2_TF}")
    if "synthesis/4x4/Const/StyleMod/weight" in variables and kind == STYLEGAN2_TF:
        raise PulseError(f"{path}: a StyleGAN-1 network, not StyleGAN2: use the kind {STYLEGAN1_TF}")
    built_by = net.components["synthesis"].build_func_name
    if built_by != SYNTHESIS_FUNCS[kind]:
        configs = " of configs E/F ('skip')" if kind == STYLEGAN2_TF else ""
        raise PulseError(f"{path}: synthesis network built by {built_by}, not {SYNTHESIS_FUNCS[kind]}; pulse converts "
                         f"{ARCHITECTURE[kind]} generators{configs}")


def _dim(path: Path, variables: dict, name: str, axis: int, architecture: str) -> int:
    value = variables.get(name)
    if value is None:
        raise PulseError(f"{path}: variable {name} missing; not a complete {architecture} generator")
    if value.ndim <= axis:
        raise PulseError(f"{path}: variable {name} has shape {value.shape}; not a {architecture} generator")
    return int(value.shape[axis])


def _shape_of(path: Path, variables: dict, options: dict, architecture: str) -> dict:
    """Resolution, widths, mapping depth and width read off the variables (the options may leave them out)."""
    blocks = {int(m.group(1)) for name in variables if (m := re.match(r"synthesis/(\d+)x\1/", name))}
    resolution = int(options.get("resolution") or max(blocks, default=0))
    if resolution < 8 or resolution & (resolution - 1):
        raise PulseError(f"{path}: resolution {resolution} is not a power of two from 8; not a {architecture} "
                         f"generator")
    widths = [_dim(path, variables, "synthesis/4x4/Conv/weight", 3, architecture)]
    widths += [_dim(path, variables, f"synthesis/{r}x{r}/Conv1/weight", 3, architecture)
               for r in (2**i for i in range(3, resolution.bit_length()))]
    layers = 0
    while f"mapping/Dense{layers}/weight" in variables:
        layers += 1
    if not layers:
        raise PulseError(f"{path}: variable mapping/Dense0/weight missing; not a complete {architecture} generator")
    z_dim = _dim(path, variables, "mapping/Dense0/weight", 0, architecture)
    w_dim = _dim(path, variables, f"mapping/Dense{layers - 1}/weight", 1, architecture)
    if z_dim != w_dim:
        raise PulseError(f"{path}: latent size {z_dim} differs from dlatent size {w_dim}; pulse's mapping keeps one "
                         f"width")
    return dict(resolution=resolution, style_dim=w_dim, mapping_layers=layers,
                mapping_lr_mul=float(options.get("mapping_lrmul", 0.01)), channels=widths)


def _config(path: Path, cls, **fields):
    try:
        return cls(**fields)
    except PulseError as err:
        raise PulseError(f"{path}: {err}") from None


def _summary(path: Path, net: TFNetwork, variables: dict, config, architecture: str) -> str:
    return (f"{path}: NVIDIA TensorFlow {architecture} generator {net.name} (network version {net.version}): "
            f"{config.resolution} px, {config.mapping_layers} mapping layers (lr x{config.mapping_lr_mul:g}), "
            f"widths {','.join(map(str, config.channels))}; {len(variables)} variables")


def _stylegan2_layout(path: Path, net: TFNetwork, variables: dict, options: dict):
    """(config, [(TF name, pulse key, move)], which other variables to ignore, report) of a StyleGAN2 Gs."""
    config = _config(path, StyleGAN2Config, **_shape_of(path, variables, options, "StyleGAN2"))
    names = [("dlatent_avg", "mapping.w_avg", "copy")]
    for i in range(config.mapping_layers):
        names += [(f"mapping/Dense{i}/weight", f"mapping.fc{i}.weight", "dense"),
                  (f"mapping/Dense{i}/bias", f"mapping.fc{i}.bias", "copy")]
    names.append(("synthesis/4x4/Const/const", "synthesis.b4.const", "const"))
    noise = 0
    for res in (4 * 2**i for i in range(len(config.channels))):
        src, dst = f"synthesis/{res}x{res}", f"synthesis.b{res}"
        for layer, module, move in ([("Conv", "conv1", "conv")] if res == 4 else
                                    [("Conv0_up", "conv0", "conv_up"), ("Conv1", "conv1", "conv")]):
            a, b = f"{src}/{layer}", f"{dst}.{module}"
            names += [(f"{a}/weight", f"{b}.weight", move), (f"{a}/bias", f"{b}.bias", "copy"),
                      (f"{a}/noise_strength", f"{b}.noise_strength", "copy"),
                      (f"{a}/mod_weight", f"{b}.affine.weight", "dense"),
                      (f"{a}/mod_bias", f"{b}.affine.bias", "style_bias"),
                      (f"synthesis/noise{noise}", f"{b}.noise_const", "noise")]
            noise += 1
        names += [(f"{src}/ToRGB/weight", f"{dst}.torgb.weight", "conv"),
                  (f"{src}/ToRGB/bias", f"{dst}.torgb.bias", "copy"),
                  (f"{src}/ToRGB/mod_weight", f"{dst}.torgb.affine.weight", "dense"),
                  (f"{src}/ToRGB/mod_bias", f"{dst}.torgb.affine.bias", "style_bias")]
    report = [_summary(path, net, variables, config, "StyleGAN2")]
    if options.get("conv_clamp") is not None:  # G_main hands every option to its parts; this one takes no clamp
        report.append(f"{path}: option conv_clamp {options['conv_clamp']:g} not used: NVIDIA's G_synthesis_stylegan2 "
                      f"clamps nothing, so pulse does not either")
    if options.get("num_fp16_res") or options.get("dtype") == "float16":
        report.append(f"{path}: parts of the network ran in float16 on NVIDIA's GPUs; pulse runs them in float32")
    return config, names, lambda name: name == "lod", report


def _stylegan1_layout(path: Path, net: TFNetwork, variables: dict, options: dict):
    """(config, [(TF name, pulse key, move)], which other variables to ignore, report) of a StyleGAN-1 Gs."""
    fused = {"auto": 128, True: 8, False: 2048}[options.get("fused_scale", "auto")]  # smallest fused output size
    config = _config(path, StyleGAN1Config, **_shape_of(path, variables, options, "StyleGAN-1"),
                     fused_upsample_min_res=fused)
    for where in ("lod", "synthesis/lod"):
        lod = variables.get(where)
        if lod is not None and float(lod) != 0:
            raise PulseError(f"{path}: variable {where} is {float(lod):g}: a network still growing progressively; "
                             f"pulse needs a finished one (lod 0)")
    names = []
    for i in range(config.mapping_layers):
        names += [(f"mapping/Dense{i}/weight", f"mapping.dense{i}.weight", "dense"),
                  (f"mapping/Dense{i}/bias", f"mapping.dense{i}.bias", "copy")]

    def layer(src: str, conv: str | None, epilogue: str) -> list:  # conv (+ blur), noise, bias, act, IN, style
        moves = [(f"{src}/weight", f"{conv}.weight", "conv"), (f"{src}/bias", f"{conv}.bias", "copy")] if conv else []
        return moves + [(f"{src}/Noise/weight", f"{epilogue}.noise.weight", "copy"),
                        (f"{src}/StyleMod/weight", f"{epilogue}.style_mod.lin.weight", "dense"),
                        (f"{src}/StyleMod/bias", f"{epilogue}.style_mod.lin.bias", "copy")]

    block = "synthesis.blocks.4x4"
    names += [("synthesis/4x4/Const/const", f"{block}.const", "copy"),
              ("synthesis/4x4/Const/bias", f"{block}.bias", "copy"),
              *layer("synthesis/4x4/Const", None, f"{block}.epi1"),
              *layer("synthesis/4x4/Conv", f"{block}.conv", f"{block}.epi2")]
    for res in (8 * 2**i for i in range(len(config.channels) - 1)):
        src, block = f"synthesis/{res}x{res}", f"synthesis.blocks.{res}x{res}"
        names += [*layer(f"{src}/Conv0_up", f"{block}.conv0_up", f"{block}.epi1"),
                  *layer(f"{src}/Conv1", f"{block}.conv1", f"{block}.epi2")]
    names += [("synthesis/ToRGB_lod0/weight", "synthesis.torgb.weight", "conv"),
              ("synthesis/ToRGB_lod0/bias", "synthesis.torgb.bias", "copy")]
    noise = [n for n in variables if re.fullmatch(r"synthesis/noise\d+", n)]
    torgb = {m.group(1) for n in variables if (m := re.fullmatch(r"synthesis/ToRGB_lod(\d+)/(weight|bias)", n))} - {"0"}
    fusion = f"fused up-convolutions from {fused} px" if fused <= config.resolution else "no fused up-convolutions"
    report = [f"{_summary(path, net, variables, config, 'StyleGAN-1')}, {fusion}",
              (f"{path}: not used: dlatent_avg (truncation), {len(noise)} fixed noise maps (the search draws its own), "
               f"{len(torgb)} lower-resolution ToRGB layers (progressive growing; lod is 0)")]

    def ignored(name: str) -> bool:
        return (name in ("lod", "synthesis/lod", "dlatent_avg") or name in noise
                or bool(re.fullmatch(r"synthesis/ToRGB_lod[1-9]\d*/(weight|bias)", name)))

    return config, names, ignored, report


def _convert(path: Path, variables: dict, names: list, expected: dict, ignored, architecture: str) -> dict:
    """pulse's state dict from the variables, every one checked: none unknown, none missing, shapes, finite."""
    wanted = {tf_name for tf_name, _, _ in names}
    unknown = [n for n in variables if n not in wanted and not ignored(n)]
    if unknown:
        raise PulseError(f"{path}: variable {unknown[0]} is not part of pulse's {architecture} layout "
                         f"({len(unknown)} such)")
    missing = [tf_name for tf_name, _, _ in names if tf_name not in variables]
    if missing:
        raise PulseError(f"{path}: variable {missing[0]} missing ({len(missing)} missing); not a complete "
                         f"{architecture} generator")
    state = {}
    for tf_name, key, move in names:
        to_pulse, tf_shape = _MOVES[move]
        value, shape = variables[tf_name], tf_shape(tuple(expected[key].shape))
        if value.shape != shape:
            raise PulseError(f"{path}: variable {tf_name} has shape {value.shape}, expected {shape} (the widths of "
                             f"the other variables)")
        if not np.isfinite(value).all():
            raise PulseError(f"{path}: variable {tf_name} holds NaN or infinite values")
        state[key] = torch.from_numpy(np.ascontiguousarray(to_pulse(value), dtype=np.float32))
    return state
