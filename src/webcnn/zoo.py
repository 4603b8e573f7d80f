"""Well-known CNN architectures rebuilt in PyTorch (no torchvision, no downloads), with seeded random weights.

Used by the tests, the benchmark and the README's default job.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv_bn(cin, cout, k=3, stride=1, groups=1, act=nn.ReLU6):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers = [conv_bn(cin, hidden, 1)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.block(x) if self.use_res else self.block(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes=1000, width=1.0):
        super().__init__()
        settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                    (6, 320, 1, 1)]
        cin = int(32 * width)
        layers = [conv_bn(3, cin, 3, 2)]
        for t, c, n, s in settings:
            cout = int(c * width)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(conv_bn(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(x)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride, act=nn.ReLU)
        self.conv2 = conv_bn(cout, cout, 3, 1, act=None)
        self.down = conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        return F.relu(self.conv2(self.conv1(x)) + self.down(x))


class ResNet18(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


class UNet(nn.Module):
    """Encoder-decoder with skip concats; one decoder stage upsamples by ConvTranspose, the others bilinearly."""

    def __init__(self, cin=3, classes=3, widths=(16, 32, 64, 128)):
        super().__init__()
        self.enc = nn.ModuleList()
        prev = cin
        for w in widths:
            self.enc.append(nn.Sequential(conv_bn(prev, w, act=nn.ReLU), conv_bn(w, w, act=nn.ReLU)))
            prev = w
        self.up_t = nn.ConvTranspose2d(widths[-1], widths[-1], 2, stride=2)
        self.dec = nn.ModuleList()
        for w_skip, w_in in zip(widths[-2::-1], widths[:0:-1]):
            self.dec.append(nn.Sequential(conv_bn(w_in + w_skip, w_skip, act=nn.ReLU),
                                          conv_bn(w_skip, w_skip, act=nn.ReLU)))
        self.head = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x):
        skips = []
        for i, stage in enumerate(self.enc):
            x = stage(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for i, stage in enumerate(self.dec):
            if i == 0:
                x = self.up_t(x)
            else:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = stage(torch.cat([x, skips[-2 - i]], 1))
        return self.head(x)


class DenseBlock(nn.Module):
    def __init__(self, cin=16, growth=12, layers=4):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(cin + i * growth), nn.ReLU(), nn.Conv2d(cin + i * growth, growth, 3, 1, 1))
            for i in range(layers))
        self.stem = nn.Conv2d(3, cin, 3, 1, 1)
        self.transition = nn.Sequential(nn.Conv2d(cin + layers * growth, 32, 1), nn.AvgPool2d(2))

    def forward(self, x):
        features = [self.stem(x)]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return self.transition(torch.cat(features, 1))


def channel_shuffle(x, groups):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, c, groups=4):
        super().__init__()
        self.groups = groups
        self.g1 = conv_bn(c, c, 1, groups=groups, act=nn.ReLU)
        self.dw = conv_bn(c, c, 3, groups=c, act=None)
        self.g2 = conv_bn(c, c, 1, groups=groups, act=None)

    def forward(self, x):
        return F.relu(x + self.g2(self.dw(channel_shuffle(self.g1(x), self.groups))))


class ShuffleNetBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 24, 3, 2, act=nn.ReLU)
        self.units = nn.Sequential(ShuffleUnit(24, 3), ShuffleUnit(24, 3))
        self.split_units = nn.Sequential(conv_bn(24, 48, 1, act=nn.ReLU))

    def forward(self, x):
        x = self.units(self.stem(x))
        a, b = self.split_units(x).chunk(2, dim=1)
        return channel_shuffle(torch.cat([a, torch.sigmoid(b)], 1), 2)


NETWORKS = {
    "mobilenetv2": (MobileNetV2, (1, 3, 224, 224)),
    "resnet18": (ResNet18, (1, 3, 224, 224)),
    "unet": (UNet, (1, 3, 128, 128)),
    "densenet_block": (DenseBlock, (1, 3, 64, 64)),
    "shufflenet_block": (ShuffleNetBlock, (1, 3, 64, 64)),
}


def build(name: str, seed: int = 0, **kwargs) -> nn.Module:
    """A network with seeded random weights and non-trivial BatchNorm statistics (so folding is exercised)."""
    cls, _ = NETWORKS[name]
    torch.manual_seed(seed)
    model = cls(**kwargs)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def export(model: nn.Module, shape, path, opset=17) -> str:
    with torch.no_grad():
        torch.onnx.export(model, torch.zeros(shape), path, opset_version=opset, dynamo=False, input_names=["input"],
                          output_names=["output"])
    return path
