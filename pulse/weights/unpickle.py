"""Reading other people's pickles without running them: tensors, arrays and plain containers only.

A pickle is a small program: every object it names by module and name (a "global") is imported and called
while loading, which is how ``os.system`` ends up in malicious files. ``RestrictedUnpickler.find_class``
answers only from an allow-list: what rebuilds tensors (torch's own ``_rebuild_tensor_v2`` and friends, fed
with storages), numpy arrays and scalars, and plain containers. Classes of NVlabs' networks are not imported:
``torch_utils.persistence`` pickles each object as ``_reconstruct_persistent_obj(meta)`` where ``meta`` holds
the source code of its module and the object's ``__dict__``; here that call makes an inert ``PersistentObject``
that keeps the state and never executes the source. ``dnnlib``'s ``EasyDict``, ``argparse.Namespace`` and
``torch.nn`` modules become plain stand-ins that only hold their state. NVIDIA's TensorFlow releases pickle
``dnnlib.tflib.network.Network`` objects whose own unpickling ``exec``s the module source they carry; here each
becomes an inert ``TFNetwork`` holding that state (variables as numpy arrays, the source as text). Any other
global is refused (``RefusedGlobal``) before it is imported.

NVlabs' ``.pkl`` files are plain ``pickle.dump`` output in which each tensor storage is a nested legacy
``torch.save`` stream (``torch.storage._load_from_bytes``); files written by ``torch.save`` (rosinality's
checkpoints) are zip archives whose storages are persistent ids. Both go through torch's own loader with this
unpickler as its pickle module, so every object in them passes the same allow-list.
"""

from __future__ import annotations

import codecs
import collections
import io
import pickle
import types
import zipfile
from pathlib import Path

import numpy as np
import torch

try:  # numpy 2 moved its internals to numpy._core; pickles written by numpy 1 name numpy.core
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # numpy 1
    from numpy.core import multiarray as _np_multiarray


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list; nothing of it was imported or called."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name
        super().__init__(f"refused global {module}.{name}")


class PersistentObject:
    """What ``torch_utils.persistence._reconstruct_persistent_obj`` would have built, minus the code: the class
    name and the object's ``__dict__`` (``state``). The module source it carries is kept as text, never run."""

    def __init__(self, meta):
        if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
            raise pickle.UnpicklingError("malformed torch_utils.persistence object")
        self.class_name = str(meta.get("class_name"))
        self.version = meta.get("version")
        self.state = meta["state"]
        self.module_src = meta.get("module_src") if isinstance(meta.get("module_src"), str) else ""

    def __repr__(self):
        return f"<persistent {self.class_name}>"


class TFNetwork:
    """What ``dnnlib.tflib.network.Network.__setstate__`` receives, kept instead of rebuilt: ``name``,
    ``static_kwargs`` (the build function's options), ``components`` (sub-networks, TFNetworks too),
    ``variables`` ((name, numpy array) pairs) and ``build_func_name``. ``build_module_src`` is kept as text:
    NVIDIA's loader executes it, pulse never does."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __setstate__(self, state):
        if not isinstance(state, dict) or not isinstance(state.get("variables"), list) \
                or not isinstance(state.get("static_kwargs", {}), dict) \
                or not isinstance(state.get("components", {}), dict):
            raise pickle.UnpicklingError("malformed dnnlib.tflib.network.Network state")
        self.version = state.get("version")
        self.name = str(state.get("name"))
        self.static_kwargs = dict(state.get("static_kwargs") or {})
        self.components = dict(state.get("components") or {})
        self.variables = list(state["variables"])
        self.build_func_name = str(state.get("build_func_name"))
        source = state.get("build_module_src")
        self.build_module_src = source if isinstance(source, str) else ""

    def __repr__(self):
        return f"<TensorFlow network {self.name}>"


class StateStub:
    """An inert object of a known plain class (``argparse.Namespace``, a ``torch.nn`` module): keeps ``__dict__``."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{type(self).__name__}: unexpected state {type(state).__name__}")
        self.__dict__.update(state)


class Namespace(StateStub):
    """Stand-in for ``argparse.Namespace`` (rosinality's training checkpoints keep their ``args``)."""


class TorchModule(StateStub):
    """Stand-in for a ``torch.nn`` module class: its ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``...)."""

    class_name = "Module"

    def __repr__(self):
        return f"<torch.nn {self.class_name}>"


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a dict (whose keys can also be read as attributes)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _load_storage_from_bytes(data):
    """``torch.storage._load_from_bytes``: a storage pickled inside a plain pickle (a legacy torch.save stream)."""
    if not isinstance(data, (bytes, bytearray)) or not data.startswith((b"\x80", b"PK\x03\x04")):
        # torch writes these with pickle protocol 2 (b"\x80"); refusing anything else also keeps out torch's
        # ancient tar format, which would be unpacked into a temporary folder
        raise pickle.UnpicklingError("torch storage: expected a torch.save stream")
    return torch.load(io.BytesIO(data), map_location="cpu", pickle_module=RESTRICTED, weights_only=False)


def _rebuild_from_type_v2(func, new_type, args, state):
    """torch's ``_rebuild_from_type_v2`` for plain tensors and parameters only (no other tensor subclasses)."""
    if new_type not in (torch.Tensor, torch.nn.Parameter) or func not in _TENSOR_REBUILDS.values():
        raise pickle.UnpicklingError(f"refused tensor subclass {getattr(new_type, '__name__', new_type)}")
    return torch._tensor._rebuild_from_type_v2(func, new_type, args, state)


_TENSOR_REBUILDS = {name: getattr(torch._utils, name) for name in (
    "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
    "_rebuild_parameter_with_state") if hasattr(torch._utils, name)}

_DTYPES = {str(t).removeprefix("torch."): t for t in vars(torch).values() if isinstance(t, torch.dtype)}

ALLOWED: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles (numpy array data)
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistentObject,
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("argparse", "Namespace"): Namespace,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(module, "_reconstruct"): _np_multiarray._reconstruct for module in ("numpy.core.multiarray",
                                                                            "numpy._core.multiarray")},
    **{(module, "scalar"): _np_multiarray.scalar for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{("torch._utils", name): function for name, function in _TENSOR_REBUILDS.items()},
    **{("torch", name): dtype for name, dtype in _DTYPES.items()},
}
# numpy's dtype classes (numpy.dtypes.Float32DType ...) appear in pickles of numpy >= 1.25
ALLOWED.update({("numpy.dtypes", name): getattr(np.dtypes, name) for name in dir(getattr(np, "dtypes", None))
                if name.endswith("DType")})

_PY2_NAMES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # protocol-2 pickles written with fix_imports
_MODULE_STUBS: dict[str, type] = {}


def _torch_module_stub(module: str, name: str) -> type:
    """One stand-in class per ``torch.nn.modules`` class name (state only; ``class_name`` says which it was)."""
    key = f"{module}.{name}"
    if key not in _MODULE_STUBS:
        _MODULE_STUBS[key] = type(name, (TorchModule,), {"class_name": name, "__module__": __name__})
    return _MODULE_STUBS[key]


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves globals from ``ALLOWED`` only; anything else raises ``RefusedGlobal``."""

    def find_class(self, module, name):
        module = _PY2_NAMES.get(module, module)
        found = ALLOWED.get((module, name))
        if found is not None:
            return found
        if module.startswith("torch.nn.modules.") and name.isidentifier() and name[:1].isupper():
            return _torch_module_stub(module, name)
        raise RefusedGlobal(module, name)


def _load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


def _loads(data, **kwargs):
    return RestrictedUnpickler(io.BytesIO(data), **kwargs).load()


# torch.load's ``pickle_module``: its Unpickler (torch subclasses it for storages) and its load
RESTRICTED = types.SimpleNamespace(__name__="pulse.weights.unpickle", Unpickler=RestrictedUnpickler,
                                   load=_load, loads=_loads, UnpicklingError=pickle.UnpicklingError)

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER: the first pickle of a legacy file


def load_restricted(path) -> object:
    """Everything a pickle file holds, rebuilt through the allow-list: a plain pickle (NVlabs' .pkl) or a
    ``torch.save`` file (zip or legacy). Raises ``RefusedGlobal`` for a global outside the allow-list, and
    ``pickle.UnpicklingError`` / ``EOFError`` / ``RuntimeError`` ... for damaged files (the caller names them)."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        return _torch_load(path)
    with open(path, "rb") as f:
        if f.read(4) == b"PK\x03\x04":  # a zip archive whose end is missing
            raise EOFError("a torch.save zip archive without its central directory: truncated")
        f.seek(0)
        data = RestrictedUnpickler(f).load()
    if isinstance(data, int) and data == TORCH_LEGACY_MAGIC:  # not a plain pickle: torch.save's legacy format
        return _torch_load(path)
    return data


def _torch_load(path: Path):
    return torch.load(path, map_location="cpu", pickle_module=RESTRICTED, weights_only=False)


def refused_message(err: RefusedGlobal) -> str:
    """One line for a refused global (the caller prefixes the file)."""
    return (f"refused: the pickle asks for {err.module}.{err.name}, which is not on pulse's allow-list "
            f"(tensors, arrays, plain containers and NVlabs' network state); nothing from the file was run")
