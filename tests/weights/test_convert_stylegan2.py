"""StyleGAN2 generators from NVlabs' network pickles and rosinality's checkpoints: read without running pickled
code, converted into pulse's generator file, rendering what the source network renders.

The fixtures are built here in the exact on-disk formats: an NVlabs pickle is ``pickle.dump`` of a dict of
networks whose classes pickle the way ``torch_utils.persistence`` makes them (``_reconstruct_persistent_obj(meta)``
with the module source and the object's ``__dict__``; ``dnnlib.util.EasyDict`` kwargs; tensors through torch's
reducers), with ``torch_utils``/``dnnlib`` present only while dumping. Its networks are small re-implementations
of NVlabs' classes (attribute names, parametrisation, and the fused modulated convolution G_ema runs at
inference). A rosinality checkpoint is ``torch.save`` of ``train.py``'s dict (``g_ema`` state dict, optimiser
state, ``argparse.Namespace`` args) or of ``convert_weight.py``'s (``g_ema`` + ``latent_avg``), from a faithful
re-implementation of its ``model.py`` Generator (widths table made a parameter so the nets stay tiny).
"""

import argparse
import hashlib
import math
import os
import pickle
import re
import sys
import types
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from click.testing import CliRunner

from pulse.cli import main as pulse_main
from pulse.errors import PulseError
from pulse.models.generator_file import load_generator
from pulse.models.stylegan2 import StyleGAN2Generator
from pulse.resample import resize
from pulse.search import SearchOptions, search
from pulse.weights import registry as weights_registry
from pulse.weights import resolve, store
from pulse.weights.convert_stylegan2 import import_stylegan2
from pulse.weights.convert_tf import import_tf
from pulse.weights.unpickle import PersistentObject, load_restricted

FIT = 1000  # Gaussian-fit samples: the CLI's minimum, plenty for tiny nets


# --- NVlabs' formats: torch_utils.persistence, dnnlib.EasyDict ---------------------------------------------------

MODULE_SRC = "# training/networks.py of the network's repository: kept by the pickle, never run by pulse\n"


def _reconstruct_persistent_obj(meta):  # what the pickles name; pulse must never call NVlabs' one
    raise AssertionError("torch_utils.persistence._reconstruct_persistent_obj was called")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class EasyDict(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)

    def __setattr__(self, name, value):
        self[name] = value


EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"


@contextmanager
def nvlabs_modules():
    """torch_utils.persistence and dnnlib.util exist only while pickling: pulse must read without them."""
    fake = {name: types.ModuleType(name) for name in ("torch_utils", "torch_utils.persistence", "dnnlib",
                                                       "dnnlib.util")}
    fake["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    fake["dnnlib.util"].EasyDict = EasyDict
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


def dump_nvlabs(data, path, protocol=3):
    """``pickle.dump`` as NVlabs' training loop does (Python 3.7's default protocol 3 unless told otherwise)."""
    with nvlabs_modules():
        path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


class Persistent(nn.Module):
    """Pickles as ``torch_utils.persistence.persistent_class`` makes a class pickle: the reconstruct function, and
    meta with the module source, the class name and ``__dict__`` (init kwargs kept as EasyDict)."""

    def keep_init(self, **kwargs):
        self._init_args = ()
        self._init_kwargs = EasyDict(kwargs)

    def __reduce__(self):
        fields = list(super().__reduce__())
        fields += [None] * max(3 - len(fields), 0)
        meta = dict(type="class", version=6, module_src=MODULE_SRC, class_name=type(self).__name__, state=fields[2])
        return (_reconstruct_persistent_obj, (meta,), None)


def setup_filter(f=(1, 3, 3, 1)):
    f = torch.as_tensor(f, dtype=torch.float32)
    f = f.ger(f)
    return f / f.sum()


def upfirdn2d(x, f, up=1, down=1, padding=(0, 0, 0, 0), gain=1, flip_filter=False):
    """NVlabs' reference upfirdn2d: zero insertion, pad/crop, FIR (a convolution unless flip_filter), decimation."""
    n, c, h, w = x.shape
    px0, px1, py0, py1 = padding
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0):x.shape[2] - max(-py1, 0), max(-px0, 0):x.shape[3] - max(-px1, 0)]
    f = f * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip([0, 1])
    x = F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::down, ::down]


def upsample2d(x, f, up=2):
    fw = f.shape[-1]
    p = [(fw + up - 1) // 2, (fw - up) // 2]
    return upfirdn2d(x, f, up=up, padding=[p[0], p[1], p[0], p[1]], gain=up * up)


def conv2d_resample(x, w, f=None, up=1, padding=0, groups=1, flip_weight=True):
    """NVlabs' conv2d_resample for what the generator uses: plain convs, and ×2 by transposed conv + FIR."""
    out_channels, in_per_group, kh, kw = w.shape
    if up == 1:
        return F.conv2d(x, w if flip_weight else w.flip([2, 3]), padding=padding, groups=groups)
    fw = f.shape[-1]
    px0, px1 = padding + (fw + up - 1) // 2, padding + (fw - up) // 2
    w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
    w = w.reshape(groups * in_per_group, out_channels // groups, kh, kw)
    px0, px1 = px0 - (kw - 1), px1 - (kw - up)
    pxt = max(min(-px0, -px1), 0)
    w = w if not flip_weight else w.flip([2, 3])  # _conv2d_wrapper(flip_weight=not flip_weight)
    x = F.conv_transpose2d(x, w, stride=up, padding=pxt, groups=groups)
    return upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, px0 + pxt, px1 + pxt], gain=up**2)


def nv_modulated_conv2d(x, weight, styles, noise=None, up=1, padding=0, resample_filter=None, demodulate=True,
                        flip_weight=True):
    """NVlabs' modulated_conv2d, fused path (G_ema in eval mode at float32): per-sample weights, grouped conv."""
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(batch, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    x = conv2d_resample(x, w.reshape(-1, in_channels, kh, kw), f=resample_filter, up=up, padding=padding,
                        groups=batch, flip_weight=flip_weight)
    x = x.reshape(batch, -1, *x.shape[2:])
    return x if noise is None else x.add_(noise)


def bias_act(x, b, act="linear", gain=None, clamp=None):
    x = x + b.reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2) * (np.sqrt(2) if gain is None else gain)
    elif gain is not None:
        x = x * gain
    return x if clamp is None else x.clamp(-clamp, clamp)


class FullyConnectedLayer(Persistent):
    def __init__(self, in_features, out_features, bias=True, activation="linear", lr_multiplier=1, bias_init=0):
        super().__init__()
        self.keep_init(in_features=in_features, out_features=out_features, activation=activation,
                       lr_multiplier=lr_multiplier, bias_init=bias_init)
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], np.float32(bias_init)))
        self.weight_gain = lr_multiplier / np.sqrt(in_features)  # numpy float64s, as in NVlabs' pickles
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight * float(self.weight_gain)
        b = self.bias * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class MappingNetwork(Persistent):
    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, embed_features=None, layer_features=None,
                 activation="lrelu", lr_multiplier=0.01, w_avg_beta=0.995):
        super().__init__()
        self.keep_init(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws, num_layers=num_layers,
                       layer_features=layer_features, lr_multiplier=lr_multiplier)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, c_dim, w_dim, num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        embed_features = 0 if c_dim == 0 else (embed_features or w_dim)
        layer_features = layer_features or w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                                          lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z):
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        return x.unsqueeze(1).repeat([1, self.num_ws, 1])


class SynthesisLayer(Persistent):
    def __init__(self, in_channels, out_channels, w_dim, resolution, kernel_size=3, up=1, use_noise=True,
                 activation="lrelu", resample_filter=(1, 3, 3, 1), conv_clamp=None, channels_last=False):
        super().__init__()
        self.resolution, self.up, self.use_noise, self.activation = resolution, up, use_noise, activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = np.sqrt(2)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:  # without noise inputs the layer has neither tensor
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode="const", gain=1):  # gain: only a 'resnet' block's conv1 passes one
        styles = self.affine(w)
        noise = self.noise_const * self.noise_strength if self.use_noise and noise_mode == "const" else None
        x = nv_modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                                resample_filter=self.resample_filter, flip_weight=(self.up == 1))
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=float(self.act_gain) * gain, clamp=act_clamp)


class ToRGBLayer(Persistent):
    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None, channels_last=False):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))

    def forward(self, x, w):
        styles = self.affine(w) * float(self.weight_gain)
        x = nv_modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(Persistent):
    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last, architecture="skip",
                 resample_filter=(1, 3, 3, 1), conv_clamp=None, use_fp16=False, **layer_kwargs):
        super().__init__()
        self.in_channels, self.w_dim, self.resolution, self.img_channels = in_channels, w_dim, resolution, img_channels
        self.is_last, self.architecture, self.use_fp16, self.channels_last = is_last, architecture, use_fp16, False
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp,
                                        **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp,
                                    **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1

    def forward(self, x, img, ws, noise_mode="const"):
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), noise_mode)
        else:
            x = self.conv0(x, next(w_iter), noise_mode)
            x = self.conv1(x, next(w_iter), noise_mode)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter))
        return x, (img.add_(y) if img is not None else y)


class SynthesisNetwork(Persistent):
    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512, num_fp16_res=0,
                 **block_kwargs):
        super().__init__()
        self.keep_init(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                       channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res, **block_kwargs)
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim, res, img_channels,
                                   is_last=(res == img_resolution), use_fp16=(res >= fp16_resolution), **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if res == img_resolution else 0)
            setattr(self, f"b{res}", block)

    def forward(self, ws, noise_mode="const"):
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), noise_mode)
            w_idx += block.num_conv
        return img


class Generator(Persistent):
    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={}, synthesis_kwargs={}):
        super().__init__()
        self.keep_init(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                       img_channels=img_channels, mapping_kwargs=EasyDict(mapping_kwargs),
                       synthesis_kwargs=EasyDict(synthesis_kwargs))
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mapping_kwargs)


def stub(class_name, **tensors):
    """Some other persistent network (a discriminator, StyleGAN3's parts): a class name and a few tensors."""
    module = type(class_name, (Persistent,), {})()
    for name, value in tensors.items():
        setattr(module, name, value if isinstance(value, nn.Module) else nn.Parameter(value))
    return module


SMALL = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3, mapping_kwargs=dict(num_layers=3),
             synthesis_kwargs=dict(channel_base=512, channel_max=32))  # widths 32, 32, 32, 16 for 4..32 px


@torch.no_grad()
def nvlabs_generator(seed=0, **changes):
    torch.manual_seed(seed)
    kwargs = {**SMALL, **changes}
    G = Generator(**kwargs).eval().requires_grad_(False)
    for name, p in G.named_parameters():  # a "trained" network: noise in use, biases away from their init
        if name.endswith("noise_strength"):
            p.fill_(0.3)
        elif name.endswith("bias"):
            p.add_(torch.randn_like(p) * 0.2)
    G.mapping.w_avg.copy_(torch.randn(G.w_dim))
    return G


def stylegan3_pickle(path):
    """What stylegan3's pickles hold: an alias-free G_ema (a SynthesisInput, layers named L<i>_<size>_<channels>)."""
    synthesis = stub("SynthesisNetwork", input=stub("SynthesisInput", freqs=torch.randn(32, 2)),
                     L0_36_32=stub("SynthesisLayer", weight=torch.randn(32, 32, 3, 3)))
    G3 = stub("Generator", synthesis=synthesis, mapping=stub("MappingNetwork", fc0=stub("FullyConnectedLayer")))
    G3.z_dim = G3.w_dim = 32
    G3.c_dim, G3.img_resolution, G3.img_channels = 0, 32, 3
    return dump_nvlabs(dict(G_ema=G3, G=G3, D=stub("Discriminator", weight=torch.randn(3))), path)


def nvlabs_pickle(path, G=None, **extra):
    """The dict NVlabs' training loop pickles: G, D, G_ema, augment_pipe, training_set_kwargs."""
    G = G if G is not None else nvlabs_generator()
    D = stub("Discriminator", b32=stub("DiscriminatorBlock", weight=torch.randn(16, 3, 1, 1)))
    data = dict(training_set_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path="ffhq.zip",
                                         resolution=G.img_resolution, use_labels=False, xflip=True),
                G=G, D=D, G_ema=G, augment_pipe=None, **extra)
    return dump_nvlabs(data, path)


# --- rosinality/stylegan2-pytorch model.py ---------------------------------------------------------------------

def r_upfirdn2d(input, kernel, up=1, down=1, pad=(0, 0)):
    """rosinality's op.upfirdn2d (its native CPU path, upfirdn2d_native)."""
    pad_x0, pad_x1, pad_y0, pad_y1 = pad[0], pad[1], pad[0], pad[1]
    _, channel, in_h, in_w = input.shape
    input = input.reshape(-1, in_h, in_w, 1)
    _, in_h, in_w, minor = input.shape
    kernel_h, kernel_w = kernel.shape
    out = input.view(-1, in_h, 1, in_w, 1, minor)
    out = F.pad(out, [0, 0, 0, up - 1, 0, 0, 0, up - 1])
    out = out.view(-1, in_h * up, in_w * up, minor)
    out = F.pad(out, [0, 0, max(pad_x0, 0), max(pad_x1, 0), max(pad_y0, 0), max(pad_y1, 0)])
    out = out[:, max(-pad_y0, 0):out.shape[1] - max(-pad_y1, 0), max(-pad_x0, 0):out.shape[2] - max(-pad_x1, 0), :]
    out = out.permute(0, 3, 1, 2)
    out = out.reshape([-1, 1, in_h * up + pad_y0 + pad_y1, in_w * up + pad_x0 + pad_x1])
    w = torch.flip(kernel, [0, 1]).view(1, 1, kernel_h, kernel_w)
    out = F.conv2d(out, w)
    out = out.reshape(-1, minor, in_h * up + pad_y0 + pad_y1 - kernel_h + 1, in_w * up + pad_x0 + pad_x1 - kernel_w + 1)
    out = out.permute(0, 2, 3, 1)[:, ::down, ::down, :]
    out_h = (in_h * up + pad_y0 + pad_y1 - kernel_h + down) // down
    out_w = (in_w * up + pad_x0 + pad_x1 - kernel_w + down) // down
    return out.view(-1, channel, out_h, out_w)


def make_kernel(k):
    k = torch.tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


class PixelNorm(nn.Module):
    def forward(self, input):
        return input * torch.rsqrt(torch.mean(input ** 2, dim=1, keepdim=True) + 1e-8)


class Upsample(nn.Module):
    def __init__(self, kernel, factor=2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * (factor ** 2))
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, input):
        return r_upfirdn2d(input, self.kernel, up=self.factor, down=1, pad=self.pad)


class Blur(nn.Module):
    def __init__(self, kernel, pad, upsample_factor=1):
        super().__init__()
        kernel = make_kernel(kernel)
        if upsample_factor > 1:
            kernel = kernel * (upsample_factor ** 2)
        self.register_buffer("kernel", kernel)
        self.pad = pad

    def forward(self, input):
        return r_upfirdn2d(input, self.kernel, pad=self.pad)


def fused_leaky_relu(input, bias, negative_slope=0.2, scale=2 ** 0.5):
    rest_dim = [1] * (input.ndim - bias.ndim - 1)
    return F.leaky_relu(input + bias.view(1, bias.shape[0], *rest_dim), negative_slope=0.2) * scale


class FusedLeakyReLU(nn.Module):
    def __init__(self, channel):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))

    def forward(self, input):
        return fused_leaky_relu(input, self.bias)


class EqualLinear(nn.Module):
    def __init__(self, in_dim, out_dim, bias=True, bias_init=0, lr_mul=1, activation=None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init))
        self.activation = activation
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, input):
        if self.activation:
            return fused_leaky_relu(F.linear(input, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(input, self.weight * self.scale, bias=self.bias * self.lr_mul)


class ModulatedConv2d(nn.Module):
    """rosinality's default (fused) path: per-sample weights, grouped (transposed) convolution."""

    def __init__(self, in_channel, out_channel, kernel_size, style_dim, demodulate=True, upsample=False,
                 blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.kernel_size, self.in_channel, self.out_channel = kernel_size, in_channel, out_channel
        self.upsample = upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self.demodulate = demodulate

    def forward(self, input, style):
        batch, in_channel, height, width = input.shape
        style = self.modulation(style).view(batch, 1, in_channel, 1, 1)
        weight = self.scale * self.weight * style
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(batch, self.out_channel, 1, 1, 1)
        weight = weight.view(batch * self.out_channel, in_channel, self.kernel_size, self.kernel_size)
        if self.upsample:
            input = input.view(1, batch * in_channel, height, width)
            weight = weight.view(batch, self.out_channel, in_channel, self.kernel_size, self.kernel_size)
            weight = weight.transpose(1, 2).reshape(batch * in_channel, self.out_channel, self.kernel_size,
                                                    self.kernel_size)
            out = F.conv_transpose2d(input, weight, padding=0, stride=2, groups=batch)
            _, _, height, width = out.shape
            return self.blur(out.view(batch, self.out_channel, height, width))
        input = input.view(1, batch * in_channel, height, width)
        out = F.conv2d(input, weight, padding=self.padding, groups=batch)
        _, _, height, width = out.shape
        return out.view(batch, self.out_channel, height, width)


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image, noise):
        return image + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channel, size=4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, input):
        return self.input.repeat(input.shape[0], 1, 1, 1)


class StyledConv(nn.Module):
    def __init__(self, in_channel, out_channel, kernel_size, style_dim, upsample=False, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, input, style, noise=None):
        return self.activate(self.noise(self.conv(input, style), noise=noise))


class ToRGB(nn.Module):
    def __init__(self, in_channel, style_dim, upsample=True, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, input, style, skip=None):
        out = self.conv(input, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class RosinalityGenerator(nn.Module):
    """model.py's Generator; ``channels`` replaces its fixed table {4: 512, ..., 64: 256 * channel_multiplier ...}."""

    def __init__(self, size, style_dim, n_mlp, channels, blur_kernel=(1, 3, 3, 1), lr_mlp=0.01):
        super().__init__()
        self.size, self.style_dim, self.channels = size, style_dim, channels
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp,
                                                              activation="fused_lrelu") for _ in range(n_mlp)])
        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(channels[4], style_dim, upsample=False)
        self.log_size = int(math.log(size, 2))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.convs, self.upsamples, self.to_rgbs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        in_channel = channels[4]
        for layer_idx in range(self.num_layers):
            res = (layer_idx + 5) // 2
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, 2**res, 2**res))
        for i in range(3, self.log_size + 1):
            out_channel = channels[2**i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim))
            in_channel = out_channel
        self.n_latent = self.log_size * 2 - 2

    def forward(self, styles, input_is_latent=False, noise=None):
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if noise is None:
            noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        latent = styles[0] if styles[0].ndim == 3 else styles[0].unsqueeze(1).repeat(1, self.n_latent, 1)
        out = self.input(latent)
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv1, conv2, noise1, noise2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2],
                                                        self.to_rgbs):
            out = conv1(out, latent[:, i], noise=noise1)
            out = conv2(out, latent[:, i + 1], noise=noise2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip, None


ROS_CHANNELS = {4: 32, 8: 32, 16: 16, 32: 8}


@torch.no_grad()
def rosinality_generator(seed=0):
    torch.manual_seed(seed)
    g = RosinalityGenerator(32, 32, 3, ROS_CHANNELS).eval().requires_grad_(False)
    for name, p in g.named_parameters():
        if name.endswith("noise.weight"):
            p.fill_(0.3)
        elif name.endswith("bias"):
            p.add_(torch.randn_like(p) * 0.2)
    return g


def rosinality_training_checkpoint(path, g_ema):
    """What rosinality's train.py saves: g, d, g_ema, both optimisers, args (a Namespace), ada_aug_p."""
    d = {"convs.0.0.weight": torch.randn(8, 3, 1, 1), "final_linear.1.bias": torch.zeros(1)}
    optim = torch.optim.Adam(g_ema.parameters(), lr=0.002, betas=(0.0, 0.99))
    torch.save({"g": g_ema.state_dict(), "d": d, "g_ema": g_ema.state_dict(), "g_optim": optim.state_dict(),
                "d_optim": {"state": {}, "param_groups": []},
                "args": argparse.Namespace(size=32, n_mlp=3, latent=32, channel_multiplier=2, lr=0.002),
                "ada_aug_p": 0.0}, path)
    return path


# --- helpers ---------------------------------------------------------------------------------------------------

@pytest.fixture
def test_registry(tmp_path, monkeypatch, registry_entry):
    """A registry with a 32 px NVlabs entry (nv32) and a 32 px rosinality one (ros32): ``make(url=...)``."""
    def make(url="http://127.0.0.1:9/net.pkl"):
        text = (registry_entry("nv32", "stylegan2-nvlabs", 32, "net.pkl", [url])
                + registry_entry("ros32", "stylegan2-rosinality", 32, "ckpt.pt", ["http://127.0.0.1:9/ckpt.pt"]))
        text = text.replace('licence = "test"', 'licence = "test"\nalignment = "ffhq"')
        path = tmp_path / "registry.toml"
        path.write_text(text)
        monkeypatch.setenv(weights_registry.REGISTRY_ENV, str(path))
        return path
    return make


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


def _convert(source, out, kind="stylegan2-nvlabs", **kw):
    return import_stylegan2(kind, source, out, metadata={"name": "t"}, samples=FIT, device="cpu", **kw)


def const_noise(generator, batch):
    """Each layer's stored noise map, as pulse's synthesis takes them: what NVlabs' noise_mode='const' adds."""
    return [layer.noise_const.expand(batch, 1, -1, -1) for block in generator.synthesis.blocks()
            for layer in ([block.conv1] if block.in_channels == 0 else [block.conv0, block.conv1])]


@torch.no_grad()
def clamped_shares(G, ws):
    """Per synthesis layer and toRGB of the reference network, the share of its outputs at +-conv_clamp."""
    shares, hooks = {}, []
    for name, module in G.synthesis.named_modules():
        if isinstance(module, (SynthesisLayer, ToRGBLayer)):
            hooks.append(module.register_forward_hook(
                lambda m, _, out, name=name: shares.update({name: (out.abs() == m.conv_clamp).float().mean().item()})))
    G.synthesis(ws, noise_mode="const")
    for hook in hooks:
        hook.remove()
    return shares


# --- the allow-list --------------------------------------------------------------------------------------------

class Evil:
    def __init__(self, target, how):
        self.target, self.how = target, how

    def __reduce__(self):
        if self.how == "system":
            return (os.system, (f"touch {self.target}",))
        return (open, (str(self.target), "w"))


@pytest.mark.parametrize("how", ["system", "open"])
def test_a_malicious_pickle_is_refused_without_running_anything(tmp_path, how):
    target = tmp_path / "pwned"
    G = nvlabs_generator()
    path = dump_nvlabs(dict(G=G, G_ema=G, training_set_kwargs=dict(path=Evil(target, how))), tmp_path / "evil.pkl")
    with pytest.raises(PulseError) as err:
        _convert(path, tmp_path / "out.pt")
    name = r"(os|posix)\.system" if how == "system" else r"(io|builtins)\.open"
    assert re.match(rf"{re.escape(str(path))}: refused: the pickle asks for {name}, which is not on pulse's "
                    r"allow-list .*nothing from the file was run$", one_line(err)), str(err.value)
    assert not target.exists() and not (tmp_path / "out.pt").exists()


def test_the_restricted_reader_rebuilds_tensors_arrays_and_containers_only(tmp_path):
    G = nvlabs_generator()
    data = load_restricted(nvlabs_pickle(tmp_path / "net.pkl", G))
    assert sorted(data) == ["D", "G", "G_ema", "augment_pipe", "training_set_kwargs"]
    stand_in = data["G_ema"]
    assert isinstance(stand_in, PersistentObject) and stand_in.class_name == "Generator"
    assert stand_in.module_src == MODULE_SRC  # kept as text
    assert stand_in.state["_init_kwargs"]["synthesis_kwargs"] == SMALL["synthesis_kwargs"]
    fc0 = stand_in.state["_modules"]["mapping"].state["_modules"]["fc0"].state
    assert isinstance(fc0["weight_gain"], np.floating) and fc0["bias_gain"] == 0.01
    assert torch.equal(fc0["_parameters"]["weight"], G.mapping.fc0.weight)
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules
    for protocol in (2, 4, 5):  # the same through older and newer pickle protocols
        path = dump_nvlabs(dict(G_ema=G), tmp_path / f"p{protocol}.pkl", protocol=protocol)
        again = load_restricted(path)["G_ema"].state["_modules"]["synthesis"].state["_modules"]["b8"]
        assert torch.equal(again.state["_modules"]["conv0"].state["_parameters"]["weight"], G.synthesis.b8.conv0.weight)
    torch.save({"net": nn.Linear(2, 2)}, tmp_path / "module.pt")  # a whole torch.nn module: inert state, tensors
    linear = load_restricted(tmp_path / "module.pt")["net"]
    assert type(linear).__name__ == "Linear" and linear._parameters["weight"].shape == (2, 2)


# --- NVlabs pickles --------------------------------------------------------------------------------------------

def test_nvlabs_pickle_converts_loads_and_renders_as_the_network_itself(tmp_path):
    G = nvlabs_generator()
    path = nvlabs_pickle(tmp_path / "network-snapshot-000100.pkl", G)
    report = _convert(path, tmp_path / "g.pt")
    assert "NVlabs StyleGAN2 G_ema: 32 px, 3 mapping layers (lr x0.01), widths 32,32,32,16" in report[0]
    loaded = load_generator(tmp_path / "g.pt")
    config = loaded.generator.config
    assert (config.resolution, config.style_dim, config.mapping_layers) == (32, 32, 3)
    assert config.channels == [32, 32, 32, 16]
    assert torch.equal(loaded.generator.mapping.w_avg, G.mapping.w_avg)
    with torch.no_grad():
        z = torch.randn(3, 32, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(loaded.generator.mapping(z), G.mapping(z)[:, 0], atol=1e-5)
        ws = torch.randn(3, loaded.generator.n_styles, 32, generator=torch.Generator().manual_seed(2))
        expected = G.synthesis(ws, noise_mode="const")
        got = loaded.synthesize(ws, const_noise(loaded.generator, 3))
        image = loaded.generator(z=z)  # renders from z with its own random noise
    assert expected.shape == got.shape == image.shape == (3, 3, 32, 32) and expected.std() > 0.1
    assert (got - expected).abs().max() < 1e-4
    assert torch.isfinite(image).all()


def test_nvlabs_clamp_and_fp16_settings_are_reported(tmp_path):
    G = nvlabs_generator(synthesis_kwargs=dict(channel_base=512, channel_max=32, num_fp16_res=2, conv_clamp=256))
    report = "\n".join(_convert(nvlabs_pickle(tmp_path / "net.pkl", G), tmp_path / "g.pt"))
    assert "conv_clamp 256 applied" in report and "blocks 16,32 px ran in float16" in report
    assert load_generator(tmp_path / "g.pt").generator.config.conv_clamp == 256


def test_nvlabs_conv_clamp_is_applied_where_nvidia_applies_it(tmp_path):
    G = nvlabs_generator(synthesis_kwargs=dict(channel_base=512, channel_max=32, conv_clamp=1))
    report = "\n".join(_convert(nvlabs_pickle(tmp_path / "net.pkl", G), tmp_path / "g.pt"))
    assert "conv_clamp 1 applied: every synthesis layer's and toRGB's output clamped to +-1" in report
    loaded = load_generator(tmp_path / "g.pt")
    assert loaded.generator.config.conv_clamp == 1.0
    unclamped = StyleGAN2Generator(replace(loaded.generator.config, conv_clamp=None)).eval()
    unclamped.load_state_dict(loaded.generator.state_dict())
    ws = torch.randn(3, loaded.generator.n_styles, 32, generator=torch.Generator().manual_seed(2))
    shares = clamped_shares(G, ws)
    with torch.no_grad():
        expected = G.synthesis(ws, noise_mode="const")
        noise = const_noise(loaded.generator, 3)
        got, without = loaded.synthesize(ws, noise), unclamped.synthesis(ws, noise)
    # the clamp bites in every synthesis layer and every toRGB, the first ones included
    assert len(shares) == 11 and min(shares.values()) > 0.01, shares
    assert (without - expected).abs().max() > 0.1
    assert (got - expected).abs().max() < 1e-5
    info = CliRunner().invoke(pulse_main, ["weights", "info", str(tmp_path / "g.pt")])
    assert info.exit_code == 0 and "layer outputs clamped to +-1 (conv_clamp)" in info.output, info.output


def test_nvlabs_generator_without_noise_inputs_converts_with_zero_noise_strength(tmp_path):
    G = nvlabs_generator(synthesis_kwargs=dict(channel_base=512, channel_max=32, use_noise=False))
    assert not any("noise" in name for name in G.state_dict())
    report = "\n".join(_convert(nvlabs_pickle(tmp_path / "net.pkl", G), tmp_path / "g.pt"))
    assert "7 synthesis layers without noise inputs (use_noise=False): converted with zero noise strength" in report
    loaded = load_generator(tmp_path / "g.pt")
    assert loaded.generator.noise_shapes() == [(4, 4), (8, 8), (8, 8), (16, 16), (16, 16), (32, 32), (32, 32)]
    ws = torch.randn(3, loaded.generator.n_styles, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = G.synthesis(ws, noise_mode="const")
        got = loaded.synthesize(ws, loaded.generator.random_noise(3, torch.Generator().manual_seed(3)))
    assert expected.std() > 0.1 and (got - expected).abs().max() < 1e-5
    # the search runs, and the noise maps it optimises change nothing: the same faces as with zero noise
    lr = resize((expected[:2] + 1) / 2, 8)
    trained, zero = (search(loaded, lr, seeds=[1, 2], options=SearchOptions(steps=5, noise=mode))
                     for mode in ("trainable", "zero"))
    assert all(torch.isfinite(r.image).all() for r in trained)
    assert all(torch.equal(a.image, b.image) for a, b in zip(trained, zero))


@pytest.mark.parametrize("case, message", [
    ("truncated", r"truncated: the file ends early"),
    ("not a pickle", r"not a readable pickle or PyTorch file"),
    ("D only", r"a discriminator only \(D\); a generator \(G_ema\) is needed"),
    ("conditional", r"a class-conditional generator \(c_dim=4\)"),
    ("StyleGAN3", r"a StyleGAN3 \(alias-free\) generator: pulse does not support StyleGAN3 yet"),
    ("resnet", r"a StyleGAN2 'resnet' generator; pulse's StyleGAN2 is the 'skip' architecture"),
    ("mapping width", r"mapping.fc0.weight has shape \(48, 32\), expected \(32, 32\)"),
    ("wrong shape", r"synthesis.b8.conv1.bias has shape \(5,\), expected \(32,\)"),
    ("filter", r"synthesis.b16.resample_filter is not the \[1, 3, 3, 1\] resampling filter"),
    ("rosinality", r"a rosinality/stylegan2-pytorch checkpoint \(g_ema state dict\), not an NVlabs pickle"),
    ("mixed clamps", r"synthesis layers with different conv_clamp values \(256, 8\); pulse applies one to every"),
])
def test_nvlabs_refusals_are_one_line_naming_the_file(tmp_path, case, message):
    path = tmp_path / "bad.pkl"
    if case == "truncated":
        data = nvlabs_pickle(tmp_path / "good.pkl").read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif case == "not a pickle":
        path.write_bytes(b"<html><body>Sign in to NGC</body></html>")
    elif case == "D only":
        dump_nvlabs(dict(D=stub("Discriminator", weight=torch.randn(3)), training_set_kwargs={}), path)
    elif case == "conditional":
        nvlabs_pickle(path, nvlabs_generator(c_dim=4))
    elif case == "StyleGAN3":
        stylegan3_pickle(path)
    elif case == "resnet":
        nvlabs_pickle(path, nvlabs_generator(synthesis_kwargs=dict(channel_base=512, channel_max=32,
                                                                   architecture="resnet")))
    elif case == "mapping width":
        nvlabs_pickle(path, nvlabs_generator(mapping_kwargs=dict(num_layers=3, layer_features=48)))
    elif case == "wrong shape":
        G = nvlabs_generator()
        G.synthesis.b8.conv1.bias = nn.Parameter(torch.zeros(5))
        nvlabs_pickle(path, G)
    elif case == "filter":
        G = nvlabs_generator()
        G.synthesis.b16.resample_filter.copy_(setup_filter([1, 2, 1, 0]))
        nvlabs_pickle(path, G)
    elif case == "rosinality":
        torch.save({"g_ema": rosinality_generator().state_dict()}, path)
    elif case == "mixed clamps":
        G = nvlabs_generator(synthesis_kwargs=dict(channel_base=512, channel_max=32, conv_clamp=256))
        G.synthesis.b8.torgb.conv_clamp = 8
        nvlabs_pickle(path, G)
    with pytest.raises(PulseError) as err:
        _convert(path, tmp_path / "out.pt")
    assert re.match(rf"{re.escape(str(path))}: .*{message}", one_line(err)), str(err.value)
    assert not (tmp_path / "out.pt").exists()


# --- rosinality checkpoints --------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["train.py", "convert_weight.py"])
def test_rosinality_checkpoint_renders_as_rosinality_model_to_1e4(tmp_path, layout):
    g = rosinality_generator()
    path = tmp_path / "ckpt.pt"
    latent_avg = torch.randn(32)
    if layout == "train.py":
        rosinality_training_checkpoint(path, g)
    else:
        torch.save({"g_ema": g.state_dict(), "latent_avg": latent_avg}, path)
    report = "\n".join(_convert(path, tmp_path / "g.pt", kind="stylegan2-rosinality"))
    assert "rosinality StyleGAN2 g_ema: 32 px, 3 mapping layers (lr x0.01, rosinality's default), widths 32,32,16,8" \
        in report
    assert ("no average w in the file: estimated" in report) == (layout == "train.py")
    loaded = load_generator(tmp_path / "g.pt")
    if layout == "convert_weight.py":
        assert torch.equal(loaded.generator.mapping.w_avg, latent_avg)
    batch = 3
    with torch.no_grad():
        z = torch.randn(batch, 32, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(loaded.generator.mapping(z), g.style(z), atol=1e-5)
        ws = torch.randn(batch, g.n_latent, 32, generator=torch.Generator().manual_seed(2))
        noise = loaded.generator.random_noise(batch, generator=torch.Generator().manual_seed(3))
        expected, _ = g([ws], input_is_latent=True, noise=noise)
        got = loaded.synthesize(ws, noise)
        expected_z, _ = g([z], noise=noise)  # mapping and synthesis together
        got_z = loaded.generator(z=z, noise=noise)
        # rosinality's fixed noise buffers became pulse's noise_const
        fixed = [getattr(g.noises, f"noise_{i}").expand(batch, -1, -1, -1) for i in range(g.num_layers)]
        pulse_fixed = [layer.noise_const.expand(batch, 1, -1, -1) for block in loaded.generator.synthesis.blocks()
                       for layer in ([block.conv1] if block.in_channels == 0 else [block.conv0, block.conv1])]
        assert all(torch.equal(a, b) for a, b in zip(fixed, pulse_fixed))
    assert expected.shape == got.shape == (batch, 3, 32, 32) and expected.std() > 0.1
    assert (got - expected).abs().max() < 1e-4 and (got_z - expected_z).abs().max() < 1e-4


@pytest.mark.parametrize("case, message", [
    ("truncated", r"truncated: the file ends early"),
    ("D only", r"a discriminator only \(d\); a generator \(g_ema\) is needed"),
    ("wrong shape", r"g_ema convs.2.conv.weight has shape \(1, 16, 31, 3, 3\), expected \(1, 16, 32, 3, 3\)"),
    ("unknown tensor", r"g_ema tensor 'convs.0.extra' is not part of rosinality's StyleGAN2 generator"),
    ("missing", r"g_ema lacks to_rgbs.1.bias"),
    ("blur", r"convs.0.conv.blur.kernel is not the \[1, 3, 3, 1\] resampling filter"),
    ("nvlabs", r"an NVlabs network pickle, not a rosinality checkpoint: use the kind stylegan2-nvlabs"),
    ("module", r"refused: the pickle asks for (os|posix)\.system"),
])
def test_rosinality_refusals_are_one_line_naming_the_file(tmp_path, case, message):
    path = tmp_path / "bad.pt"
    sd = rosinality_generator().state_dict()
    if case == "truncated":
        torch.save({"g_ema": sd}, tmp_path / "whole.pt")
        data = (tmp_path / "whole.pt").read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif case == "D only":
        torch.save({"d": {"convs.0.0.weight": torch.zeros(1)}}, path)
    elif case == "wrong shape":
        sd["convs.2.conv.weight"] = torch.zeros(1, 16, 31, 3, 3)
    elif case == "unknown tensor":
        sd["convs.0.extra"] = torch.zeros(1)
    elif case == "missing":
        del sd["to_rgbs.1.bias"]
    elif case == "blur":
        sd["convs.0.conv.blur.kernel"] = sd["convs.0.conv.blur.kernel"].flip(0) * 2
    elif case == "nvlabs":
        nvlabs_pickle(path)
    elif case == "module":
        torch.save({"g_ema": sd, "args": Evil(tmp_path / "pwned", "system")}, path)
    if not path.exists():
        torch.save({"g_ema": sd}, path)
    with pytest.raises(PulseError) as err:
        _convert(path, tmp_path / "out.pt", kind="stylegan2-rosinality")
    assert re.match(rf"{re.escape(str(path))}: .*{message}", one_line(err)), str(err.value)
    assert not (tmp_path / "out.pt").exists() and not (tmp_path / "pwned").exists()


# --- the registry, the cache and the command line ----------------------------------------------------------------

def test_pulse_weights_import_converts_and_a_bad_file_leaves_the_previous_one(tmp_path, test_registry, cache):
    test_registry()
    good = nvlabs_pickle(tmp_path / "network-snapshot.pkl")
    runner = CliRunner()
    result = runner.invoke(pulse_main, ["weights", "import", "nv32", str(good), "--cache-dir", str(cache),
                                        "--fit-samples", str(FIT), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "not hashed in the registry; judged by its tensors" in result.output
    assert "NVlabs StyleGAN2 G_ema" in result.output
    out = cache / "nv32" / "nv32.pt"
    assert f"wrote {out}" in result.output
    loaded = load_generator(resolve.resolve_generator("nv32", cache_dir=cache))
    meta = loaded.metadata
    assert (meta["resolution"], meta["alignment"], meta["licence"]) == (32, "ffhq", "test")
    assert meta["source"] == "NVlabs network pickle: network-snapshot.pkl (imported)" and "source_url" not in meta
    assert meta["source_sha256"] == hashlib.sha256(good.read_bytes()).hexdigest()
    assert loaded.generator(z=torch.randn(2, 32)).shape == (2, 3, 32, 32)
    before = out.read_bytes()

    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(good.read_bytes()[:5000])
    result = runner.invoke(pulse_main, ["weights", "import", "nv32", str(truncated), "--cache-dir", str(cache),
                                        "--fit-samples", str(FIT), "--device", "cpu"])
    assert result.exit_code == 2
    [error] = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert error.startswith(f"error: {truncated}: truncated")
    big = tmp_path / "net64.pkl"  # a good pickle of another generator (64 px) for a 32 px entry
    nvlabs_pickle(big, nvlabs_generator(img_resolution=64))
    with pytest.raises(PulseError, match=rf"^{re.escape(str(big))}: a 64 px generator, but nv32 is 32 px$"):
        resolve.import_files("nv32", [big], cache_dir=cache, fit_samples=FIT, device="cpu")
    assert out.read_bytes() == before  # the previous good file, untouched
    assert [s.state for s in store.verify("nv32", cache_dir=cache)] == ["ok"]
    assert sorted(p.name for p in out.parent.iterdir()) == [".nv32.pt.lock", "nv32.pt", "nv32.pt.sha256"]

    ros = tmp_path / "ckpt.pt"  # the rosinality kind the same way
    torch.save({"g_ema": rosinality_generator().state_dict()}, ros)
    result = runner.invoke(pulse_main, ["weights", "import", "ros32", str(ros), "--cache-dir", str(cache),
                                        "--fit-samples", str(FIT), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert load_generator(cache / "ros32" / "ros32.pt").metadata["source"].startswith("rosinality")


def test_download_is_verified_converted_once_and_cached(tmp_path, server, cache, test_registry, fast_retry,
                                                        file_route):
    data = nvlabs_pickle(tmp_path / "net.pkl").read_bytes()
    server.routes["/net.pkl"] = file_route(data[:len(data) // 3])  # the server's copy is cut short
    test_registry(url=f"{server.url}/net.pkl")
    with pytest.raises(PulseError, match="no sha256 for net.pkl.*--no-verify"):
        resolve.resolve_generator("nv32", cache_dir=cache)
    get = dict(cache_dir=cache, trust_unverified=True, retry=fast_retry, progress=False, fit_samples=FIT, device="cpu")
    with pytest.raises(PulseError) as err:
        resolve.fetch("nv32", **get)
    source = (cache / "nv32" / "net.pkl").resolve()
    assert one_line(err).startswith(f"{source}: truncated") and "(deleted the downloaded net.pkl and its pin)" in \
        str(err.value)
    left = [p.name for p in (cache / "nv32").iterdir() if not p.name.endswith(".lock")]
    assert left == []  # neither a half-converted file nor the bad download (nor its pin)

    server.routes["/net.pkl"] = file_route(data)
    path = resolve.fetch("nv32", **get)
    assert path == (cache / "nv32" / "nv32.pt").resolve()
    assert [p for p, _, _ in server.log] == ["/net.pkl", "/net.pkl"]
    stamp = path.stat().st_mtime_ns
    assert resolve.resolve_generator("nv32", cache_dir=cache) == path
    assert resolve.fetch("nv32", **get) == path
    assert len(server.log) == 2 and path.stat().st_mtime_ns == stamp  # neither downloaded nor converted again
    assert [s.state for s in store.verify("nv32", cache_dir=cache)] == ["ok", "ok"]  # the pinned pickle, the file
    loaded = load_generator(path)
    assert loaded.generator(z=torch.randn(1, 32)).shape == (1, 3, 32, 32)
    assert loaded.metadata["source"] == "NVlabs network pickle: net.pkl (downloaded)"
    assert loaded.metadata["source_url"] == f"{server.url}/net.pkl" and loaded.metadata["alignment"] == "ffhq"


def test_a_stylegan3_pickle_is_refused_in_one_line_whatever_it_is_imported_as(tmp_path, test_registry, cache):
    """No StyleGAN3 class in pulse: its pickles are refused, named as StyleGAN3, with nothing left in the cache."""
    test_registry()
    path = stylegan3_pickle(tmp_path / "stylegan3-r-ffhq-1024x1024.pkl")
    result = CliRunner().invoke(pulse_main, ["weights", "import", "nv32", str(path), "--cache-dir", str(cache),
                                             "--fit-samples", str(FIT), "--device", "cpu"])
    assert result.exit_code == 2
    [error] = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert error == (f"error: {path}: a StyleGAN3 (alias-free) generator: pulse does not support StyleGAN3 yet "
                     f"(StyleGAN2 pickles only)")
    assert not (cache / "nv32" / "nv32.pt").exists()
    with pytest.raises(PulseError) as err:  # offered as a TensorFlow pickle: named as NVlabs' PyTorch format
        import_tf("stylegan2-tf", path, tmp_path / "out.pt", metadata={}, samples=FIT, device="cpu")
    assert one_line(err) == (f"{path}: an NVlabs PyTorch network pickle, not a TensorFlow one: use the kind "
                             f"stylegan2-nvlabs")
    assert not (tmp_path / "out.pt").exists()


def test_shipped_registry_names_nvidias_ffhq_stylegan2_pickles():
    models = weights_registry.load_registry()
    for res in (256, 512, 1024):
        model = models[f"stylegan2-ffhq-{res}"]
        [wfile] = model.files
        assert (model.kind, model.resolution, model.alignment) == ("stylegan2-nvlabs", res, "ffhq")
        assert wfile.urls == (f"https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
                              f"stylegan2-ffhq-{res}x{res}.pkl",)
        assert wfile.sha256 is None and "CC BY-NC-SA 4.0" in model.licence  # pinned on first use
        assert model.kind in weights_registry.GENERATOR_KINDS
