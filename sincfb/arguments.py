"""The fused operation's arguments, declared once.

``torch.ops.sincfb.filterbank`` takes the arguments of :data:`OP_ARGS`, in that order; its
backward op ``sincfb::filterbank_backward`` takes the tensors it saved, the op's non-tensor
arguments marked ``backward`` and the flags of :data:`BACKWARD_FLAGS`. Everything else is derived
from these two tables: both schema strings (:func:`schema`, :func:`backward_schema`), the
:class:`FilterbankConfig` every backend receives (the arguments marked ``config``), and the
named tuples that unpack an op's inputs by name (:func:`inputs_type`), which the op's
implementation, its fake and its autograd context use. A new argument is one row here.
"""
from __future__ import annotations

import collections
from typing import NamedTuple

__all__ = ["Arg", "REQUIRED", "OP_ARGS", "BACKWARD_TENSORS", "BACKWARD_FLAGS", "OP_RETURNS",
           "schema", "backward_schema", "backward_args", "forwarded", "config_type", "inputs_type",
           "FilterbankConfig", "OpInputs", "BackwardInputs", "PRECISIONS", "default_precision"]


#: The operand precisions of the ``precision`` argument (DESIGN.md §4).
PRECISIONS = ("ieee", "tf32", "bf16")


def default_precision(device_type: str) -> str:
    """'bf16' on CUDA (tensor cores with fp32 accumulation), 'ieee' everywhere else."""
    return "bf16" if device_type == "cuda" else "ieee"


class _Required:
    """The default of an argument that has none (the caller must give it)."""

    def __repr__(self):
        return "REQUIRED"


#: The default of an argument the caller must give.
REQUIRED = _Required()


class Arg(NamedTuple):
    """One argument: its name, its type in torch.library's schema language, what it is, and its
    default (``REQUIRED``: none). ``config``: part of :class:`FilterbankConfig`; ``backward``: a
    non-tensor argument the backward op takes too."""

    name: str
    type: str
    doc: str
    default: object = REQUIRED
    config: bool = False
    backward: bool = True

    @property
    def is_tensor(self) -> bool:
        """Whether the argument is a tensor (possibly None)."""
        return self.type.startswith("Tensor")


OP_ARGS = (
    Arg("x", "Tensor", "raw audio (B, 1, N)"),
    Arg("low_hz_", "Tensor", "the low cut-off parameters (K, 1), as SincConv_fast keeps them"),
    Arg("band_hz_", "Tensor", "the band-width parameters (K, 1)"),
    Arg("weight", "Tensor?", "BatchNorm's gamma (K,); None: 1"),
    Arg("bias", "Tensor?", "BatchNorm's beta (K,); None: 0"),
    Arg("running_mean", "Tensor?", "BatchNorm's running mean (K,); read in eval mode only"),
    Arg("running_var", "Tensor?", "BatchNorm's running variance (K,); read in eval mode only"),
    Arg("kernel_size", "SymInt", "odd filter length L", config=True),
    Arg("sample_rate", "float", "samples per second of x", config=True),
    Arg("min_low_hz", "float", "lowest low cut-off, Hz", config=True),
    Arg("min_band_hz", "float", "narrowest band, Hz", config=True),
    Arg("pool_bins", "SymInt", "P, the adaptive average pooling's output length", config=True),
    Arg("training", "bool", "True: normalise with batch statistics, False: running ones",
        config=True),
    Arg("eps", "float", "BatchNorm's epsilon", config=True),
    Arg("backend", "str", "a registered backend's name (resolved: never 'auto')"),
    Arg("precision", "str", "one of PRECISIONS", config=True),
    Arg("keep_saved", "bool", "False: no backward will run, so the mask bits and bin statistics "
        "are not needed; a backend may leave them out (the op returns empty ones either way)",
        default=True, config=True, backward=False),
)

#: What the op returns (the module docstring of :mod:`sincfb.ops` says what each one is).
OP_RETURNS = ("out", "mean", "var", "mask_bits", "bin_stats")

#: The tensors the backward op takes: the upstream gradient, then what the forward saved.
BACKWARD_TENSORS = ("grad_out", "x", "low_hz_", "band_hz_", "weight", "bias", "mean", "var",
                    "mask_bits", "bin_stats")

BACKWARD_FLAGS = (
    Arg("need_input", "bool", "False: skip the input gradient (returned as zeros)", default=True),
    Arg("need_filters", "bool", "False: skip the cut-off gradients (returned as zeros)",
        default=True),
)


def _schema_text(args, returns: int) -> str:
    """``(type name[=default], ...) -> (Tensor, ...)`` in torch.library's schema language."""
    def one(arg: Arg) -> str:
        if arg.default is REQUIRED:
            return f"{arg.type} {arg.name}"
        if not isinstance(arg.default, (bool, int, float)):
            raise TypeError(f"argument {arg.name}: a schema default must be a number or a bool, "
                            f"got {arg.default!r}")
        return f"{arg.type} {arg.name}={arg.default!r}"

    return f"({', '.join(map(one, args))}) -> ({', '.join(['Tensor'] * returns)})"


def schema(args=OP_ARGS) -> str:
    """The op's schema (without its name) for the declaration ``args``."""
    return _schema_text(args, len(OP_RETURNS))


def forwarded(args=OP_ARGS) -> tuple[Arg, ...]:
    """The op's non-tensor arguments that its backward op takes too, in order."""
    return tuple(a for a in args if not a.is_tensor and a.backward)


def backward_args(args=OP_ARGS) -> tuple[Arg, ...]:
    """The backward op's arguments for the op's declaration ``args``."""
    return tuple(Arg(name, "Tensor", "") for name in BACKWARD_TENSORS) + forwarded(args) \
        + BACKWARD_FLAGS


def backward_schema(args=OP_ARGS) -> str:
    """The backward op's schema (without its name) for the op's declaration ``args``."""
    return _schema_text(backward_args(args), 5)


def inputs_type(name: str, args, doc: str = "") -> type:
    """A named tuple of ``args`` with their defaults: built from a call's positional inputs (the
    dispatcher leaves out trailing ones equal to their default), it names them."""
    defaults = [a.default for a in args if a.default is not REQUIRED]
    if any(a.default is REQUIRED for a in args[len(args) - len(defaults):]):
        raise ValueError(f"{name}: arguments with a default must come last")
    fields = "\n".join(f"- ``{a.name}``: {a.doc}" for a in args if a.doc)
    return type(name, (collections.namedtuple(name, [a.name for a in args], defaults=defaults),),
                {"__slots__": (), "__module__": __name__, "__doc__": f"{doc}\n\n{fields}"})


def config_type(args=OP_ARGS) -> type:
    """The named tuple of the ``config`` arguments: what a backend needs besides the tensors."""
    return inputs_type("FilterbankConfig", tuple(a for a in args if a.config),
                       "The non-tensor arguments of the operation that every backend receives:")


FilterbankConfig = config_type()
OpInputs = inputs_type("OpInputs", OP_ARGS, "The inputs of ``sincfb::filterbank`` by name:")
BackwardInputs = inputs_type("BackwardInputs", backward_args(),
                             "The inputs of ``sincfb::filterbank_backward`` by name:")
