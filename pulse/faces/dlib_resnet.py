"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) read without dlib, as a torch module.

dlib's Python binding gives the 128-d descriptor of a 150 px chip, but no gradients, no batches on a GPU and no
intermediate layers; pulse wants all three (identity as a loss, the multi-scale maps as a frozen discriminator
trunk). So the file is read here, byte for byte as dlib's ``deserialize`` would, into the network of dlib's
``examples/dnn_face_recognition_ex.cpp``.

The format (dlib/serialize.h, dlib/dnn/{core,layers,input,loss,tensor}.h):

- integers: a control byte (bit 7: negative, low 4 bits: byte count) and that many little-endian bytes;
  strings: a length, then the bytes; bools: the ASCII characters '1' / '0';
- scalar floats and doubles: two integers, mantissa then exponent (value = mantissa * 2**exponent; exponents
  32000-32002 mean inf, -inf, NaN). serialize.h's comment says exponent first; its code writes the mantissa first;
- tensors: version 2, the dims (n, k, rows, cols), then raw little-endian float32 (not the float encoding);
  alias tensors (a layer's view into its one parameter tensor): version 1 and the dims only.
- the network: the loss layer (version, details), then each wrapper writes its version and then its whole
  subnetwork before its own details, so every version from the loss to the input comes first and the layer
  details follow from the input up. Tags and skips both write only "version 1" and no tag id, and
  ``add_prev_`` does not say which tag it adds: where a skip connection starts and ends is in dlib's C++ type,
  not in the file. It is recovered here by matching the layer sequence to dlib's residual blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PulseError
from ..files import installed_package_file

FACE_PACKAGE, RECOGNITION_MODEL = "face_recognition_models", "dlib_face_recognition_resnet_model_v1.dat"


CHIP_SIZE = 150  # dlib.get_face_chip's default, and what input_rgb_image_sized<150> demands


# dlib's residual blocks as layer sequences from the input up ("tag" is a tag or a skip: the file cannot tell):
# residual      = add_prev1<block<tag1<x>>>, then relu
# residual_down = add_prev2<avg_pool<skip1<tag2<block<stride 2, tag1<x>>>>>>, then relu
# block         = affine<con<relu<affine<con<x>>>>>
_BLOCK = ["con", "affine", "relu", "con", "affine"]
_RESIDUAL = ["tag", *_BLOCK, "add_prev", "relu"]
_RESIDUAL_DOWN = ["tag", *_BLOCK, "tag", "tag", "avg_pool", "add_prev", "relu"]
_STEM = ["con", "affine", "relu", "max_pool"]
_HEAD = ["avg_pool", "fc"]


class _FormatError(Exception):
    """Something in the bytes that dlib's deserialize would reject; the loader turns it into a PulseError."""


@dataclass
class DlibLayer:
    """One layer's details as stored: ``kind`` is dlib's layer without version suffix ('con', 'affine', 'relu',
    'max_pool', 'avg_pool', 'add_prev', 'fc', or 'tag' for a tag or skip layer) and ``values`` its settings
    and float32 arrays."""

    kind: str
    values: dict = field(default_factory=dict)


@dataclass
class DlibNetFile:
    """What a dlib metric-learning network file holds, layers from the input up."""

    loss: str
    margin: float
    distance_threshold: float
    input_mean: tuple[float, float, float]  # subtracted from 0-255 RGB before dividing by 256
    input_size: tuple[int, int] | None  # (rows, cols) for input_rgb_image_sized, None for input_rgb_image
    layers: list[DlibLayer]


class _Reader:
    """dlib's primitive encodings over the file's bytes."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, count: int, what: str) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise _FormatError(f"file ends inside {what} at byte {self.pos}")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def int(self, what: str = "an integer") -> int:
        control = self.take(1, what)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise _FormatError(f"bad integer control byte 0x{control:02x} at byte {self.pos - 1} ({what})")
        value = int.from_bytes(self.take(size, what), "little")
        return -value if control & 0x80 else value

    def peek_int(self, what: str) -> int:
        pos = self.pos
        try:
            return self.int(what)
        finally:
            self.pos = pos

    def float(self, what: str = "a float") -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise _FormatError(f"old ASCII float encoding at byte {self.pos} ({what})")
        mantissa, exponent = self.int(what), self.int(what)
        if exponent >= 32000:
            return {32000: math.inf, 32001: -math.inf}.get(exponent, math.nan)
        return math.ldexp(mantissa, exponent)

    def bool(self, what: str = "a bool") -> bool:
        char = self.take(1, what)
        if char not in (b"0", b"1"):
            raise _FormatError(f"bad bool {char!r} at byte {self.pos - 1} ({what})")
        return char == b"1"

    def string(self, what: str = "a string") -> str:
        size = self.int(what)
        return self.take(size, what).decode("latin-1")

    def version(self, what: str, allowed: tuple[int, ...]) -> int:
        version = self.int(what)
        if version not in allowed:
            raise _FormatError(f"{what} version {version} at byte {self.pos}, expected one of {allowed}")
        return version

    def dims(self, what: str) -> tuple[int, int, int, int]:
        dims = tuple(self.int(what) for _ in range(4))
        if min(dims) < 0:
            raise _FormatError(f"negative size {dims} in {what}")
        return dims

    def tensor(self, what: str = "a tensor") -> np.ndarray:
        """resizable_tensor: version 2, (n, k, nr, nc), float32 little-endian."""
        self.version(what, (2,))
        dims = self.dims(what)
        count = math.prod(dims)
        raw = self.take(4 * count, what)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

    def alias(self, what: str = "an alias tensor") -> tuple[int, int, int, int]:
        self.version(what, (1,))
        return self.dims(what)


def _slice(params: np.ndarray, offset: int, dims, what: str) -> np.ndarray:
    """An alias tensor's view into a layer's parameter tensor (dlib keeps e.g. filters then biases in one)."""
    flat = params.reshape(-1)
    size = math.prod(dims)
    if offset + size > flat.size:
        raise _FormatError(f"{what}: {dims} at offset {offset} does not fit in {flat.size} parameters")
    return flat[offset:offset + size].reshape(dims)


def _read_details(r: _Reader) -> DlibLayer:
    name = r.string("a layer name")
    if name in ("con_4", "con_5", "con_6"):
        params = r.tensor(name)
        filters, rows, cols = r.int(name), r.int(name), r.int(name)
        stride, padding = (r.int(name), r.int(name)), (r.int(name), r.int(name))
        weight_dims, bias_dims = r.alias(name), r.alias(name)
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float(name)
        use_bias = r.bool(name) if name != "con_4" else True
        use_relu = r.bool(name) if name == "con_6" else False
        weight = _slice(params, 0, weight_dims, name)
        bias = _slice(params, weight.size, bias_dims, name).reshape(-1) if use_bias else None
        if weight_dims[0] != filters or weight_dims[2:] != (rows, cols) or (use_bias and bias.size != filters):
            raise _FormatError(f"{name}: {filters} filters of {rows}x{cols}, weights {weight_dims}, biases {bias_dims}")
        return DlibLayer("con", {"weight": weight, "bias": bias, "stride": stride, "padding": padding,
                                 "relu": use_relu})
    if name == "affine_":
        params = r.tensor(name)
        gamma_dims, beta_dims = r.alias(name), r.alias(name)
        r.int(name)  # mode (conv: per channel, fc: per element) is also what gamma's dims say
        gamma = _slice(params, 0, gamma_dims, name)
        beta = _slice(params, gamma.size, beta_dims, name)
        return DlibLayer("affine", {"gamma": gamma, "beta": beta})
    if name in ("relu_", "add_prev_"):
        return DlibLayer(name[:-1])
    if name in ("max_pool_2", "avg_pool_2"):
        window = (r.int(name), r.int(name))  # 0: the whole map
        stride, padding = (r.int(name), r.int(name)), (r.int(name), r.int(name))
        return DlibLayer(name[:-2], {"window": window, "stride": stride, "padding": padding})
    if name == "fc_2":
        outputs, inputs = r.int(name), r.int(name)
        params = r.tensor(name)
        weight_dims, bias_dims = r.alias(name), r.alias(name)
        r.int(name)  # bias mode, also said by the biases' size
        for _ in range(4):
            r.float(name)
        weight = _slice(params, 0, weight_dims, name).reshape(inputs, outputs)  # y = x @ weight
        bias = _slice(params, weight.size, bias_dims, name).reshape(-1) if math.prod(bias_dims) else None
        if bias is not None and bias.size != outputs:
            raise _FormatError(f"{name}: {outputs} outputs but {bias.size} biases")
        return DlibLayer("fc", {"weight": weight, "bias": bias})
    raise _FormatError(f"layer type {name!r} is not one the face-recognition ResNet uses")


def _read_input(r: _Reader):
    name = r.string("the input layer")
    if name not in ("input_rgb_image_sized", "input_rgb_image"):
        raise _FormatError(f"input layer {name!r}, expected input_rgb_image_sized")
    mean = tuple(r.float(name) for _ in range(3))
    size = (r.int(name), r.int(name)) if name == "input_rgb_image_sized" else None
    return mean, size


def _skip_layer_state(r: _Reader, tensors: int) -> None:
    """What add_layer keeps besides the details: 3 bools and training buffers (empty in a cleaned net)."""
    for _ in range(3):
        r.bool("a layer's flags")
    for _ in range(tensors):
        r.tensor("a layer's training buffer")


def parse_dlib_net(data: bytes) -> DlibNetFile:
    """A dlib metric-learning network from its serialised bytes; raises _FormatError on anything unexpected."""
    r = _Reader(data)
    r.version("the loss layer", (1,))
    loss = r.string("the loss layer")
    if loss not in ("loss_metric_", "loss_metric_2"):
        raise _FormatError(f"loss layer {loss!r}: not a face-recognition (loss_metric) network")
    # the first version had them hard coded (dlib's loss.h reads it as margin 0.1, threshold 0.75)
    margin, threshold = (r.float(loss), r.float(loss)) if loss == "loss_metric_2" else (0.1, 0.75)

    # add_layer is version 2 (version 3, or 2 in older files, when it sits on the input layer); tag and skip
    # layers are version 1. A string length (> 3) after a version means the next thing is the input layer.
    versions = []
    while True:
        versions.append(r.version("a layer", (1, 2, 3)))
        if r.peek_int("the chain of layers") > 3:
            break
        if len(versions) > 100_000:
            raise _FormatError("no input layer")
    bottom = versions.pop()
    mean, size = _read_input(r)
    layers = []
    if r.peek_int("the first layer") > 3:  # add_layer: details, flags, x_grad, output, grad_final, expansion factor
        layers.append(_read_details(r))
        _skip_layer_state(r, 3)
        if bottom >= 3:
            r.int("the sample expansion factor")
    else:  # a tag on the input: output, grad_final, a flag, expansion factor
        layers.append(DlibLayer("tag"))
        for _ in range(2):
            r.tensor("the input tag's buffers")
        r.bool("the input tag's flag")
        if bottom >= 2:
            r.int("the sample expansion factor")
    for version in reversed(versions):
        if version == 1:
            layers.append(DlibLayer("tag"))
        elif version == 2:
            layers.append(_read_details(r))
            _skip_layer_state(r, 3)  # x_grad, cached output, params_grad
        else:
            raise _FormatError(f"add_layer version {version} above the input layer")
    if r.pos != len(data):
        raise _FormatError(f"{len(data) - r.pos} bytes after the network")
    return DlibNetFile(loss, margin, threshold, mean, size, layers)


# --- the network ---------------------------------------------------------------------------------------------

class _Conv(nn.Module):
    """dlib's con_ (cross-correlation, symmetric zero padding, floor output size) followed by affine_."""

    def __init__(self, con: DlibLayer, affine: DlibLayer):
        super().__init__()
        weight = con.values["weight"]
        self.conv = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2:], stride=con.values["stride"],
                              padding=con.values["padding"], bias=con.values["bias"] is not None)
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(weight))
            if self.conv.bias is not None:
                self.conv.bias.copy_(torch.from_numpy(con.values["bias"]))
        self.relu_inside = con.values["relu"]
        gamma, beta = affine.values["gamma"], affine.values["beta"]
        if gamma.shape != beta.shape or gamma.shape[1] != weight.shape[0]:
            raise _FormatError(f"affine of {gamma.shape[1]} channels after a conv of {weight.shape[0]}")
        # affine_ is batch norm frozen into y = gamma * x + beta (per channel: dims (1, k, 1, 1))
        self.gamma = nn.Parameter(torch.from_numpy(gamma.copy()))
        self.beta = nn.Parameter(torch.from_numpy(beta.copy()))

    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def forward(self, x):
        x = self.conv(x)
        if self.relu_inside:
            x = F.relu(x)
        return x * self.gamma + self.beta


def _pool(x: torch.Tensor, kind: str, window, stride, padding) -> torch.Tensor:
    """dlib's max_pool_ / avg_pool_: a window of 0 means the whole map; padding is never part of a max or mean."""
    window = tuple(w or s for w, s in zip(window, x.shape[-2:], strict=True))
    if kind == "max_pool":
        return F.max_pool2d(x, window, stride, padding)
    return F.avg_pool2d(x, window, stride, padding, count_include_pad=False)


def add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev_ (tt::add): tensors of different shapes are summed as if zero-padded at the end to the
    larger of each dimension. So a down block's shortcut (fewer channels, and in the 8 -> 4 px stage a larger map
    than its stride-2 branch) is the average-pooled input with zero channels, not a projection."""
    if a.shape == b.shape:
        return a + b
    shape = [max(p, q) for p, q in zip(a.shape, b.shape, strict=True)]

    def grow(t):
        return F.pad(t, (0, shape[3] - t.shape[3], 0, shape[2] - t.shape[2], 0, shape[1] - t.shape[1]))
    return grow(a) + grow(b)


class _Residual(nn.Module):
    """relu(add_prev(shortcut(x), affine(con(relu(affine(con(x))))))): the shortcut is x, or for a down block
    x average-pooled to the strided branch's resolution."""

    def __init__(self, layers: list[DlibLayer], down: bool):
        super().__init__()
        self.conv1, self.conv2 = _Conv(layers[1], layers[2]), _Conv(layers[4], layers[5])
        if self.conv2.in_channels != self.conv1.out_channels:
            raise _FormatError(f"a block's second conv takes {self.conv2.in_channels} channels, the first gives "
                               f"{self.conv1.out_channels}")
        self.down = down
        self.pool = dict(layers[8].values) if down else None

    def forward(self, x):
        y = self.conv2(F.relu(self.conv1(x)))
        shortcut = _pool(x, "avg_pool", **self.pool) if self.down else x
        return F.relu(add_prev(shortcut, y))


class DlibFaceResNet(nn.Module):
    """dlib's 29-conv face-recognition ResNet, weights from its .dat file.

    Input: float (B, 3, 150, 150) RGB chips in [0, 255] cut as ``dlib.get_face_chip`` cuts them (size 150,
    padding 0.25), i.e. dlib's own pixel values; uint8 tensors are accepted too. ``forward`` gives dlib's
    128-d descriptor (not normalised: dlib compares descriptors by Euclidean distance, 0.6 = same person).
    ``features`` gives the map at the end of each resolution stage, for uses that want more than identity.
    The net is fully convolutional up to its global average pool, so other chip sizes run, but only 150 px
    chips give dlib's descriptors.
    """

    def __init__(self, net: DlibNetFile):
        super().__init__()
        self.register_buffer("mean", torch.tensor(net.input_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.input_size = net.input_size
        self.distance_threshold = net.distance_threshold
        layers, kinds = net.layers, [layer.kind for layer in net.layers]
        if kinds[:4] != _STEM:
            raise _FormatError(f"network starts with {kinds[:4]}, expected dlib's ResNet stem {_STEM}")
        self.stem = _Conv(layers[0], layers[1])
        if self.stem.in_channels != 3:
            raise _FormatError(f"first conv takes {self.stem.in_channels} channels, not RGB")
        self.stem_pool = dict(layers[3].values)
        stages, i, channels = [[]], 4, self.stem.out_channels
        while kinds[i:i + 1] == ["tag"]:
            down = kinds[i:i + len(_RESIDUAL_DOWN)] == _RESIDUAL_DOWN
            if not down and kinds[i:i + len(_RESIDUAL)] != _RESIDUAL:
                raise _FormatError(f"layers {i}..: {kinds[i:i + len(_RESIDUAL_DOWN)]} is not a dlib residual block")
            block = _Residual(layers[i:i + (len(_RESIDUAL_DOWN) if down else len(_RESIDUAL))], down)
            if block.conv1.in_channels != channels:
                raise _FormatError(f"layer {i + 1}: a conv of {block.conv1.in_channels} input channels after "
                                   f"{channels} channels")
            if down and stages[-1]:
                stages.append([])
            stages[-1].append(block)
            channels = max(channels, block.conv2.out_channels)
            i += len(_RESIDUAL_DOWN) if down else len(_RESIDUAL)
        if kinds[i:] != _HEAD or layers[i].values["window"] != (0, 0):
            raise _FormatError(f"network ends with {kinds[i:]}, expected a global average pool and a fc layer")
        self.stages = nn.ModuleList(nn.Sequential(*blocks) for blocks in stages)
        weight, bias = layers[i + 1].values["weight"], layers[i + 1].values["bias"]
        if weight.shape[0] != channels:
            raise _FormatError(f"fc layer takes {weight.shape[0]} inputs, the trunk gives {channels}")
        self.fc = nn.Linear(weight.shape[0], weight.shape[1], bias=bias is not None)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(weight.T.copy()))
            if bias is not None:
                self.fc.bias.copy_(torch.from_numpy(bias))

    def _check(self, chips: torch.Tensor) -> torch.Tensor:
        if chips.dim() != 4 or chips.shape[1] != 3:
            raise PulseError(f"dlib's face ResNet takes (B, 3, H, W) RGB chips, got {tuple(chips.shape)}")
        return chips if chips.is_floating_point() else chips.float()

    def features(self, chips: torch.Tensor) -> list[torch.Tensor]:
        """The map at the end of each resolution stage, finest first (35, 17, 8, 4 and 2 px for a 150 px chip):
        the multi-scale trunk, without the pool and fc that reduce it to identity."""
        x = (self._check(chips) - self.mean) / 256.0  # input_rgb_image_sized: (pixel - average) / 256
        x = F.relu(self.stem(x))
        x = _pool(x, "max_pool", **self.stem_pool)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def embed(self, last_map: torch.Tensor) -> torch.Tensor:
        """The descriptor from the last stage's map: global average pool, then the fc layer (no bias in dlib's)."""
        return self.fc(last_map.mean((2, 3)))

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        """(B, 128) descriptors, as dlib.face_recognition_model_v1.compute_face_descriptor(chip) gives them."""
        return self.embed(self.features(chips)[-1])


def default_model_path() -> Path:
    """The .dat shipped in the face-recognition-models wheel (found without importing the package)."""
    path = installed_package_file(FACE_PACKAGE, f"models/{RECOGNITION_MODEL}")
    if path is None:
        raise PulseError(f"dlib's face ResNet needs {RECOGNITION_MODEL} from face-recognition-models: "
                         'pip install "pulse[eval]"')
    return path


def read_dlib_net(path) -> DlibNetFile:
    """Read a dlib metric-learning network file; a PulseError line naming it if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise PulseError(f"{path}: dlib face-recognition network not found")
    try:
        return parse_dlib_net(path.read_bytes())
    except _FormatError as err:
        raise PulseError(f"{path}: not a readable dlib face-recognition network ({err})") from None


def load_dlib_face_resnet(path=None) -> DlibFaceResNet:
    """dlib's face ResNet from ``path`` (default: the face-recognition-models file), in eval mode and frozen."""
    path = Path(path) if path is not None else default_model_path()
    net = read_dlib_net(path)
    try:
        model = DlibFaceResNet(net)
    except _FormatError as err:
        raise PulseError(f"{path}: not dlib's face-recognition ResNet ({err})") from None
    return model.eval().requires_grad_(False)
