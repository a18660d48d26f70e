"""The training workloads behind the replication curves: UNet, GPT-2, GenSLM, BraggNN.

One :class:`Workload` per model holds its exact parameter count, the list
of parameter tensors in ``model.parameters()`` order, what one sample is,
the training FLOPs per sample, how to build its real ``nn.Module`` (a
class of :mod:`facts.torch_models` and its arguments) and the shape of
its input, so no code tells the models apart by name.  All of it is pure
Python; torch is optional and imported (with facts.torch_models) only
by :func:`build_torch_model`, :func:`torch_param_count` and
:func:`example_input`, never by importing this module.  The activation
memory of a training step, measured per model: facts.host_limits.

Architectures, their parameter tensors and FLOPs per sample: :mod:`facts.architectures`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

from facts import architectures as arch

__all__ = ["Workload", "ModelInput", "Builder", "names", "get", "gradient_buckets",
           "build_torch_model", "torch_param_count", "example_input"]

_MIB = 1 << 20


@dataclass(frozen=True)
class ModelInput:
    """One sample for the torch model: ``"image"``, ``shape`` (C, H, W) of floats,
    or ``"tokens"``, ``shape`` (length,) of token ids in ``[0, vocab)``."""

    kind: str
    shape: Tuple[int, ...]
    vocab: int = 0

    def batch_shape(self, batch: int, size: Optional[int] = None) -> Tuple[int, ...]:
        """``(batch, *shape)``; ``size`` replaces the image side or the sequence length."""
        if size is None:
            return (batch,) + self.shape
        return (batch, size) if self.kind == "tokens" else (batch, self.shape[0], size, size)


@dataclass(frozen=True)
class Builder:
    """``facts.torch_models.MODELS[factory](**kwargs)``, as plain (picklable) data."""

    factory: str
    kwargs: Tuple[Tuple[str, Any], ...] = ()

    def build(self, device: Optional[Any] = None):
        """The module, built with ``device`` as torch's default device (see build_torch_model)."""
        return _torch_models().build(self.factory, dict(self.kwargs), device)


@dataclass(frozen=True)
class Workload:
    """One model: exact parameters, tensor list and training FLOPs per sample.

    ``layers`` is ``(name, numel)`` per parameter tensor in the order
    ``model.parameters()`` yields them, with the ``named_parameters()``
    names of the module ``builder`` builds; ``params`` is their sum.
    ``flops_per_sample`` is forward + backward (see the module docstring);
    ``source`` says where architecture and count come from; ``sample``
    describes one sample in words, ``model_input`` gives its shape
    (``builder`` and ``model_input`` are ``None`` without a torch model).
    """

    name: str
    title: str
    params: int
    sample: str
    flops_per_sample: float
    layers: Tuple[Tuple[str, int], ...]
    source: str
    builder: Optional[Builder] = None
    model_input: Optional[ModelInput] = None


# --- The table ---------------------------------------------------------------


def _workload(name, title, net, sample, flops, source, model_input, factory, **kwargs) -> Workload:
    layers = tuple(net.layers)
    return Workload(name, title, sum(n for _, n in layers), sample, float(flops), layers, source,
                    Builder(factory, tuple(kwargs.items())), model_input)


def _table() -> Dict[str, Workload]:
    table: Dict[str, Workload] = {}
    image = ModelInput("image", (3, arch.UNET_HW, arch.UNET_HW))
    net = arch.buda_unet()
    table["unet"] = _workload(
        "unet", "UNet-2D (Buda brain-MRI, 32 filters)", net,
        f"{arch.UNET_HW}x{arch.UNET_HW}x3 image", 3 * 2 * net.macs,
        "mateuszbuda/brain-segmentation-pytorch unet.py, UNet(3, 1, init_features=32); "
        "ALCF kaggle_3m brain-MRI UNet",
        image, "BudaUNet", in_channels=3, out_channels=1, init_features=32)
    net = arch.milesial_unet()
    table["unet64"] = _workload(
        "unet64", "UNet-2D (milesial, 64 filters, BatchNorm)", net,
        f"{arch.UNET_HW}x{arch.UNET_HW}x3 image", 3 * 2 * net.macs,
        "milesial/Pytorch-UNet unet_model.py, UNet(n_channels=3, n_classes=1, bilinear=False)",
        image, "MilesialUNet", n_channels=3, n_classes=1)
    tokens = ModelInput("tokens", (arch.GPT2_CTX,), arch.GPT2_VOCAB)
    for name, (h, n_layer, heads, size) in arch.GPT2.items():
        net = arch.gpt2_layers(h, n_layer)
        params = sum(n for _, n in net.layers)
        table[name] = _workload(
            name, f"GPT-2 {size}", net, f"{arch.GPT2_CTX}-token sequence", 6 * params * arch.GPT2_CTX,
            "HuggingFace GPT2LMHeadModel config (vocab 50257, n_positions 1024, "
            "tied LM head); Radford et al. 2019",
            tokens, "GPT2LMHeadModel", h=h, n_layer=n_layer, heads=heads,
            vocab=arch.GPT2_VOCAB, ctx=arch.GPT2_CTX)
    codons = ModelInput("tokens", (arch.GENSLM_SEQ,), arch.GENSLM_VOCAB)
    for name, (h, n_layer, heads, inter, config, size) in arch.GENSLM.items():
        net = arch.neox_layers(h, n_layer, inter)
        params = sum(n for _, n in net.layers)
        table[name] = _workload(
            name, f"GenSLM {size} (GPT-NeoX, codon vocabulary)", net,
            f"{arch.GENSLM_SEQ}-codon sequence", 6 * params * arch.GENSLM_SEQ,
            f"ramanathanlab/genslm genslm/architectures/neox/{config} (hidden size {h}, "
            f"{n_layer} layers, intermediate {inter}, vocab {arch.GENSLM_VOCAB}, untied "
            "embeddings, rotary); Zvyagin et al. 2022",
            codons, "GPTNeoXForCausalLM", h=h, n_layer=n_layer,
            heads=arch.attention_heads(h, heads), inter=inter, vocab=arch.GENSLM_VOCAB)
    net = arch.braggnn()
    table["braggnn"] = _workload(
        "braggnn", "BraggNN (patch 11, dense 16-8-4-2)", net,
        f"{arch.BRAGG_PATCH}x{arch.BRAGG_PATCH}x1 diffraction-peak patch", 3 * 2 * net.macs,
        "lzhengchun/BraggNN model.py, BraggNN(imgsz=11, fcsz=(16, 8, 4, 2)); "
        "Liu et al., IUCrJ 2022",
        ModelInput("image", (1, arch.BRAGG_PATCH, arch.BRAGG_PATCH)), "BraggNN",
        imgsz=arch.BRAGG_PATCH, fcsz=arch.BRAGG_FC)
    return table


_WORKLOADS = _table()
_ALIASES = {"gpt2": "gpt2-small", "unet32": "unet", "unet-32": "unet", "unet-64": "unet64"}


def names() -> List[str]:
    """Canonical workload names, in the order of docs/reference.md's workload table."""
    return list(_WORKLOADS)


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in _WORKLOADS:
        raise ValueError(
            f"unknown workload {name!r}; known: {', '.join(_WORKLOADS)} "
            f"(aliases: {', '.join(f'{a}={b}' for a, b in _ALIASES.items())})")
    return key


def get(name: str) -> Workload:
    """The :class:`Workload` called ``name`` (case-insensitive, ``_`` = ``-``).

    Aliases: ``gpt2`` is ``gpt2-small``, ``unet32`` is ``unet`` (Buda,
    32 filters).  An unknown name raises ``ValueError`` listing the names.
    """
    return _WORKLOADS[_canonical(name)]


def gradient_buckets(
    w: Workload,
    bytes_per_element: int = 4,
    bucket_cap_mb: float = 25,
    first_bucket_mb: float = 1,
) -> List[int]:
    """Gradient bucket sizes in bytes, in the order DDP all-reduces them.

    Mirrors torch.distributed's ``_compute_bucket_assignment_by_size`` with
    ``bucket_size_limits = [first, cap]``: tensors are taken in reverse
    ``model.parameters()`` order (the order their gradients become ready
    for a model used in definition order; DDP rebuilds its buckets in the
    real ready order after the first iteration, which before that is one
    single bucket unless ``find_unused_parameters``), each added whole to
    the open bucket (a tensor is never split), and the bucket closes as
    soon as it holds ``>= limit`` bytes; the first bucket's limit is
    ``first_bucket_mb`` MiB, every later one's ``bucket_cap_mb`` MiB (MiB =
    2**20 bytes, truncated to whole bytes as torch does).  The last bucket
    holds what is left.  The sum is ``params * bytes_per_element``.

    Defaults are DDP's (``bucket_cap_mb=None``): 1 MiB then 25 MiB.  torch
    2.x uses the small first bucket only for the default cap, so for
    ``DDP(bucket_cap_mb=X)`` pass ``first_bucket_mb=X`` too.  Use
    ``bytes_per_element=2`` for bf16/fp16 gradients (the same caps then
    hold twice the tensors, so there are about half as many buckets).

    Checked against torch 2.13 DDP (gloo, comm hook recording each bucket
    from the third iteration on): identical for both UNets, BraggNN and
    GPT-2 small, fp32 and bf16, default and explicit caps.  GenSLM's
    parallel-residual layers make two LayerNorms' gradients ready out of
    definition order, so real DDP moves one LayerNorm (4 h bytes) across a
    bucket boundary; totals and bucket counts are unchanged.
    """
    if bytes_per_element <= 0:
        raise ValueError(f"bytes_per_element must be positive, got {bytes_per_element}")
    if bucket_cap_mb <= 0 or first_bucket_mb <= 0:
        raise ValueError("bucket limits must be positive")
    limits = [int(first_bucket_mb * _MIB), int(bucket_cap_mb * _MIB)]
    buckets: List[int] = []
    filled = 0
    for _, numel in reversed(w.layers):
        filled += numel * bytes_per_element
        if filled >= limits[min(len(buckets), 1)]:
            buckets.append(filled)
            filled = 0
    if filled:
        buckets.append(filled)
    return buckets


# --- torch models (optional; facts.torch_models, imported on first use) ------


def _torch_models():
    try:
        import torch  # noqa: F401  (fail here, with the hint, before torch_models does)
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError(
            "build_torch_model needs PyTorch (pip install 'collscale[torch]'); "
            "the analytic Workload data in facts.workloads works without it") from exc
    from facts import torch_models

    return torch_models


def _with_model(w: Union[str, Workload]) -> Workload:
    w = get(w) if isinstance(w, str) else w
    if w.builder is None or w.model_input is None:
        raise ValueError(f"workload {w.name!r} has no torch model")
    return w


def build_torch_model(name: Union[str, Workload], device: Optional[Any] = None):
    """A real ``torch.nn.Module`` for workload ``name`` (or a Workload), in training layout.

    Built by the row's ``builder``; its ``named_parameters()`` equal
    ``get(name).layers`` (names and element counts, in order) and it takes
    what :func:`example_input` draws.  ``device`` is torch's default device
    while building: ``"meta"`` allocates nothing (GPT-2 XL and GenSLM-25B
    are ~100 GB in fp32), ``"cuda"`` builds in place.  Outputs: UNet
    probabilities (sigmoid), UNet64 logits, GPT-2/GenSLM token logits,
    BraggNN the (x, y) peak position.  ``ImportError`` (with an install
    hint) without torch.
    """
    return _with_model(name).builder.build(device)


def torch_param_count(name: Union[str, Workload]) -> int:
    """``sum(p.numel() for p in build_torch_model(name).parameters())``, tied ones once.

    Built on the meta device: no weights are allocated, GenSLM-25B included."""
    return sum(p.numel() for p in build_torch_model(name, device="meta").parameters())


def example_input(w: Union[str, Workload], batch: int, size: Optional[int] = None,
                  device: Optional[Any] = None):
    """A random batch for the workload's torch model, shaped by its ``model_input``.

    Images: normal floats, batch x C x H x W; token ids in ``[0, vocab)``,
    batch x length.  ``size`` replaces the image side or the sequence length."""
    spec = _with_model(w).model_input  # an unknown workload fails before torch loads
    return _torch_models().example_input(spec, batch, size, device)
