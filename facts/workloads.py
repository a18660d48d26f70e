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

Architectures and where the counts come from (docs/reference.md, "Workloads"):

* ``unet`` -- mateuszbuda/brain-segmentation-pytorch ``unet.py``, the
  kaggle_3m brain-MRI UNet ALCF ran: in 3, out 1, init_features 32;
  blocks of two [Conv3x3(bias=False), BatchNorm2d, ReLU]; MaxPool2d(2);
  ConvTranspose2d(k=2, s=2, bias) up-sampling; Conv1x1(bias); sigmoid.
  7,763,041 parameters.
* ``unet64`` -- milesial/Pytorch-UNet ``unet_model.py`` with n_channels=3,
  n_classes=1, bilinear=False: DoubleConv = [Conv3x3(bias=False),
  BatchNorm2d, ReLU] x 2, widths 64-128-256-512-1024, ``Up`` =
  ConvTranspose2d(c, c/2, k=2, s=2, bias) then DoubleConv(c, c/2),
  ``OutConv`` = Conv1x1(64, 1, bias).  31,037,633 parameters (the first
  attempt, the plain repository defaults, hits it exactly).
* ``gpt2-*`` -- HuggingFace GPT2LMHeadModel (vocab 50257, 1024 positions,
  LM head tied to ``wte`` so it adds nothing): per block 12 h^2 + 13 h,
  plus V h + 1024 h + 2 h.
* ``genslm-*`` -- GPT-NeoX (HuggingFace GPTNeoXForCausalLM) configs of
  ramanathanlab/genslm ``genslm/architectures/neox/neox_<count>.json``:
  codon vocabulary 69 (64 codons + 5 specials, no padding), untied
  ``embed_in``/``embed_out`` (no bias), rotary positions (rotary_pct 0.25,
  no learned position table), biased LayerNorms, QKV, dense and MLP.
  Count = L (4h^2 + 2hI + 9h + I) + 2Vh + 2h.  The file names carry the
  counts; two of the committed JSONs do not reproduce their own name:

  ============  =====  ====  =====  =====  ==============================
  name          h      L     heads  I      count
  ============  =====  ====  =====  =====  ==============================
  genslm-25m    512    8     8      2048   25,290,752 (JSON as committed)
  genslm-250m   1800   12    16     2048   244,464,576 (JSON says h 1840)
  genslm-2.5b   3840   28    32     4096   2,533,931,008 (as committed)
  genslm-25b    8096   64    64     8000   25,076,188,032 (JSON: h 8196)
  ============  =====  ====  =====  =====  ==============================

  The committed h=1840 gives 253,429,376 and h=8196 gives 25,595,734,832;
  keeping every other field (V 69, L, I) the hidden size that gives the
  named count is unique: 1800 and 8096.  The counts in the names are the
  ones docs/reference.md lists (and the GenSLM 25M/250M/2.5B/25B sizes of
  Zvyagin et al., 2022), so we keep them.  Neither 1800/16 nor 8096/64
  is a whole head size, so the torch module attends with the largest head
  count <= the config's that divides h (15 and 46); the number of heads
  changes no parameter.
* ``braggnn`` -- lzhengchun/BraggNN ``model.py`` (Liu et al., IUCrJ 2022),
  ``BraggNN(imgsz=11, fcsz=(16, 8, 4, 2))`` as in its released
  ``models/fc16_8_4_2-sz11.pth``: Conv3x3(1->64), non-local block on the
  64 channels (1x1 theta/phi/g 64->32, out 32->64, all biased), Conv3x3
  (64->32), Conv3x3(32->8), all valid padding (11->9->7->5), then Linear
  200-16-8-4-2 and the output Linear(2, 2); LeakyReLU(0.01).  33,172
  parameters.  The NLB is assigned before the conv and dense Sequentials,
  so its tensors come first in ``parameters()``.

FLOPs per training sample (forward + backward): backward costs about two
forwards (gradients w.r.t. activations and w.r.t. weights), so training
= 3 x forward, forward = 2 x MACs.  Transformers use the rule
6 P per token over *all* parameters P, embeddings included (Kaplan et al.
2020 drop them: 32 % of GPT-2 small, 0.3 % of GenSLM-25M), times the
tokens per sample: 1024 (GPT-2), 2048 codons (GenSLM's ``seq_length`` in
genslm/inference.py).  The attention-score term, 6 L T h per token
(Kaplan's, causal mask ignored), is left out: it would add 7.6 % for
GPT-2 small and 33 % / 18 % / 8.7 % / 4.2 % for GenSLM 25M / 250M / 2.5B
/ 25B.  UNets and BraggNN are counted layer by layer from their shapes:
Conv k x k = Cout Hout Wout Cin k^2 MACs; ConvTranspose2d(k=2, s=2) = Hin
Win Cin Cout k^2 MACs (each input pixel writes its own k x k block);
Linear = in x out; the NLB's two attention matmuls = 2 (HW)^2 C/2; bias
adds, BatchNorm, activations, pooling, concatenation and softmax are not
counted (< 1 %).  The forward count equals torch.utils.flop_counter's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

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


class _Net:
    """Accumulates parameter tensors (in registration order) and forward MACs."""

    def __init__(self) -> None:
        self.layers: List[Tuple[str, int]] = []
        self.macs = 0

    def tensor(self, name: str, numel: int) -> None:
        self.layers.append((name, numel))

    def conv(self, name: str, cin: int, cout: int, k: int, out_hw: int, bias: bool) -> None:
        self.tensor(name + ".weight", cout * cin * k * k)
        if bias:
            self.tensor(name + ".bias", cout)
        self.macs += cout * out_hw * out_hw * cin * k * k

    def conv_transpose(self, name: str, cin: int, cout: int, k: int, in_hw: int) -> None:
        self.tensor(name + ".weight", cin * cout * k * k)
        self.tensor(name + ".bias", cout)
        self.macs += in_hw * in_hw * cin * cout * k * k

    def norm(self, name: str, c: int) -> None:
        # BatchNorm/LayerNorm affine weight and bias; running stats are buffers.
        self.tensor(name + ".weight", c)
        self.tensor(name + ".bias", c)

    def linear(self, name: str, fin: int, fout: int, bias: bool = True) -> None:
        self.tensor(name + ".weight", fin * fout)
        if bias:
            self.tensor(name + ".bias", fout)
        self.macs += fin * fout


# --- UNets -------------------------------------------------------------------

_UNET_HW = 256  # ALCF's kaggle_3m slices: 256 x 256 x 3


def _buda_unet(features: int = 32, cin: int = 3, cout: int = 1, hw: int = _UNET_HW) -> _Net:
    net = _Net()

    def block(module: str, tag: str, c_in: int, c_out: int, size: int) -> None:
        for i, c in ((1, c_in), (2, c_out)):
            net.conv(f"{module}.{tag}conv{i}", c, c_out, 3, size, bias=False)
            net.norm(f"{module}.{tag}norm{i}", c_out)

    widths = [features * 2**i for i in range(5)]
    c, size = cin, hw
    for i in range(4):
        block(f"encoder{i + 1}", f"enc{i + 1}", c, widths[i], size)
        c, size = widths[i], size // 2
    block("bottleneck", "bottleneck", c, widths[4], size)
    for i in (4, 3, 2, 1):
        net.conv_transpose(f"upconv{i}", widths[i], widths[i - 1], 2, size)
        size *= 2
        block(f"decoder{i}", f"dec{i}", 2 * widths[i - 1], widths[i - 1], size)
    net.conv("conv", features, cout, 1, size, bias=True)
    return net


def _milesial_unet(cin: int = 3, classes: int = 1, hw: int = _UNET_HW) -> _Net:
    net = _Net()

    def double_conv(prefix: str, c_in: int, c_out: int, size: int) -> None:
        net.conv(prefix + ".double_conv.0", c_in, c_out, 3, size, bias=False)
        net.norm(prefix + ".double_conv.1", c_out)
        net.conv(prefix + ".double_conv.3", c_out, c_out, 3, size, bias=False)
        net.norm(prefix + ".double_conv.4", c_out)

    widths = [64, 128, 256, 512, 1024]
    size = hw
    double_conv("inc", cin, 64, size)
    for i in range(1, 5):
        size //= 2
        double_conv(f"down{i}.maxpool_conv.1", widths[i - 1], widths[i], size)
    for i in range(1, 5):
        c = widths[5 - i]
        net.conv_transpose(f"up{i}.up", c, c // 2, 2, size)
        size *= 2
        double_conv(f"up{i}.conv", c, c // 2, size)
    net.conv("outc.conv", 64, classes, 1, size, bias=True)
    return net


# --- BraggNN -----------------------------------------------------------------

_BRAGG_PATCH = 11
_BRAGG_FC = (16, 8, 4, 2)


def _braggnn(patch: int = _BRAGG_PATCH, fcsz: Tuple[int, ...] = _BRAGG_FC) -> _Net:
    net = _Net()
    chans = (64, 32, 8)
    hw_nlb = patch - 2  # the NLB runs on the first conv's output
    inter = chans[0] // 2
    for part in ("theta_layer", "phi_layer", "g_layer"):
        net.conv("nlb." + part, chans[0], inter, 1, hw_nlb, bias=True)
    net.macs += 2 * (hw_nlb * hw_nlb) ** 2 * inter  # theta^T phi, then attention x g
    net.conv("nlb.out_cnn", inter, chans[0], 1, hw_nlb, bias=True)
    c, size = 1, patch
    for i, oc in enumerate(chans):  # cnn_layers: Conv, LeakyReLU, Conv, ...
        size -= 2
        net.conv(f"cnn_layers.{2 * i}", c, oc, 3, size, bias=True)
        c = oc
    fin = size * size * c
    for i, fout in enumerate(fcsz + (2,)):  # dense_layers: Linear, LeakyReLU, ...
        net.linear(f"dense_layers.{2 * i}", fin, fout)
        fin = fout
    return net


# --- Transformers ------------------------------------------------------------

_GPT2_VOCAB = 50257
_GPT2_CTX = 1024
_GPT2 = {  # name: (n_embd, n_layer, n_head, title size)
    "gpt2-small": (768, 12, 12, "small, 124M"),
    "gpt2-medium": (1024, 24, 16, "medium, 355M"),
    "gpt2-large": (1280, 36, 20, "large, 774M"),
    "gpt2-xl": (1600, 48, 25, "XL, 1.5B"),
}

_GENSLM_VOCAB = 69  # codon_wordlevel_69vocab.json: 64 codons + 5 special tokens
_GENSLM_SEQ = 2048  # codons per sample (genslm/inference.py seq_length)
_GENSLM = {  # name: (hidden, layers, heads, intermediate, config file, title size)
    "genslm-25m": (512, 8, 8, 2048, "neox_25,290,752.json", "25M"),
    "genslm-250m": (1800, 12, 16, 2048, "neox_244,464,576.json", "250M"),
    "genslm-2.5b": (3840, 28, 32, 4096, "neox_2,533,931,008.json", "2.5B"),
    "genslm-25b": (8096, 64, 64, 8000, "neox_25,076,188,032.json", "25B"),
}


def _gpt2_layers(h: int, n_layer: int, vocab: int = _GPT2_VOCAB, ctx: int = _GPT2_CTX) -> _Net:
    net = _Net()
    net.tensor("transformer.wte.weight", vocab * h)
    net.tensor("transformer.wpe.weight", ctx * h)
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        net.norm(p + "ln_1", h)
        net.linear(p + "attn.c_attn", h, 3 * h)
        net.linear(p + "attn.c_proj", h, h)
        net.norm(p + "ln_2", h)
        net.linear(p + "mlp.c_fc", h, 4 * h)
        net.linear(p + "mlp.c_proj", 4 * h, h)
    net.norm("transformer.ln_f", h)
    return net  # lm_head.weight is wte.weight: named_parameters() lists it once


def _neox_layers(h: int, n_layer: int, inter: int, vocab: int = _GENSLM_VOCAB) -> _Net:
    net = _Net()
    net.tensor("gpt_neox.embed_in.weight", vocab * h)
    for i in range(n_layer):
        p = f"gpt_neox.layers.{i}."
        net.norm(p + "input_layernorm", h)
        net.norm(p + "post_attention_layernorm", h)
        net.linear(p + "attention.query_key_value", h, 3 * h)
        net.linear(p + "attention.dense", h, h)
        net.linear(p + "mlp.dense_h_to_4h", h, inter)
        net.linear(p + "mlp.dense_4h_to_h", inter, h)
    net.norm("gpt_neox.final_layer_norm", h)
    net.tensor("embed_out.weight", vocab * h)
    return net


def _attention_heads(hidden: int, heads: int) -> int:
    """Largest head count <= ``heads`` that divides ``hidden`` (see genslm note)."""
    return max(d for d in range(1, heads + 1) if hidden % d == 0)


# --- The table ---------------------------------------------------------------


def _workload(name, title, net, sample, flops, source, model_input, factory, **kwargs) -> Workload:
    layers = tuple(net.layers)
    return Workload(name, title, sum(n for _, n in layers), sample, float(flops), layers, source,
                    Builder(factory, tuple(kwargs.items())), model_input)


def _table() -> Dict[str, Workload]:
    table: Dict[str, Workload] = {}
    image = ModelInput("image", (3, _UNET_HW, _UNET_HW))
    net = _buda_unet()
    table["unet"] = _workload(
        "unet", "UNet-2D (Buda brain-MRI, 32 filters)", net,
        f"{_UNET_HW}x{_UNET_HW}x3 image", 3 * 2 * net.macs,
        "mateuszbuda/brain-segmentation-pytorch unet.py, UNet(3, 1, init_features=32); "
        "ALCF kaggle_3m brain-MRI UNet",
        image, "BudaUNet", in_channels=3, out_channels=1, init_features=32)
    net = _milesial_unet()
    table["unet64"] = _workload(
        "unet64", "UNet-2D (milesial, 64 filters, BatchNorm)", net,
        f"{_UNET_HW}x{_UNET_HW}x3 image", 3 * 2 * net.macs,
        "milesial/Pytorch-UNet unet_model.py, UNet(n_channels=3, n_classes=1, bilinear=False)",
        image, "MilesialUNet", n_channels=3, n_classes=1)
    tokens = ModelInput("tokens", (_GPT2_CTX,), _GPT2_VOCAB)
    for name, (h, n_layer, heads, size) in _GPT2.items():
        net = _gpt2_layers(h, n_layer)
        params = sum(n for _, n in net.layers)
        table[name] = _workload(
            name, f"GPT-2 {size}", net, f"{_GPT2_CTX}-token sequence", 6 * params * _GPT2_CTX,
            "HuggingFace GPT2LMHeadModel config (vocab 50257, n_positions 1024, "
            "tied LM head); Radford et al. 2019",
            tokens, "GPT2LMHeadModel", h=h, n_layer=n_layer, heads=heads,
            vocab=_GPT2_VOCAB, ctx=_GPT2_CTX)
    codons = ModelInput("tokens", (_GENSLM_SEQ,), _GENSLM_VOCAB)
    for name, (h, n_layer, heads, inter, config, size) in _GENSLM.items():
        net = _neox_layers(h, n_layer, inter)
        params = sum(n for _, n in net.layers)
        table[name] = _workload(
            name, f"GenSLM {size} (GPT-NeoX, codon vocabulary)", net,
            f"{_GENSLM_SEQ}-codon sequence", 6 * params * _GENSLM_SEQ,
            f"ramanathanlab/genslm genslm/architectures/neox/{config} (hidden size {h}, "
            f"{n_layer} layers, intermediate {inter}, vocab {_GENSLM_VOCAB}, untied "
            "embeddings, rotary); Zvyagin et al. 2022",
            codons, "GPTNeoXForCausalLM", h=h, n_layer=n_layer,
            heads=_attention_heads(h, heads), inter=inter, vocab=_GENSLM_VOCAB)
    net = _braggnn()
    table["braggnn"] = _workload(
        "braggnn", "BraggNN (patch 11, dense 16-8-4-2)", net,
        f"{_BRAGG_PATCH}x{_BRAGG_PATCH}x1 diffraction-peak patch", 3 * 2 * net.macs,
        "lzhengchun/BraggNN model.py, BraggNN(imgsz=11, fcsz=(16, 8, 4, 2)); "
        "Liu et al., IUCrJ 2022",
        ModelInput("image", (1, _BRAGG_PATCH, _BRAGG_PATCH)), "BraggNN",
        imgsz=_BRAGG_PATCH, fcsz=_BRAGG_FC)
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
