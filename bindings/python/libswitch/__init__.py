"""libswitch: Switch Transformers (sparse mixture-of-experts, top-1 routing) from Python.

A thin layer over the library's C ABI (SWIG module ``libswitch.libswitch_raw``): numpy
arrays in and out, exceptions for errors, context managers for the objects that hold
native memory::

    import libswitch as sw
    cfg = sw.Config.preset("tiny")
    cfg["num_experts"] = 16
    with sw.Model(cfg, device="cpu", seed=0) as m:
        out = m.forward(input_ids, decoder_input_ids, labels=labels)
        print(out.loss, out.logits.shape, out.routing[0].tokens_per_expert)

Every failure raises :class:`Error` (a subclass per status, e.g. :class:`InvalidArgumentError`,
also a ``ValueError``) with the library's message, which names the bad argument.
"""

import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

# libgomp reads its spin count when it loads (with the extension below): unless the user
# chose one, a short spin, which the `switch` command sets too (docs/PERF.md, "OpenMP
# spinning": on virtual machines long spins made small forwards 2x slower).
if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "10000"

from . import libswitch_raw as _raw  # noqa: E402 - after the OpenMP setting above

__version__ = _raw.sw_version()
ABI_VERSION = _raw.sw_abi_version()

# ---------------------------------------------------------------------------- errors


class Error(Exception):
    """A libswitch call failed; ``status`` is the C ABI's ``sw_status`` name."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = _raw.sw_status_string(status)
        self.code = status


class InvalidArgumentError(Error, ValueError):
    """A NULL handle, a wrong shape or length, a bad field or value."""


class OutOfRangeError(Error, IndexError):
    """A token id outside the vocabulary, an index past the end, an enum value."""


class NotFoundError(Error, LookupError):
    """An unknown parameter name or preset, a missing file or checkpoint."""


class IOError(Error, OSError):  # noqa: A001 - the library's own I/O error
    """Reading or writing a file failed."""


class CorruptError(Error):
    """A checkpoint or file failed its checks (checksum, truncation, manifest)."""


class UnsupportedError(Error, NotImplementedError):
    """Not in this build or version (e.g. "cuda:0" without CUDA, beam search)."""


class DeviceError(Error):
    """A CUDA or cuBLAS failure, or no device."""


class OutOfMemoryError(Error, MemoryError):
    """An allocation failed."""


class DistributedError(Error):
    """An MPI or NCCL failure."""


class NumericError(Error, ArithmeticError):
    """NaN or Inf."""


class InternalError(Error):
    """A bug in libswitch."""


class CancelledError(Error):
    """A call stopped by ``Cancel.request()`` before it finished."""


_ERRORS = {
    _raw.SW_ERR_INVALID_ARGUMENT: InvalidArgumentError,
    _raw.SW_ERR_OUT_OF_RANGE: OutOfRangeError,
    _raw.SW_ERR_NOT_FOUND: NotFoundError,
    _raw.SW_ERR_IO: IOError,
    _raw.SW_ERR_CORRUPT: CorruptError,
    _raw.SW_ERR_UNSUPPORTED: UnsupportedError,
    _raw.SW_ERR_DEVICE: DeviceError,
    _raw.SW_ERR_OUT_OF_MEMORY: OutOfMemoryError,
    _raw.SW_ERR_DISTRIBUTED: DistributedError,
    _raw.SW_ERR_NUMERIC: NumericError,
    _raw.SW_ERR_INTERNAL: InternalError,
    _raw.SW_ERR_CANCELLED: CancelledError,
}


def _raise(status: int):
    message = _raw.sw_last_error() or _raw.sw_status_string(status)
    raise _ERRORS.get(status, Error)(status, message)


def _check(status: int) -> None:
    """Raises for a non-OK sw_status returned by a call."""
    if status != _raw.SW_OK:
        _raise(status)


def _checked(value):
    """A helper's result, once the helper's recorded status says it succeeded."""
    status = _raw.swb_status()
    if status != _raw.SW_OK:
        _raise(status)
    return value


def cuda_built() -> bool:
    """Whether this libswitch was built with CUDA."""
    return bool(_raw.sw_cuda_built())


def cuda_device_count() -> int:
    return _checked(_raw.swb_cuda_device_count())


def presets() -> List[str]:
    """The names of the presets compiled into the library."""
    n = _checked(_raw.swb_preset_count())
    return [_checked(_raw.swb_preset_name(i)) for i in range(n)]


def latest_checkpoint(root: str) -> str:
    """The checkpoint directory ``latest`` points to under root."""
    return _checked(_raw.swb_checkpoint_latest(str(root)))


def plan(request: str = "", format: str = "table") -> str:
    """How a model trains on a cluster (``switch plan``): request is a PlanRequest in
    protobuf text ("gpus: 64 model_preset: 'switch-base-128'"); the answer is the table
    ``switch plan`` prints, or with format="proto" the Plan message as protobuf text."""
    return _checked(_raw.swb_plan(str(request), str(format)))


# ---------------------------------------------------------------------------- handles


class _Handle:
    """Owns one native object; ``close()`` (or leaving a ``with`` block) releases it."""

    _destroy = None

    def __init__(self, ptr):
        if ptr is None:
            raise InternalError(_raw.SW_ERR_INTERNAL, "no native object")
        self._ptr = ptr

    def close(self) -> None:
        ptr, self._ptr = getattr(self, "_ptr", None), None
        if ptr is not None:
            type(self)._destroy(ptr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    @property
    def _handle(self):
        if self._ptr is None:
            raise InvalidArgumentError(_raw.SW_ERR_INVALID_ARGUMENT,
                                       f"this {type(self).__name__} is closed")
        return self._ptr


# ---------------------------------------------------------------------------- configs

_FIELD_INT, _FIELD_DOUBLE, _FIELD_STRING, _FIELD_BOOL, _FIELD_ENUM, _FIELD_MESSAGE = range(6)


class _ConfigBase(_Handle):
    _destroy = staticmethod(_raw.sw_config_destroy)

    def __getitem__(self, field: str):
        """A field by name or dotted path ("model.num_experts"); enums as their names."""
        kind = _checked(_raw.swb_config_field_type(self._handle, field))
        if kind == _FIELD_INT:
            return _checked(_raw.swb_config_get_int(self._handle, field))
        if kind == _FIELD_DOUBLE:
            return _checked(_raw.swb_config_get_double(self._handle, field))
        if kind == _FIELD_BOOL:
            return bool(_checked(_raw.swb_config_get_bool(self._handle, field)))
        if kind in (_FIELD_STRING, _FIELD_ENUM):
            return _checked(_raw.swb_config_get_string(self._handle, field))
        raise InvalidArgumentError(_raw.SW_ERR_INVALID_ARGUMENT,
                                   f"config field \"{field}\" is a message: read its fields")

    def __setitem__(self, field: str, value) -> None:
        """Sets a field; a bad name, type or value raises and changes nothing."""
        if isinstance(value, bool):
            _check(_raw.sw_config_set_bool(self._handle, field, int(value)))
        elif isinstance(value, (int, np.integer)):
            _check(_raw.sw_config_set_int(self._handle, field, int(value)))
        elif isinstance(value, (float, np.floating)):
            _check(_raw.sw_config_set_double(self._handle, field, float(value)))
        elif isinstance(value, str):
            _check(_raw.sw_config_set_string(self._handle, field, value))
        else:
            raise InvalidArgumentError(_raw.SW_ERR_INVALID_ARGUMENT,
                                       f"config field \"{field}\": cannot set a "
                                       f"{type(value).__name__}")

    def to_text(self) -> str:
        """Protobuf text of every field, defaults included."""
        return _checked(_raw.swb_config_to_text(self._handle))

    def validate(self) -> None:
        _check(_raw.sw_config_validate(self._handle))

    def copy(self):
        return type(self)(_ptr=_checked(_raw.swb_config_clone(self._handle)))

    def __repr__(self):
        return f"{type(self).__name__}(\n{self.to_text()})"


class Config(_ConfigBase):
    """A model config (ModelConfig): a preset or protobuf text, fields by name."""

    def __init__(self, text: Optional[str] = None, *, _ptr=None):
        if _ptr is None:
            _ptr = _checked(_raw.swb_config_from_text(_raw.SW_CONFIG_MODEL, text or ""))
        super().__init__(_ptr)

    @classmethod
    def preset(cls, name: str) -> "Config":
        return cls(_ptr=_checked(_raw.swb_config_preset(name)))

    @classmethod
    def from_text(cls, text: str) -> "Config":
        return cls(text)


class TrainConfig(_ConfigBase):
    """A training config (TrainConfig): optimizer, schedule, batch, data."""

    def __init__(self, text: Optional[str] = None, *, _ptr=None):
        if _ptr is None:
            _ptr = _checked(_raw.swb_config_train_default() if text is None else
                            _raw.swb_config_from_text(_raw.SW_CONFIG_TRAIN, text))
        super().__init__(_ptr)

    @classmethod
    def from_text(cls, text: str) -> "TrainConfig":
        return cls(text)


# ---------------------------------------------------------------------------- batches


def _ids(array, name: str, shape=None) -> Optional[np.ndarray]:
    """int32, C-contiguous, 2-D (a 1-D array is one sequence); None stays None."""
    if array is None:
        return None
    a = _host_array(array)
    if a.dtype.kind not in "iub":
        raise InvalidArgumentError(_raw.SW_ERR_INVALID_ARGUMENT,
                                   f"{name}: expected integers (ids or a 0/1 mask), got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise InvalidArgumentError(_raw.SW_ERR_INVALID_ARGUMENT,
                                   f"{name}: expected [batch, length], got shape {a.shape}")
    if shape is not None and a.shape != shape:
        raise InvalidArgumentError(_raw.SW_ERR_INVALID_ARGUMENT,
                                   f"{name}: shape {a.shape} differs from {shape}")
    if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
        raise OutOfRangeError(_raw.SW_ERR_OUT_OF_RANGE, f"{name}: ids do not fit int32")
    return np.ascontiguousarray(a, dtype=np.int32)


def _batch_args(input_ids, decoder_input_ids, attention_mask=None, decoder_attention_mask=None,
                labels=None):
    """The flat (batch, lengths, arrays...) arguments of the raw batch helpers."""
    inputs = _ids(input_ids, "input_ids")
    decoder = _ids(decoder_input_ids, "decoder_input_ids")
    if decoder.shape[0] != inputs.shape[0]:
        raise InvalidArgumentError(_raw.SW_ERR_INVALID_ARGUMENT,
                                   f"decoder_input_ids: batch {decoder.shape[0]} differs from "
                                   f"input_ids' {inputs.shape[0]}")
    return (inputs.shape[0], inputs.shape[1], decoder.shape[1], inputs,
            _ids(attention_mask, "attention_mask", inputs.shape), decoder,
            _ids(decoder_attention_mask, "decoder_attention_mask", decoder.shape),
            _ids(labels, "labels", decoder.shape))


# ---------------------------------------------------------------------------- DLPack

_NUMPY_TYPES = {"f32": "<f4", "f64": "<f8", "i32": "<i4", "i64": "<i8"}


class _HostMemory:
    """numpy's way into a CPU tensor's DLPack capsule: the array interface (writable, unlike
    ``np.from_dlpack``'s arrays of an unversioned capsule). The array keeps this object,
    which keeps the capsule, whose destructor releases the tensor after the last array."""

    def __init__(self, capsule, dtype: str, shape: tuple, address: int):
        self._capsule = capsule
        self.__array_interface__ = {"data": (address, False), "shape": shape,
                                    "typestr": _NUMPY_TYPES[dtype], "version": 3}


class Tensor:
    """A libswitch tensor (a parameter, a gradient, logits) handed over without a copy:
    ``t.numpy()``, ``torch.from_dlpack(t)`` (CPU and CUDA) or any DLPack consumer. The
    array is the tensor's memory: it stays valid after the model is closed, shows the
    model's later updates (training steps, ``set_parameter``) and its writes change the
    model; nothing synchronises it with a training step in another thread."""

    def __init__(self, export):
        self._export = export
        self.dtype, self.shape, kind, index, _ = _raw.swb_dlpack_describe(_checked(export()))
        self.device = "cpu" if kind == 1 else f"cuda:{index}"

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """A "dltensor" capsule (DLPack's unversioned struct, which every consumer takes).
        stream: ignored: the export waits until the library's queued work on the tensor's
        GPU is done, so a consumer on any stream reads finished values."""
        if copy:
            raise BufferError("libswitch.Tensor: exports without a copy only (copy=True asked)")
        if dl_device is not None and tuple(dl_device) != self.__dlpack_device__():
            raise BufferError(f"libswitch.Tensor: on {self.device}, not DLPack device "
                              f"{tuple(dl_device)}")
        return _checked(self._export())

    def __dlpack_device__(self) -> tuple:
        kind, _, index = self.device.partition(":")
        return (1, 0) if kind == "cpu" else (2, int(index))  # kDLCPU, kDLCUDA

    def numpy(self) -> np.ndarray:
        """A writable numpy array over the same memory (CPU tensors of f32, f64, i32, i64)."""
        capsule = _checked(self._export())
        dtype, shape, kind, _, address = _raw.swb_dlpack_describe(capsule)
        if kind != 1:
            raise UnsupportedError(_raw.SW_ERR_UNSUPPORTED,
                                   f"Tensor.numpy: the tensor is on {self.device}; numpy holds "
                                   f"host memory (torch.from_dlpack takes it there)")
        if dtype not in _NUMPY_TYPES:
            raise UnsupportedError(_raw.SW_ERR_UNSUPPORTED,
                                   f"Tensor.numpy: numpy has no {dtype} type "
                                   f"(torch.from_dlpack takes it)")
        return np.asarray(_HostMemory(capsule, dtype, shape, address))

    def __repr__(self):
        return f"libswitch.Tensor(shape={self.shape}, dtype={self.dtype}, device={self.device})"


def _host_array(values) -> np.ndarray:
    """An array from numpy input, a DLPack producer on the CPU (torch, jax, ...; no copy)
    or anything numpy takes (lists)."""
    if not isinstance(values, np.ndarray) and hasattr(values, "__dlpack__"):
        try:
            return np.from_dlpack(values)
        except (BufferError, RuntimeError, TypeError):
            pass  # on a device, or a dtype numpy lacks: numpy's own conversion decides
    return np.asarray(values)


# ---------------------------------------------------------------------------- results


@dataclass
class LayerRouting:
    """One sparse layer's routing in a forward pass."""
    stack: str  # "encoder" or "decoder"
    block: int
    num_experts: int
    capacity: int
    group_size: int
    tokens: int
    dropped_fraction: float
    router_entropy: float
    aux_loss: float
    z_loss: float
    tokens_per_expert: np.ndarray  # int64 [num_experts], argmax counts before capacity


@dataclass
class ForwardOutput:
    logits: np.ndarray  # float32 [batch, target_len, vocab]
    loss: float
    ce_loss: float
    aux_loss: float
    z_loss: float
    routing: List[LayerRouting]


def _forward_output(result) -> ForwardOutput:
    try:
        # The result's own f32 logits, no copy: the array keeps them alive past
        # sw_result_destroy below.
        logits = Tensor(lambda: _raw.swb_result_logits_dlpack(result)).numpy()
        losses = [_checked(_raw.swb_result_loss(result, i)) for i in range(4)]
        routing = []
        for layer in range(_checked(_raw.swb_result_num_routing_layers(result))):
            first = _checked(_raw.swb_result_routing(result, layer, None))
            counts = np.zeros(first.num_experts, dtype=np.int64)
            s = _checked(_raw.swb_result_routing(result, layer, counts))
            routing.append(LayerRouting(
                "encoder" if s.stack == _raw.SW_ENCODER else "decoder", s.block, s.num_experts,
                s.capacity, s.group_size, s.tokens, s.dropped_fraction, s.router_entropy,
                s.aux_loss, s.z_loss, counts))
        return ForwardOutput(logits, *losses, routing)
    finally:
        _raw.sw_result_destroy(result)


@dataclass
class Metrics:
    """One training step's (or an evaluation's) numbers."""
    step: int
    loss: float
    ce: float
    aux: float
    z: float
    grad_norm: float
    learning_rate: float
    dropped_fraction: float
    tokens: int
    seconds: float
    tokens_per_second: float


def _metrics(m) -> Metrics:
    return Metrics(m.step, m.loss, m.ce, m.aux, m.z, m.grad_norm, m.learning_rate,
                   m.dropped_fraction, m.tokens, m.seconds, m.tokens_per_second)


# ---------------------------------------------------------------------------- models


class Model(_Handle):
    """A Switch Transformer on a device ("cpu", "cuda:N"). Thread-safe: forward passes
    from several threads run concurrently (the GIL is released during native calls)."""

    _destroy = staticmethod(_raw.sw_model_destroy)

    def __init__(self, config: Config, device: str = "cpu", seed: int = 0, *,
                 dtype: str = "f32", _ptr=None):
        """dtype: "f32" (trains and runs anywhere), "f64" (cpu) or "bf16" (GPU, inference)."""
        if _ptr is None:
            if not isinstance(config, Config):
                raise InvalidArgumentError(_raw.SW_ERR_INVALID_ARGUMENT,
                                           "config: expected a libswitch.Config")
            _ptr = _checked(_raw.swb_model_create_with_dtype(config._handle, device, dtype,
                                                             int(seed)))
        super().__init__(_ptr)

    def copy_to(self, device: str, dtype: str = "f32") -> "Model":
        """A new model with these weights on device in dtype (e.g. a GPU-trained model's
        cpu copy)."""
        return Model(None, _ptr=_checked(_raw.swb_model_copy_to(self._handle, device, dtype)))

    @classmethod
    def load(cls, path: str, device: str = "cpu") -> "Model":
        """A model from a checkpoint directory (or the latest under a root), verified."""
        return cls(None, _ptr=_checked(_raw.swb_model_load(str(path), device)))

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu") -> "Model":
        """A model from whatever ``path`` holds: an HF model directory (config.json with
        model.safetensors or a sharded index), a libswitch checkpoint directory or root,
        or a ``switch train --out`` run directory (its latest checkpoint)."""
        return cls(None, _ptr=_checked(_raw.swb_model_from_pretrained(str(path), device)))

    def save_pretrained(self, directory: str, allow_routing_change: bool = False) -> None:
        """The HF layout (config.json, model.safetensors) in ``directory``: ``export_hf``."""
        self.export_hf(directory, allow_routing_change)

    @classmethod
    def import_hf(cls, config_json: str, weights: str, device: str = "cpu",
                  overrides: str = "") -> "Model":
        """A HuggingFace SwitchTransformers checkpoint (config.json + safetensors).

        overrides: ModelConfig fields in protobuf text that replace the HF config's, e.g.
        "aux_loss_mode: AUX_PER_LAYER" to train the imported model."""
        return cls(None, _ptr=_checked(_raw.swb_model_import_hf_with(
            str(config_json), str(weights), device, overrides)))

    def save(self, root: str) -> str:
        """Saves the parameters as a checkpoint under root; returns its directory."""
        _check(_raw.sw_model_save(self._handle, str(root)))
        return latest_checkpoint(root)

    def load_parameters(self, path: str, strict: bool = True) -> None:
        _check(_raw.sw_model_load_parameters(self._handle, str(path), int(strict)))

    def export_hf(self, directory: str, allow_routing_change: bool = False) -> None:
        """config.json and model.safetensors for transformers. A model it would route
        otherwise (a capacity factor, batch routing groups) is refused, naming the setting,
        unless allow_routing_change."""
        _check(_raw.sw_model_export_hf_with(self._handle, str(directory),
                                            int(allow_routing_change)))

    @property
    def config(self) -> Config:
        return Config(_ptr=_checked(_raw.swb_model_config(self._handle)))

    @property
    def seed(self) -> int:
        return _checked(_raw.swb_model_seed(self._handle))

    @property
    def device(self) -> str:
        return _checked(_raw.swb_model_device(self._handle))

    @property
    def dtype(self) -> str:
        return _checked(_raw.swb_model_dtype(self._handle))

    @property
    def threads(self) -> int:
        return _checked(_raw.swb_model_threads(self._handle))

    @threads.setter
    def threads(self, n: int) -> None:
        _check(_raw.sw_model_set_threads(self._handle, int(n)))

    def num_parameters(self) -> int:
        """Scalars in all parameters."""
        return _checked(_raw.swb_model_parameter_count(self._handle))

    def parameter_names(self) -> List[str]:
        n = _checked(_raw.swb_model_num_parameters(self._handle))
        return [_checked(_raw.swb_parameter_name(self._handle, i)) for i in range(n)]

    def parameter_shape(self, name: str) -> tuple:
        ndim = _checked(_raw.swb_parameter_dim(self._handle, name, -1))
        return tuple(_checked(_raw.swb_parameter_dim(self._handle, name, i)) for i in range(ndim))

    def get_parameter(self, name: str) -> np.ndarray:
        """A copy of the parameter as float32."""
        out = np.empty(self.parameter_shape(name), dtype=np.float32)
        _checked(_raw.swb_get_parameter(self._handle, name, out))
        return out

    def parameter(self, name: str) -> Tensor:
        """The parameter itself, without a copy, for DLPack consumers:
        ``m.parameter(name).numpy()`` or ``torch.from_dlpack(m.parameter(name))`` (see
        :class:`Tensor` for what sharing the memory means)."""
        return Tensor(lambda: _raw.swb_parameter_dlpack(self._handle, name))

    def grad(self, name: str) -> Tensor:
        """The gradient of the last forward with ``compute_gradients=True``, without a
        copy (``gradient`` copies it into a new float32 array)."""
        return Tensor(lambda: _raw.swb_gradient_dlpack(self._handle, name))

    def set_parameter(self, name: str, values) -> None:
        """Copies values (numpy, a DLPack producer such as a torch CPU tensor, or nested
        lists) into the parameter, converting to float32 on the way; the model keeps its
        own memory."""
        shape = self.parameter_shape(name)
        a = np.ascontiguousarray(_host_array(values), dtype=np.float32)
        if a.shape != shape:
            raise InvalidArgumentError(_raw.SW_ERR_INVALID_ARGUMENT,
                                       f"parameter {name}: expected shape {shape}, got {a.shape}")
        _checked(_raw.swb_set_parameter(self._handle, name, a))

    def gradient(self, name: str) -> np.ndarray:
        """The gradient from the last forward with ``compute_gradients=True``."""
        out = np.empty(self.parameter_shape(name), dtype=np.float32)
        _checked(_raw.swb_get_gradient(self._handle, name, out))
        return out

    def forward(self, input_ids, decoder_input_ids, attention_mask=None,
                decoder_attention_mask=None, labels=None, train: bool = False,
                compute_gradients: bool = False) -> ForwardOutput:
        """One forward pass; logits, the losses and per-layer routing come back."""
        args = _batch_args(input_ids, decoder_input_ids, attention_mask, decoder_attention_mask,
                           labels)
        result = _checked(_raw.swb_model_forward(self._handle, *args, int(train),
                                                 int(compute_gradients)))
        return _forward_output(result)

    def validate(self, input_ids, decoder_input_ids, attention_mask=None,
                 decoder_attention_mask=None, labels=None, device: str = "cuda:0",
                 dtype: str = "f32", tolerance: float = 0.0) -> "tuple[str, bool]":
        """The batch through the CPU f32 reference and ``device`` in ``dtype`` ("f32" or
        "bf16") with this model's parameters: the per-block report, and whether every block
        is within ``tolerance`` (0: 1e-4 for f32, 2e-2 for bf16) with identical routing."""
        args = _batch_args(input_ids, decoder_input_ids, attention_mask, decoder_attention_mask,
                           labels)
        report = _checked(_raw.swb_model_validate(self._handle, *args, str(device), str(dtype),
                                                  float(tolerance)))
        return report, bool(_raw.swb_validate_within())

    def generate(self, input_ids, attention_mask=None, max_new_tokens: int = 32,
                 num_beams: int = 1, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int = 0, min_new_tokens: int = 0,
                 length_penalty: float = 1.0, vocab_limit: int = 0,
                 dropless: bool = False, early_stopping: bool = False,
                 cancel: Optional["Cancel"] = None) -> List[np.ndarray]:
        """Generation with the decoder's key/value cache: greedy (the default), beam search
        (``num_beams > 1``) or sampling (``temperature > 0``, with ``top_k``/``top_p``,
        reproducible per ``seed``). Beam search ends a sequence once ``num_beams``
        hypotheses are finished and, unless ``early_stopping``, no live beam can beat the
        worst of them (as transformers). One int32 array of new ids per input sequence; eos
        ends a sequence and is not included. ``cancel.request()`` from another thread stops
        the call before its next decoding step with ``CancelledError``."""
        inputs = _ids(input_ids, "input_ids")
        mask = _ids(attention_mask, "attention_mask", inputs.shape)
        out = np.zeros((inputs.shape[0], int(max_new_tokens)), dtype=np.int32)
        lengths = np.zeros(inputs.shape[0], dtype=np.int64)
        _checked(_raw.swb_model_generate(self._handle, inputs.shape[0], inputs.shape[1], inputs,
                                         mask, int(max_new_tokens), int(vocab_limit), out,
                                         lengths, int(num_beams), float(temperature), int(top_k),
                                         float(top_p), int(seed), int(min_new_tokens),
                                         float(length_penalty), int(dropless),
                                         int(early_stopping),
                                         cancel._handle if cancel is not None else None))
        return [out[i, :lengths[i]].copy() for i in range(inputs.shape[0])]


class Cancel(_Handle):
    """A flag that stops a running ``Model.generate`` (give it as ``cancel=``) before its
    next decoding step: ``request()`` from any thread. It stays requested until
    ``reset()``."""

    _destroy = staticmethod(_raw.sw_cancel_destroy)

    def __init__(self):
        super().__init__(_checked(_raw.swb_cancel_create()))

    def request(self) -> None:
        _check(_raw.sw_cancel_request(self._handle))

    def reset(self) -> None:
        _check(_raw.sw_cancel_reset(self._handle))

    @property
    def requested(self) -> bool:
        return bool(_checked(_raw.swb_cancel_is_requested(self._handle)))


# ---------------------------------------------------------------------------- distributed


class Communicator(_Handle):
    """The ranks of a launch (``mpirun -np N python3 train.py``): MPI's world when started
    by an MPI launcher, else a single rank."""

    _destroy = staticmethod(_raw.sw_communicator_destroy)

    def __init__(self, *, _ptr=None):
        super().__init__(_ptr if _ptr is not None else
                         _checked(_raw.swb_communicator_from_env()))

    @classmethod
    def from_env(cls) -> "Communicator":
        return cls()

    @classmethod
    def from_mpi_address(cls, address: int) -> "Communicator":
        """The ranks of the MPI communicator whose MPI_Comm handle is at ``address``
        (duplicated; the caller initialised MPI, the one libswitch was built with)."""
        return cls(_ptr=_checked(_raw.swb_communicator_from_mpi(int(address))))

    @classmethod
    def from_mpi4py(cls, comm) -> "Communicator":
        """The ranks of an mpi4py communicator (mpi4py built with libswitch's MPI)."""
        from mpi4py import MPI  # only callers with mpi4py get here
        return cls.from_mpi_address(MPI._addressof(comm))

    def split(self, color: int, key: int) -> "Communicator":
        """The ranks passing the same color (>= 0), ordered by key (collective)."""
        return Communicator(_ptr=_checked(_raw.swb_communicator_split(self._handle, int(color),
                                                                      int(key))))

    @property
    def rank(self) -> int:
        return _checked(_raw.swb_communicator_rank(self._handle))

    @property
    def size(self) -> int:
        return _checked(_raw.swb_communicator_size(self._handle))

    def abort(self, code: int = 1) -> None:
        """Ends every rank's process (after an error on this one)."""
        _raw.sw_communicator_abort(self._handle, int(code))


# ---------------------------------------------------------------------------- training


class Callback:
    """A hook of :meth:`Trainer.fit`: ``on_step`` after every step (return True to stop
    training there), ``on_end`` once the loop ends."""

    def on_step(self, trainer: "Trainer", metrics: Metrics) -> Optional[bool]:
        return None

    def on_end(self, trainer: "Trainer") -> None:
        return None


class CheckpointEvery(Callback):
    """Saves a checkpoint under ``root`` every ``every`` steps and after the last one;
    ``saved`` lists the directories."""

    def __init__(self, every: int, root: str):
        if every < 1:
            raise InvalidArgumentError(_raw.SW_ERR_INVALID_ARGUMENT,
                                       f"CheckpointEvery: every must be >= 1, got {every}")
        self.every, self.root, self.saved = every, str(root), []
        self._last = self._last_saved = None

    def on_step(self, trainer, metrics):
        self._last = metrics.step
        if metrics.step % self.every == 0:
            self._save(trainer)

    def on_end(self, trainer):
        if self._last is not None and self._last != self._last_saved:
            self._save(trainer)

    def _save(self, trainer):
        self.saved.append(trainer.save(self.root))
        self._last_saved = self._last


class EvaluateEvery(Callback):
    """Evaluates every ``every`` steps on ``batch`` (None: the built-in held-out batches);
    ``results`` lists (step, Metrics)."""

    def __init__(self, every: int, batch: Optional[Dict] = None):
        if every < 1:
            raise InvalidArgumentError(_raw.SW_ERR_INVALID_ARGUMENT,
                                       f"EvaluateEvery: every must be >= 1, got {every}")
        self.every, self.batch, self.results = every, batch, []

    def on_step(self, trainer, metrics):
        if metrics.step % self.every == 0:
            self.results.append((metrics.step, trainer.evaluate(self.batch)))


class _Progress:
    """tqdm's bar where tqdm is installed (tqdm.auto: a widget in Jupyter), otherwise a
    line per tenth of the run."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.bar, self.enabled = total, None, enabled
        if enabled:
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, unit="step")
            except ImportError:
                pass

    def update(self, done: int, m: Metrics) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{m.loss:.4f}", tok_s=f"{m.tokens_per_second:,.0f}")
        elif done == 1 or done == self.total or done % max(1, self.total // 10) == 0:
            print(f"step {m.step} ({done}/{self.total}) loss {m.loss:.4f} "
                  f"{m.tokens_per_second:,.0f} tokens/s", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Trainer(_Handle):
    """Optimizer steps on batches (dicts of arrays) or on the built-in span-corruption
    data; evaluation; checkpoints that a new process continues bit for bit."""

    _destroy = staticmethod(_raw.sw_trainer_destroy)

    def __init__(self, model: Model, train_config: TrainConfig, *, _ptr=None):
        if _ptr is None:
            _ptr = _checked(_raw.swb_trainer_create(model._handle, train_config._handle))
        super().__init__(_ptr)

    @classmethod
    def restore(cls, path: str, device: str = "cpu") -> "Trainer":
        return cls(None, None, _ptr=_checked(_raw.swb_trainer_restore(str(path), device)))

    @property
    def model(self) -> Model:
        """The model being trained (another handle to it)."""
        return Model(None, _ptr=_checked(_raw.swb_trainer_model(self._handle)))

    def _run(self, evaluate: int, batch: Optional[Dict]) -> Metrics:
        if batch is None:
            args = (0, 0, 0, None, None, None, None, None)
        else:
            args = _batch_args(batch["input_ids"], batch["decoder_input_ids"],
                               batch.get("attention_mask"), batch.get("decoder_attention_mask"),
                               batch.get("labels"))
        return _metrics(_checked(_raw.swb_trainer_run(self._handle, evaluate, *args)))

    def step(self, batch: Optional[Dict] = None) -> Metrics:
        """One optimizer step on ``batch`` (input_ids, decoder_input_ids, labels, optional
        masks), or on the next built-in batch when None."""
        return self._run(0, batch)

    def evaluate(self, batch: Optional[Dict] = None) -> Metrics:
        """The loss on ``batch``, or on the built-in held-out batches when None."""
        return self._run(1, batch)

    def fit(self, steps: int, batches=None, callbacks=(), progress: bool = True) -> List[Metrics]:
        """``steps`` optimizer steps on ``batches`` (an iterable of batch dicts; training
        stops early when it runs out) or on the built-in data (None), with a progress bar
        (tqdm where installed, plain lines otherwise) and ``callbacks``
        (:class:`CheckpointEvery`, :class:`EvaluateEvery` or any :class:`Callback`; one
        returning True from ``on_step`` stops training). Returns each step's metrics."""
        if steps < 0:
            raise InvalidArgumentError(_raw.SW_ERR_INVALID_ARGUMENT,
                                       f"fit: steps must be >= 0, got {steps}")
        source = iter(batches) if batches is not None else None
        bar = _Progress(steps, progress)
        done: List[Metrics] = []
        try:
            for i in range(steps):
                batch = next(source, None) if source is not None else None
                if source is not None and batch is None:
                    break
                metrics = self.step(batch)
                done.append(metrics)
                bar.update(i + 1, metrics)
                stop = [bool(c.on_step(self, metrics)) for c in callbacks]
                if any(stop):
                    break
        finally:
            bar.close()
        for c in callbacks:
            c.on_end(self)
        return done

    def save(self, root: str) -> str:
        """A checkpoint under root (model, optimizer, step, data position); its directory."""
        _check(_raw.sw_trainer_save(self._handle, str(root)))
        return latest_checkpoint(root)

    def log_to(self, directory: Optional[str]) -> None:
        """From now on, writes each step and evaluation to a TensorBoard event file in
        ``directory`` (losses, learning rate, gradient norm, tokens/s, dropped fraction,
        each layer's router entropy and expert-load histogram); None stops."""
        _check(_raw.sw_trainer_log_to(self._handle,
                                      None if directory is None else str(directory)))

    def set_data_parallel(self, comm: Communicator) -> None:
        """Makes this trainer one data-parallel replica over comm's ranks (before its first
        step): each rank steps on its shard; all take the global batch's step."""
        _check(_raw.sw_trainer_set_data_parallel(self._handle, comm._handle))

    def set_parallel(self, comm: Communicator, layout: str) -> None:
        """Lays this trainer out over comm's ranks (collective, before its first step):
        "dp=N", "dp=N,ep=M" (experts split over groups of M ranks), "dp=N,mp=M" (heads
        and d_ff split) or both, "dp=N,ep=M,mp=K". Under ep or mp each rank trains its share of a copy of the model
        (``model`` is then refused); ``step`` takes this replica's shard, and ``save``
        writes the whole model from rank 0."""
        _check(_raw.sw_trainer_set_parallel(self._handle, comm._handle, str(layout)))


__all__ = [
    "__version__", "ABI_VERSION", "Config", "TrainConfig", "Model", "Trainer", "ForwardOutput",
    "LayerRouting", "Metrics", "Error", "InvalidArgumentError", "OutOfRangeError",
    "NotFoundError", "IOError", "CorruptError", "UnsupportedError", "DeviceError",
    "OutOfMemoryError", "DistributedError", "NumericError", "InternalError", "CancelledError",
    "Cancel", "cuda_built", "cuda_device_count", "presets", "latest_checkpoint", "Communicator",
    "Callback", "CheckpointEvery", "EvaluateEvery", "plan", "Tensor",
]
