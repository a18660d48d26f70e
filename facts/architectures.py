"""The architectures of the workloads: each model's parameter tensors and forward MACs, from its shapes.

:class:`Net` accumulates parameter tensors (``named_parameters()`` names, in
``parameters()`` order) and forward multiply-accumulates layer by layer; one
function per architecture builds it (:func:`buda_unet`, :func:`milesial_unet`,
:func:`braggnn`, :func:`gpt2_layers`, :func:`neox_layers`), and the tables
:data:`GPT2` and :data:`GENSLM` hold the transformer configurations.
:mod:`facts.workloads` turns them into its table of :class:`~facts.workloads.Workload`.

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

from typing import List, Tuple

__all__ = ["Net", "buda_unet", "milesial_unet", "braggnn", "gpt2_layers", "neox_layers", "attention_heads",
           "UNET_HW", "BRAGG_PATCH", "BRAGG_FC", "GPT2_VOCAB", "GPT2_CTX", "GPT2", "GENSLM_VOCAB", "GENSLM_SEQ",
           "GENSLM"]


class Net:
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

UNET_HW = 256  # ALCF's kaggle_3m slices: 256 x 256 x 3


def buda_unet(features: int = 32, cin: int = 3, cout: int = 1, hw: int = UNET_HW) -> Net:
    net = Net()

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


def milesial_unet(cin: int = 3, classes: int = 1, hw: int = UNET_HW) -> Net:
    net = Net()

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

BRAGG_PATCH = 11
BRAGG_FC = (16, 8, 4, 2)


def braggnn(patch: int = BRAGG_PATCH, fcsz: Tuple[int, ...] = BRAGG_FC) -> Net:
    net = Net()
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

GPT2_VOCAB = 50257
GPT2_CTX = 1024
GPT2 = {  # name: (n_embd, n_layer, n_head, title size)
    "gpt2-small": (768, 12, 12, "small, 124M"),
    "gpt2-medium": (1024, 24, 16, "medium, 355M"),
    "gpt2-large": (1280, 36, 20, "large, 774M"),
    "gpt2-xl": (1600, 48, 25, "XL, 1.5B"),
}

GENSLM_VOCAB = 69  # codon_wordlevel_69vocab.json: 64 codons + 5 special tokens
GENSLM_SEQ = 2048  # codons per sample (genslm/inference.py seq_length)
GENSLM = {  # name: (hidden, layers, heads, intermediate, config file, title size)
    "genslm-25m": (512, 8, 8, 2048, "neox_25,290,752.json", "25M"),
    "genslm-250m": (1800, 12, 16, 2048, "neox_244,464,576.json", "250M"),
    "genslm-2.5b": (3840, 28, 32, 4096, "neox_2,533,931,008.json", "2.5B"),
    "genslm-25b": (8096, 64, 64, 8000, "neox_25,076,188,032.json", "25B"),
}


def gpt2_layers(h: int, n_layer: int, vocab: int = GPT2_VOCAB, ctx: int = GPT2_CTX) -> Net:
    net = Net()
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


def neox_layers(h: int, n_layer: int, inter: int, vocab: int = GENSLM_VOCAB) -> Net:
    net = Net()
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


def attention_heads(hidden: int, heads: int) -> int:
    """Largest head count <= ``heads`` that divides ``hidden`` (see genslm note)."""
    return max(d for d in range(1, heads + 1) if hidden % d == 0)
