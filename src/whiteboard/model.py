"""The whiteboard segmentation CNN: a compact U-Net built only from ops that webcnn supports.

Input  1x3x360x640 RGB in [0, 1].
Output 1x3x360x640 class probabilities (Softmax over channels): board, ink, foreground.

Layout (resolution: channels):
  full  : 3x3 conv 3->full_res_width              (keeps thin strokes at full resolution)
  1/2   : 3x3 s2 conv 3->w0, separable block
  1/4   : separable s2 block w0->w1, separable block
  1/8   : separable s2 block w1->w2, residual separable blocks with dilation 1,2,4,8,16
          (large receptive field for people and lighting without a 1/16 level: 360/16 is not whole)
  decoder: bilinear x2 Resize, concat skip, separable blocks (decoder_blocks residual ones at 1/4 and 1/2),
           back to full resolution, 1x1 head; optionally (refine) a residual depthwise 3x3 + 1x1 over the logits
           and the full-resolution features, which sharpens stroke rims.
Every op maps onto ONNX Conv, BatchNormalization, Relu, Add, Concat, Resize and Softmax.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

INPUT_SHAPE = (1, 3, 360, 640)


@dataclass
class ModelConfig:
    widths: tuple = (16, 32, 80)      # channels at 1/2, 1/4, 1/8 resolution
    full_res_width: int = 12          # channels of the full-resolution branch
    dilations: tuple = (1, 2, 4, 8, 16)  # residual blocks at 1/8 resolution
    decoder_blocks: tuple = (2, 2)    # residual blocks after the merge at 1/4 and 1/2 resolution
    head_width: int = 0               # channels of the full-resolution decoder block (0: twice full_res_width)
    refine: bool = False              # a residual 3x3 block at full resolution over the logits and the full-res features
    n_classes: int = 3


def conv_bn_relu(cin, cout, k=3, stride=1, dilation=1, groups=1):
    pad = dilation * (k - 1) // 2
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, dilation, groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Separable(nn.Module):
    """Depthwise 3x3 then pointwise 1x1, each with BatchNorm; optional residual Add."""

    def __init__(self, cin, cout, stride=1, dilation=1, residual=False):
        super().__init__()
        self.depthwise = conv_bn_relu(cin, cin, 3, stride, dilation, groups=cin)
        self.pointwise = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = residual and cin == cout and stride == 1

    def forward(self, x):
        y = self.pointwise(self.depthwise(x))
        return F.relu(y + x) if self.residual else F.relu(y)


class WhiteboardNet(nn.Module):
    def __init__(self, cfg: ModelConfig = ModelConfig()):
        super().__init__()
        self.cfg = cfg
        w0, w1, w2 = cfg.widths
        self.full = conv_bn_relu(3, cfg.full_res_width)
        self.enc1 = nn.Sequential(conv_bn_relu(3, w0, stride=2), Separable(w0, w0, residual=True))
        self.enc2 = nn.Sequential(Separable(w0, w1, stride=2), Separable(w1, w1, residual=True))
        self.enc3 = nn.Sequential(Separable(w1, w2, stride=2), *[Separable(w2, w2, dilation=d, residual=True) for d in cfg.dilations])
        n2, n1 = cfg.decoder_blocks
        self.dec2 = nn.Sequential(Separable(w2 + w1, w1), *[Separable(w1, w1, residual=True) for _ in range(n2)])
        self.dec1 = nn.Sequential(Separable(w1 + w0, w0), *[Separable(w0, w0, residual=True) for _ in range(n1)])
        head_width = cfg.head_width or cfg.full_res_width * 2
        self.dec0 = Separable(w0 + cfg.full_res_width, head_width)
        self.head = nn.Conv2d(head_width, cfg.n_classes, 1)
        if cfg.refine:
            # sharpens class boundaries (stroke rims) where the image's own edges are; zero-initialised: starts as identity
            width = cfg.n_classes + cfg.full_res_width
            self.refine_dw = conv_bn_relu(width, width, 3, groups=width)
            self.refine_pw = nn.Conv2d(width, cfg.n_classes, 1)
            nn.init.zeros_(self.refine_pw.weight)
            nn.init.zeros_(self.refine_pw.bias)

    @staticmethod
    def up(x):
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

    def forward_logits(self, x):
        f0 = self.full(x)
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([self.up(e3), e2], 1))
        d1 = self.dec1(torch.cat([self.up(d2), e1], 1))
        d0 = self.dec0(torch.cat([self.up(d1), f0], 1))
        logits = self.head(d0)
        if self.cfg.refine:
            logits = logits + self.refine_pw(self.refine_dw(torch.cat([logits, f0], 1)))
        return logits

    def forward(self, x):
        return self.forward_logits(x)


class ExportWrapper(nn.Module):
    """What ships: probabilities, so the app needs no extra op after the network."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.softmax(self.net.forward_logits(x), dim=1)


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def count_flops(model, input_shape=INPUT_SHAPE):
    """Multiply-accumulates of Conv layers (x2 = FLOPs). Elementwise ops add well under 2%."""
    macs = 0

    def hook(module, inputs, output):
        nonlocal macs
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        macs += output.numel() * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(input_shape))
    model.train(was_training)
    for h in handles:
        h.remove()
    return 2 * macs


def config_dict(cfg: ModelConfig):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def build(cfg_dict=None):
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in (cfg_dict or {}).items()}
    if cfg_dict and "decoder_blocks" not in values:
        values["decoder_blocks"] = (1, 1)  # configs stored before the key existed had one block each
    cfg = ModelConfig(**values)
    return WhiteboardNet(cfg)


ALLOWED_ONNX_OPS = {"Conv", "ConvTranspose", "BatchNormalization", "Relu", "LeakyRelu", "Sigmoid", "Clip", "HardSwish",
                    "Add", "Mul", "Concat", "MaxPool", "AveragePool", "Resize", "Softmax"}


def inline_constants(model):
    """Constant nodes become initializers and Identity nodes are bypassed: neither is a GPU pass."""
    from onnx import numpy_helper

    graph = model.graph
    rename = {}
    kept = []
    for node in graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        if node.op_type == "Constant":
            value = numpy_helper.to_array(node.attribute[0].t)
            graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        elif node.op_type == "Identity" and node.output[0] not in {o.name for o in graph.output}:
            rename[node.output[0]] = node.input[0]
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    return model


def export_onnx(net, path):
    """Static 1x3x360x640 input, opset 17, then checks that only webcnn ops remain."""
    import onnx

    wrapper = ExportWrapper(net).eval()
    dummy = torch.zeros(INPUT_SHAPE)
    torch.onnx.export(wrapper, (dummy,), str(path), input_names=["image"], output_names=["probs"], opset_version=17,
                      dynamo=False, do_constant_folding=True)
    model = inline_constants(onnx.load(str(path)))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    ops = {n.op_type for n in model.graph.node}
    bad = ops - ALLOWED_ONNX_OPS
    if bad:
        raise RuntimeError(f"exported graph uses ops webcnn does not support: {sorted(bad)}")
    return sorted(ops)


if __name__ == "__main__":
    net = WhiteboardNet()
    print(f"params {count_params(net):,}  FLOPs {count_flops(net) / 1e9:.3f} G (for {INPUT_SHAPE})")
