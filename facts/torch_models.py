"""The workloads' real ``torch.nn.Module`` classes, for facts.workloads.

Every class reproduces the upstream model named in its docstring with the
same attribute names, so ``named_parameters()`` yields exactly the tensors
(names, sizes and order) that the analytic ``Workload.layers`` of
:mod:`facts.workloads` lists; where each architecture and its count come
from is documented there.  This module imports torch at the top and is
itself imported only when a torch model is wanted: by
:meth:`facts.workloads.Builder.build` (behind
:func:`facts.workloads.build_torch_model`) and
:func:`facts.workloads.example_input`.  It imports nothing else of
the project, so it closes no import circle.

Each workload row names one class of :data:`MODELS` and its keyword
arguments (``Workload.builder``); :func:`build` instantiates it on a
chosen device and :func:`example_input` draws a batch shaped like the
row's ``Workload.model_input``.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Any, Mapping, Optional

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "MODELS", "build", "example_input",
    "BudaUNet", "MilesialUNet", "BraggNN", "GPT2LMHeadModel", "GPTNeoXForCausalLM",
]


class BudaUNet(nn.Module):
    """mateuszbuda/brain-segmentation-pytorch UNet (same attribute names)."""

    def __init__(self, in_channels=3, out_channels=1, init_features=32):
        super().__init__()
        f = init_features
        self.encoder1 = self._block(in_channels, f, "enc1")
        self.pool1 = nn.MaxPool2d(2, 2)
        self.encoder2 = self._block(f, 2 * f, "enc2")
        self.pool2 = nn.MaxPool2d(2, 2)
        self.encoder3 = self._block(2 * f, 4 * f, "enc3")
        self.pool3 = nn.MaxPool2d(2, 2)
        self.encoder4 = self._block(4 * f, 8 * f, "enc4")
        self.pool4 = nn.MaxPool2d(2, 2)
        self.bottleneck = self._block(8 * f, 16 * f, "bottleneck")
        self.upconv4 = nn.ConvTranspose2d(16 * f, 8 * f, kernel_size=2, stride=2)
        self.decoder4 = self._block(16 * f, 8 * f, "dec4")
        self.upconv3 = nn.ConvTranspose2d(8 * f, 4 * f, kernel_size=2, stride=2)
        self.decoder3 = self._block(8 * f, 4 * f, "dec3")
        self.upconv2 = nn.ConvTranspose2d(4 * f, 2 * f, kernel_size=2, stride=2)
        self.decoder2 = self._block(4 * f, 2 * f, "dec2")
        self.upconv1 = nn.ConvTranspose2d(2 * f, f, kernel_size=2, stride=2)
        self.decoder1 = self._block(2 * f, f, "dec1")
        self.conv = nn.Conv2d(f, out_channels, kernel_size=1)

    @staticmethod
    def _block(cin, features, name):
        return nn.Sequential(OrderedDict([
            (name + "conv1", nn.Conv2d(cin, features, 3, padding=1, bias=False)),
            (name + "norm1", nn.BatchNorm2d(features)),
            (name + "relu1", nn.ReLU(inplace=True)),
            (name + "conv2", nn.Conv2d(features, features, 3, padding=1, bias=False)),
            (name + "norm2", nn.BatchNorm2d(features)),
            (name + "relu2", nn.ReLU(inplace=True)),
        ]))

    def forward(self, x):
        enc1 = self.encoder1(x)
        enc2 = self.encoder2(self.pool1(enc1))
        enc3 = self.encoder3(self.pool2(enc2))
        enc4 = self.encoder4(self.pool3(enc3))
        out = self.bottleneck(self.pool4(enc4))
        for up, dec, skip in ((self.upconv4, self.decoder4, enc4),
                              (self.upconv3, self.decoder3, enc3),
                              (self.upconv2, self.decoder2, enc2),
                              (self.upconv1, self.decoder1, enc1)):
            out = dec(torch.cat((up(out), skip), dim=1))
        return torch.sigmoid(self.conv(out))


class DoubleConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True))

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(cin, cout)

    def forward(self, x1, x2):
        x1 = self.up(x1)
        dy, dx = x2.size(2) - x1.size(2), x2.size(3) - x1.size(3)
        x1 = F.pad(x1, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([x2, x1], dim=1))


class OutConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=1)

    def forward(self, x):
        return self.conv(x)


class MilesialUNet(nn.Module):
    """milesial/Pytorch-UNet UNet with bilinear=False (same attribute names)."""

    def __init__(self, n_channels=3, n_classes=1):
        super().__init__()
        self.inc = DoubleConv(n_channels, 64)
        self.down1, self.down2 = Down(64, 128), Down(128, 256)
        self.down3, self.down4 = Down(256, 512), Down(512, 1024)
        self.up1, self.up2 = Up(1024, 512), Up(512, 256)
        self.up3, self.up4 = Up(256, 128), Up(128, 64)
        self.outc = OutConv(64, n_classes)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.up1(self.down4(x4), x4)
        x = self.up3(self.up2(x, x3), x2)
        return self.outc(self.up4(x, x1))  # logits


class NLB(nn.Module):
    """BraggNN's non-local block (the repository's fixed forward: phi and g used)."""

    def __init__(self, in_ch):
        super().__init__()
        self.inter_ch = in_ch // 2
        self.theta_layer = nn.Conv2d(in_ch, self.inter_ch, 1)
        self.phi_layer = nn.Conv2d(in_ch, self.inter_ch, 1)
        self.g_layer = nn.Conv2d(in_ch, self.inter_ch, 1)
        self.atten_act = nn.Softmax(dim=-1)
        self.out_cnn = nn.Conv2d(self.inter_ch, in_ch, 1)

    def forward(self, x):
        b, _, h, w = x.size()
        theta = self.theta_layer(x).view(b, self.inter_ch, -1).permute(0, 2, 1)
        phi = self.phi_layer(x).view(b, self.inter_ch, -1)
        g = self.g_layer(x).view(b, self.inter_ch, -1).permute(0, 2, 1)
        att = self.atten_act(torch.matmul(theta, phi))
        y = torch.matmul(att, g).permute(0, 2, 1).reshape(b, self.inter_ch, h, w)
        return self.out_cnn(y) + x


class BraggNN(nn.Module):
    """lzhengchun/BraggNN (same attribute names, so the NLB's tensors come first)."""

    def __init__(self, imgsz=11, fcsz=(16, 8, 4, 2)):
        super().__init__()
        chans, cnn, size = (64, 32, 8), [], imgsz
        for ic, oc in zip((1,) + chans[:-1], chans):
            cnn += [nn.Conv2d(ic, oc, 3), nn.LeakyReLU(0.01)]
            size -= 2
        self.nlb = NLB(chans[0])
        dense = []
        for ic, oc in zip((size * size * chans[-1],) + tuple(fcsz[:-1]), fcsz):
            dense += [nn.Linear(ic, oc), nn.LeakyReLU(0.01)]
        dense.append(nn.Linear(fcsz[-1], 2))
        self.cnn_layers = nn.Sequential(*cnn)
        self.dense_layers = nn.Sequential(*dense)

    def forward(self, x):
        out = self.nlb(self.cnn_layers[0](x))
        out = self.cnn_layers[1:](out)
        return self.dense_layers(out.flatten(1))


class Conv1D(nn.Module):
    """HF GPT-2's transposed Linear: weight is (in, out)."""

    def __init__(self, nf, nx):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight).view(
            *x.shape[:-1], self.weight.size(1))


class GPT2Attention(nn.Module):
    def __init__(self, h, heads):
        super().__init__()
        self.heads = heads
        self.c_attn = Conv1D(3 * h, h)
        self.c_proj = Conv1D(h, h)

    def forward(self, x):
        b, t, h = x.shape
        q, k, v = (z.view(b, t, self.heads, -1).transpose(1, 2)
                   for z in self.c_attn(x).split(h, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, h))


class GPT2MLP(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.c_fc = Conv1D(4 * h, h)
        self.c_proj = Conv1D(h, 4 * h)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class GPT2Block(nn.Module):
    def __init__(self, h, heads):
        super().__init__()
        self.ln_1 = nn.LayerNorm(h, eps=1e-5)
        self.attn = GPT2Attention(h, heads)
        self.ln_2 = nn.LayerNorm(h, eps=1e-5)
        self.mlp = GPT2MLP(h)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    def __init__(self, h, n_layer, heads, vocab=50257, ctx=1024):
        super().__init__()
        self.wte = nn.Embedding(vocab, h)
        self.wpe = nn.Embedding(ctx, h)
        self.h = nn.ModuleList(GPT2Block(h, heads) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(h, eps=1e-5)

    def forward(self, ids):
        pos = torch.arange(ids.size(1), device=ids.device)
        x = self.wte(ids) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


class GPT2LMHeadModel(nn.Module):
    """GPT-2 with the LM head tied to ``wte`` (HF layout and names)."""

    def __init__(self, h, n_layer, heads, vocab=50257, ctx=1024):
        super().__init__()
        self.transformer = GPT2Model(h, n_layer, heads, vocab, ctx)
        self.lm_head = nn.Linear(h, vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, ids):
        return self.lm_head(self.transformer(ids))  # logits


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class NeoXAttention(nn.Module):
    def __init__(self, h, heads, rotary_pct=0.25, base=10000, ctx=2048):
        super().__init__()
        self.heads = heads
        self.head_size = h // heads
        self.rotary_ndims = int(self.head_size * rotary_pct)
        inv = 1.0 / base ** (torch.arange(0, self.rotary_ndims, 2).float() / self.rotary_ndims)
        self.register_buffer("inv_freq", inv, persistent=False)
        self.query_key_value = nn.Linear(h, 3 * h)
        self.dense = nn.Linear(h, h)

    def forward(self, x):
        b, t, h = x.shape
        qkv = self.query_key_value(x).view(b, t, self.heads, 3 * self.head_size)
        q, k, v = (z.transpose(1, 2) for z in qkv.split(self.head_size, dim=-1))
        r = self.rotary_ndims
        freqs = torch.outer(torch.arange(t, device=x.device).float(), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(q.dtype), emb.sin().to(q.dtype)
        q = torch.cat((q[..., :r] * cos + rotate_half(q[..., :r]) * sin, q[..., r:]), -1)
        k = torch.cat((k[..., :r] * cos + rotate_half(k[..., :r]) * sin, k[..., r:]), -1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.dense(y.transpose(1, 2).reshape(b, t, h))


class NeoXMLP(nn.Module):
    def __init__(self, h, inter):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(h, inter)
        self.dense_4h_to_h = nn.Linear(inter, h)

    def forward(self, x):
        return self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(x), approximate="tanh"))


class NeoXLayer(nn.Module):
    def __init__(self, h, heads, inter):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(h, eps=1e-5)
        self.post_attention_layernorm = nn.LayerNorm(h, eps=1e-5)
        self.attention = NeoXAttention(h, heads)
        self.mlp = NeoXMLP(h, inter)

    def forward(self, x):  # parallel residual, as GPT-NeoX
        return (x + self.attention(self.input_layernorm(x))
                + self.mlp(self.post_attention_layernorm(x)))


class GPTNeoXModel(nn.Module):
    def __init__(self, h, n_layer, heads, inter, vocab):
        super().__init__()
        self.embed_in = nn.Embedding(vocab, h)
        self.layers = nn.ModuleList(NeoXLayer(h, heads, inter) for _ in range(n_layer))
        self.final_layer_norm = nn.LayerNorm(h, eps=1e-5)

    def forward(self, ids):
        x = self.embed_in(ids)
        for layer in self.layers:
            x = layer(x)
        return self.final_layer_norm(x)


class GPTNeoXForCausalLM(nn.Module):
    """GPT-NeoX with untied output embedding (HF layout and names)."""

    def __init__(self, h, n_layer, heads, inter, vocab=69):
        super().__init__()
        self.gpt_neox = GPTNeoXModel(h, n_layer, heads, inter, vocab)
        self.embed_out = nn.Linear(h, vocab, bias=False)

    def forward(self, ids):
        return self.embed_out(self.gpt_neox(ids))  # logits


MODELS = {cls.__name__: cls for cls in (
    BudaUNet, MilesialUNet, BraggNN, GPT2LMHeadModel, GPTNeoXForCausalLM)}


def build(factory: str, kwargs: Mapping[str, Any], device: Optional[Any] = None) -> nn.Module:
    """``MODELS[factory](**kwargs)`` with ``device`` as torch's default device while building.

    ``"meta"`` allocates nothing (how GPT-2 XL and GenSLM-25B, ~100 GB in
    fp32, are built for counting), ``"cuda"`` builds in place, ``None``
    keeps torch's default (the CPU).
    """
    try:
        cls = MODELS[factory]
    except KeyError:
        raise ValueError(f"unknown torch model {factory!r}; known: {', '.join(MODELS)}") from None
    with torch.device(device) if device is not None else contextlib.nullcontext():
        return cls(**kwargs)


def example_input(model_input, batch: int, size: Optional[int] = None,
                  device: Optional[Any] = None) -> torch.Tensor:
    """A random batch shaped as ``model_input`` says (a ``workloads.ModelInput``).

    Images are standard-normal floats, batch x C x H x W; token sequences
    are ids drawn uniformly from ``[0, vocab)``, batch x length.  ``size``
    replaces the image side or the sequence length (see
    ``ModelInput.batch_shape``).  Only the shape matters to the callers:
    timing a forward and backward pass, or checking that a model runs.
    """
    shape = model_input.batch_shape(batch, size)
    if model_input.kind == "tokens":
        return torch.randint(0, model_input.vocab, shape, device=device)
    return torch.randn(*shape, device=device)
