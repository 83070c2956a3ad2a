"""StyleGAN2 generators from elsewhere -> a pulse generator file (``pulse.models.stylegan2``).

Two sources, each read through ``pulse.weights.unpickle`` (no code from the file is run):

- NVlabs' network pickles (stylegan2-ada-pytorch, and StyleGAN2 pickles of the stylegan3 repository, e.g.
  NGC's ``stylegan2-ffhq-256x256.pkl``): a dict whose ``G_ema`` is a ``torch_utils.persistence`` object. Its
  parameter names are already pulse's; the config comes from the tensors' shapes, checked against what the
  object says of itself (``c_dim``, ``img_channels``, each block's ``architecture``, the mapping's lr multiplier).
- rosinality/stylegan2-pytorch checkpoints (``torch.save`` of a dict with the ``g_ema`` state dict, and
  ``latent_avg`` when converted from NVIDIA's TensorFlow release): the same network under other names and
  shapes, mapped tensor by tensor (its equalised-lr parametrisation is NVlabs', so no value changes).

Anything the pulse class cannot render exactly the same is refused with one line naming the file: StyleGAN3,
class-conditional or non-'skip' generators, a discriminator alone, other filters, wrong shapes. NVlabs'
``conv_clamp`` goes into the config (pulse clamps where NVIDIA does); layers built with ``use_noise=False`` have
no noise tensors and get a zero noise strength, which renders the same for whatever noise the search passes.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import PulseError
from ..models.base import W_AVG_SAMPLES
from ..models.generator_file import FIT_SAMPLES, write_generator_file
from ..models.stylegan2 import StyleGAN2Config, StyleGAN2Generator, fir_kernel
from .unpickle import PersistentObject, RefusedGlobal, TorchModule, load_restricted, refused_message

NVLABS = "stylegan2-nvlabs"
ROSINALITY = "stylegan2-rosinality"
KINDS = (NVLABS, ROSINALITY)


def import_stylegan2(kind: str, source, out, *, metadata: dict, resolution: int | None = None,
                     samples: int = FIT_SAMPLES, device=None, half: bool = False) -> list[str]:
    """Convert one NVlabs pickle (``kind`` "stylegan2-nvlabs") or rosinality checkpoint ("stylegan2-rosinality")
    into the generator file ``out`` (written atomically: on any error ``out`` is left as it was).

    ``resolution``: refuse a generator of another size. The mapping output is fitted on ``samples`` latents
    (CUDA when available); ``half`` stores float16 weights. Returns one line per thing done or noticed.
    """
    if kind not in KINDS:
        raise PulseError(f"unknown StyleGAN2 source kind {kind!r} (known: {', '.join(KINDS)})")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PulseError(f"device {device}: CUDA is not available here; use --device cpu")
    source = Path(source)
    data = read_pickle(source)
    parse = _nvlabs_layout if kind == NVLABS else _rosinality_layout
    config, state, report = parse(source, data)
    if resolution is not None and config.resolution != resolution:
        name = metadata.get("name", "the registry entry")
        raise PulseError(f"{source}: a {config.resolution} px generator, but {name} is {resolution} px")
    generator = StyleGAN2Generator(config)
    _check_shapes(source, state, generator.state_dict(), optional={"mapping.w_avg"})
    if "mapping.w_avg" not in state:  # left unset: the generator file gets it estimated (write_generator_file)
        state["mapping.w_avg"] = torch.zeros(config.style_dim)
        report.append(f"{source}: no average w in the file: estimated from {W_AVG_SAMPLES:,} latents")
    generator.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    generator.eval().requires_grad_(False)
    write_generator_file(generator, out, metadata, half=half, fit_samples=samples, device=device)
    report += [f"Gaussian fit of the mapping output: {samples:,} samples on {device}",
               f"wrote {out}" + (" (float16 weights)" if half else "")]
    return report


def read_pickle(path: Path):
    """The file's objects through the allow-list, or one PulseError line naming the file and the problem."""
    if not path.is_file():
        raise PulseError(f"{path}: file not found")
    try:
        return load_restricted(path)
    except Exception as err:  # noqa: BLE001 - whatever a damaged file raises inside pickle or torch, one line
        refused = _refused_global(err)
        if refused is not None:
            raise PulseError(f"{path}: {refused_message(refused)}") from None
        text = (str(err).splitlines() or [""])[0][:160]
        if isinstance(err, EOFError) or "truncated" in text or "central directory" in text:
            raise PulseError(f"{path}: truncated: the file ends early (an interrupted download?) "
                             f"({type(err).__name__}: {text})") from None
        raise PulseError(f"{path}: not a readable pickle or PyTorch file ({type(err).__name__}: {text})") from None


def _refused_global(err: BaseException | None) -> RefusedGlobal | None:
    seen = 0
    while err is not None and seen < 10:  # torch may re-raise it from a nested load
        if isinstance(err, RefusedGlobal):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


# --- NVlabs network pickles ----------------------------------------------------------------------------------

def _nvlabs_layout(path: Path, data) -> tuple[StyleGAN2Config, dict, list[str]]:
    """(config, pulse state dict, report) of the pickle's G_ema."""
    if isinstance(data, PersistentObject):
        data = {"G_ema": data}  # a generator pickled on its own
    if not isinstance(data, dict):
        raise PulseError(f"{path}: holds a {type(data).__name__}, not an NVlabs network pickle (a dict with G_ema)")
    if isinstance(data.get("g_ema"), dict):
        raise PulseError(f"{path}: a rosinality/stylegan2-pytorch checkpoint (g_ema state dict), not an NVlabs "
                         f"pickle: use the kind {ROSINALITY}")
    G = data.get("G_ema")
    if G is None:
        nets = [k for k, v in data.items() if isinstance(v, (PersistentObject, TorchModule))]
        if nets and all(k.startswith("D") for k in nets):
            raise PulseError(f"{path}: a discriminator only ({', '.join(map(str, nets))}); a generator (G_ema) "
                             f"is needed")
        held = ", ".join(map(str, data)) or "nothing"
        raise PulseError(f"{path}: no G_ema generator in the pickle (it holds: {held})")
    if not isinstance(G, PersistentObject):
        raise PulseError(f"{path}: G_ema is a {type(G).__name__}, not an NVlabs (torch_utils.persistence) network")
    if G.class_name != "Generator":
        raise PulseError(f"{path}: G_ema is a {G.class_name}, not a Generator")
    synthesis, mapping = _child(G, "synthesis"), _child(G, "mapping")
    if synthesis is None or mapping is None:
        raise PulseError(f"{path}: G_ema has no mapping/synthesis networks; not a StyleGAN generator")
    children = _children(synthesis)
    if "input" in children or any(re.fullmatch(r"L\d+_\d+_\d+", name) for name in children):
        raise PulseError(f"{path}: a StyleGAN3 (alias-free) generator: pulse does not support StyleGAN3 yet "
                         f"(StyleGAN2 pickles only)")
    g = G.state
    c_dim, channels_out = g.get("c_dim", 0) or 0, g.get("img_channels", 3)
    if c_dim or _child(mapping, "embed") is not None:
        raise PulseError(f"{path}: a class-conditional generator (c_dim={c_dim}); pulse needs an unconditional one")
    if channels_out != 3:
        raise PulseError(f"{path}: a generator of {channels_out}-channel images; pulse needs RGB (3)")
    resolution = int(g.get("img_resolution", 0) or 0)
    if resolution < 4 or resolution & (resolution - 1):
        raise PulseError(f"{path}: G_ema img_resolution {resolution} is not a power of two")
    state, widths, clamps, fp16, noiseless = {}, [], set(), [], []
    for res in (2**i for i in range(2, resolution.bit_length())):
        block = _child(synthesis, f"b{res}")
        if block is None:
            raise PulseError(f"{path}: G_ema.synthesis has no block b{res}; not a StyleGAN2 generator")
        architecture = block.state.get("architecture", "skip")
        if architecture != "skip":
            raise PulseError(f"{path}: a StyleGAN2 '{architecture}' generator; pulse's StyleGAN2 is the 'skip' "
                             f"architecture (configs E/F)")
        for name in ("conv0", "conv1", "torgb"):
            layer = _child(block, name)
            if layer is None:
                continue
            clamps.add(layer.state.get("conv_clamp"))
            if name != "torgb" and layer.state.get("activation", "lrelu") != "lrelu":
                raise PulseError(f"{path}: synthesis {name} activation {layer.state['activation']!r}; pulse's is lrelu")
            if name != "torgb" and not layer.state.get("use_noise", True):
                noiseless.append((f"synthesis.b{res}.{name}", res))
        if block.state.get("use_fp16"):
            fp16.append(res)
        conv1 = _module_tensors(_child(block, "conv1")).get("weight") if _child(block, "conv1") else None
        if not torch.is_tensor(conv1) or conv1.ndim != 4:
            raise PulseError(f"{path}: G_ema.synthesis.b{res} has no conv1 weight; not a StyleGAN2 generator")
        widths.append(int(conv1.shape[0]))
    fcs = sorted((int(m.group(1)), name) for name in _children(mapping) if (m := re.fullmatch(r"fc(\d+)", name)))
    if not fcs or [i for i, _ in fcs] != list(range(len(fcs))):
        raise PulseError(f"{path}: G_ema.mapping has no fc0, fc1 ... layers; not a StyleGAN2 mapping network")
    fc0 = _child(mapping, "fc0").state
    lr_mul = float(fc0.get("bias_gain", 0.01))
    for _, name in fcs:
        activation = _child(mapping, name).state.get("activation", "lrelu")
        if activation != "lrelu":
            raise PulseError(f"{path}: mapping {name} activation {activation!r}; pulse's is lrelu")
    if len(clamps) > 1:
        raise PulseError(f"{path}: synthesis layers with different conv_clamp values "
                         f"({', '.join(sorted(map(str, clamps)))}); pulse applies one to every layer")
    conv_clamp = clamps.pop() if clamps else None
    state = _module_tensors(G)
    z_dim, w_dim = g.get("z_dim"), g.get("w_dim")
    if z_dim != w_dim:
        raise PulseError(f"{path}: z_dim {z_dim} differs from w_dim {w_dim}; pulse's mapping keeps one width")
    config = _config(path, resolution=resolution, style_dim=int(w_dim or 0), mapping_layers=len(fcs),
                     mapping_lr_mul=lr_mul, channels=widths, conv_clamp=conv_clamp)
    _check_filters(path, {k: v for k, v in state.items() if k.endswith("resample_filter")}, fir_kernel())
    report = [f"{path}: NVlabs StyleGAN2 G_ema: {resolution} px, {len(fcs)} mapping layers (lr x{lr_mul:g}), "
              f"widths {','.join(map(str, widths))}; {len(state)} tensors"]
    if config.conv_clamp is not None:
        report.append(f"{path}: conv_clamp {config.conv_clamp:g} applied: every synthesis layer's and toRGB's output "
                      f"clamped to +-{config.conv_clamp:g}, as NVIDIA's code does")
    if noiseless:
        report.append(f"{path}: {len(noiseless)} synthesis layers without noise inputs (use_noise=False): converted "
                      f"with zero noise strength, so the search's noise maps have no effect there")
    for layer, res in noiseless:  # NVIDIA's layer adds no noise: with a zero strength pulse's adds none either
        state[f"{layer}.noise_strength"] = torch.zeros([])
        state[f"{layer}.noise_const"] = torch.zeros(res, res)
    if fp16:
        report.append(f"{path}: blocks {','.join(map(str, fp16))} px ran in float16 on NVIDIA's GPUs; pulse runs them "
                      f"in float32")
    return config, state, report


def _children(obj) -> dict:
    modules = _obj_state(obj).get("_modules") or {}
    return {k: v for k, v in modules.items() if v is not None} if isinstance(modules, dict) else {}


def _child(obj, name):
    child = _children(obj).get(name)
    return child if isinstance(child, (PersistentObject, TorchModule)) else None


def _obj_state(obj) -> dict:
    if isinstance(obj, PersistentObject):
        return obj.state
    return vars(obj) if isinstance(obj, TorchModule) else {}


def _module_tensors(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    """A state dict of the stand-in module tree: parameters, persistent buffers, then each child's."""
    state = _obj_state(obj)
    tensors = {}
    skipped = state.get("_non_persistent_buffers_set") or set()
    for table in ("_parameters", "_buffers"):
        for name, value in (state.get(table) or {}).items():
            if value is not None and not (table == "_buffers" and name in skipped):
                tensors[prefix + name] = value
    for name, child in _children(obj).items():
        tensors.update(_module_tensors(child, f"{prefix}{name}."))
    return tensors


# --- rosinality checkpoints ----------------------------------------------------------------------------------

def _rosinality_layout(path: Path, data) -> tuple[StyleGAN2Config, dict, list[str]]:
    """(config, pulse state dict, report) of the checkpoint's g_ema, renamed and reshaped to pulse's layout."""
    if isinstance(data, dict) and isinstance(data.get("G_ema"), PersistentObject):
        raise PulseError(f"{path}: an NVlabs network pickle, not a rosinality checkpoint: use the kind {NVLABS}")
    if not isinstance(data, dict):
        raise PulseError(f"{path}: holds a {type(data).__name__}, not a rosinality checkpoint (a dict with g_ema)")
    latent_avg = None
    if "g_ema" in data:
        sd, latent_avg, where = data["g_ema"], data.get("latent_avg"), "g_ema"
    elif any(isinstance(k, str) and k.startswith("style.") for k in data):
        sd, where = data, "state dict"  # a bare generator state dict
    elif "d" in data and "g" not in data:
        raise PulseError(f"{path}: a discriminator only (d); a generator (g_ema) is needed")
    else:
        raise PulseError(f"{path}: no g_ema generator in the checkpoint (it holds: {', '.join(map(str, data))})")
    if not isinstance(sd, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in sd.items()):
        raise PulseError(f"{path}: {where} is not a state dict of tensors")
    n_mlp = len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)])
    ups = len([k for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
    for needed in ("style.1.weight", "input.input", "conv1.conv.weight"):
        if needed not in sd:
            raise PulseError(f"{path}: {where} has no {needed}; not a rosinality StyleGAN2 generator")
    style_dim = int(sd["style.1.weight"].shape[-1])
    widths = [_dim(sd, "input.input", 1)] + [_dim(sd, f"convs.{2 * k}.conv.weight", 1) for k in range(ups)]
    config = _config(path, resolution=4 * 2**ups, style_dim=style_dim, mapping_layers=n_mlp, mapping_lr_mul=0.01,
                     channels=widths)
    names = _rosinality_names(config)
    unknown = [k for k in sd if k not in names and not _is_rosinality_kernel(k)]
    if unknown:
        raise PulseError(f"{path}: {where} tensor {unknown[0]!r} is not part of rosinality's StyleGAN2 generator "
                         f"({len(unknown)} such)")
    _check_filters(path, {k: v for k, v in sd.items() if _is_rosinality_kernel(k)}, fir_kernel() * 4)
    target = _layout_shapes(config)
    state, noise_filled, report = {}, 0, []
    for key, tensor in sd.items():
        if key not in names:
            continue
        pulse_key = names[key]
        shape = target[pulse_key]
        expected = _rosinality_shape(key, shape)
        if tuple(tensor.shape) != expected:
            raise PulseError(f"{path}: {where} {key} has shape {tuple(tensor.shape)}, expected {expected}")
        state[pulse_key] = tensor.reshape(shape)
    for key, pulse_key in names.items():
        if pulse_key in state:
            continue
        if key.startswith("noises."):  # checkpoints from before rosinality stored fixed noise maps
            state[pulse_key] = torch.randn(target[pulse_key], generator=torch.Generator().manual_seed(len(state)))
            noise_filled += 1
            continue
        raise PulseError(f"{path}: {where} lacks {key} (rosinality's layout for {config.resolution} px, "
                         f"{n_mlp} mapping layers)")
    for key, shape in target.items():
        if key.endswith("resample_filter"):
            state[key] = fir_kernel()
    if latent_avg is not None:
        if not torch.is_tensor(latent_avg) or latent_avg.numel() != style_dim:
            raise PulseError(f"{path}: latent_avg is not a {style_dim}-vector")
        state["mapping.w_avg"] = latent_avg.reshape(style_dim)
    report.append(f"{path}: rosinality StyleGAN2 {where}: {config.resolution} px, {n_mlp} mapping layers "
                  f"(lr x0.01, rosinality's default), widths {','.join(map(str, widths))}; {len(sd)} tensors")
    if noise_filled:
        report.append(f"{path}: {noise_filled} fixed noise maps missing: filled with seeded random ones (the search "
                      f"draws its own noise)")
    return config, state, report


def _rosinality_names(config: StyleGAN2Config) -> dict[str, str]:
    """rosinality key -> pulse key, for every tensor the two layouts share."""
    names = {}
    for i in range(config.mapping_layers):
        for p in ("weight", "bias"):
            names[f"style.{i + 1}.{p}"] = f"mapping.fc{i}.{p}"
    names["input.input"] = "synthesis.b4.const"

    def modulated(src: str, dst: str, extra: dict[str, str]):
        names.update({f"{src}.conv.weight": f"{dst}.weight", f"{src}.conv.modulation.weight": f"{dst}.affine.weight",
                      f"{src}.conv.modulation.bias": f"{dst}.affine.bias"})
        names.update({f"{src}.{a}": f"{dst}.{b}" for a, b in extra.items()})

    def styled(src: str, dst: str):  # StyledConv: modulated conv, noise, bias + lrelu
        modulated(src, dst, {"noise.weight": "noise_strength", "activate.bias": "bias"})

    def to_rgb(src: str, dst: str):
        modulated(src, dst, {"bias": "bias"})

    styled("conv1", "synthesis.b4.conv1")
    to_rgb("to_rgb1", "synthesis.b4.torgb")
    layers = ["synthesis.b4.conv1"]
    for k in range(len(config.channels) - 1):
        block = f"synthesis.b{8 * 2**k}"
        styled(f"convs.{2 * k}", f"{block}.conv0")
        styled(f"convs.{2 * k + 1}", f"{block}.conv1")
        to_rgb(f"to_rgbs.{k}", f"{block}.torgb")
        layers += [f"{block}.conv0", f"{block}.conv1"]
    for j, layer in enumerate(layers):  # noise_0 at 4 px, then two per resolution, in pulse's layer order
        names[f"noises.noise_{j}"] = f"{layer}.noise_const"
    return names


def _rosinality_shape(key: str, shape: tuple) -> tuple:
    """The shape rosinality stores a tensor in, from the pulse shape it maps to."""
    if key.endswith(".conv.weight") or key == "input.input":
        return (1, *shape)  # ModulatedConv2d's (1, out, in, k, k); ConstantInput's (1, C, 4, 4)
    if key.endswith(".noise.weight"):
        return (1,)
    if key.startswith("noises."):
        return (1, 1, *shape)
    if re.fullmatch(r"(to_rgb1|to_rgbs\.\d+)\.bias", key):
        return (1, 3, 1, 1)
    return tuple(shape)


def _is_rosinality_kernel(key: str) -> bool:
    return bool(re.fullmatch(r"convs\.\d+\.conv\.blur\.kernel|to_rgbs\.\d+\.upsample\.kernel", key))


# --- shared --------------------------------------------------------------------------------------------------

def _dim(state: dict, key: str, axis: int) -> int:
    tensor = state.get(key)
    return int(tensor.shape[axis]) if torch.is_tensor(tensor) and tensor.ndim > axis else 0


def _config(path: Path, **fields) -> StyleGAN2Config:
    try:
        return StyleGAN2Config(**fields)
    except PulseError as err:
        raise PulseError(f"{path}: {err}") from None


def _layout_shapes(config: StyleGAN2Config) -> dict[str, tuple]:
    """Parameter and buffer shapes of pulse's generator for ``config`` (without initialising it: meta device)."""
    with torch.device("meta"):
        generator = StyleGAN2Generator(config)
    return {k: tuple(v.shape) for k, v in generator.state_dict().items()}


def _check_filters(path: Path, filters: dict, expected: torch.Tensor):
    for key, value in filters.items():
        if not torch.is_tensor(value) or value.shape != expected.shape or not torch.allclose(
                value.float(), expected, atol=1e-6):
            raise PulseError(f"{path}: {key} is not the [1, 3, 3, 1] resampling filter pulse's StyleGAN2 uses")


def _check_shapes(path: Path, state: dict, expected: dict, optional=()):
    """Same tensor names and shapes as pulse's generator (float tensors only), or one line saying what differs."""
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise PulseError(f"{path}: tensor {unexpected[0]!r} is not part of pulse's StyleGAN2 layout "
                         f"({len(unexpected)} such); not a StyleGAN2 'skip' generator")
    missing = [k for k in expected if k not in state and k not in optional]
    if missing:
        raise PulseError(f"{path}: tensor {missing[0]!r} missing ({len(missing)} missing); not a complete StyleGAN2 "
                         f"generator")
    for key, value in state.items():
        if not torch.is_tensor(value) or not value.is_floating_point():
            raise PulseError(f"{path}: {key} is not a float tensor")
        if value.shape != expected[key].shape:
            raise PulseError(f"{path}: {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)} "
                             f"(the widths of the other tensors)")

