"""PyTorch definitions of mdistiller's CIFAR students that torchvision lacks,
rewritten with mdistiller's module and parameter names (models/cifar/
vgg.py, mobilenetv2.py, ShuffleNetv1.py, ShuffleNetv2.py, resnetv2.py,
mv2_tinyimagenet.py), so that their
state_dicts and ours have the same keys. Each forward returns the logits only
and ends in a global average pool (at 32 px the same as mdistiller's fixed
pools). Used by ref_zoo.py (fixtures), scripts/ref/score_student.py and the
benchmarks; the CIFAR ResNets and WRNs are in ref_models.py.

zoo_model(name, num_classes) builds any architecture of common/models/
model_mobilenet_v2.c, model_shufflenet.c, model_regnet.c, model_vgg.c,
model_resnetv2.c and the new rows of model_cifar.c, torchvision ones from torchvision."""
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from ref_models import CifarResNet, WideResNet


def _shuffle(x, g):
    n, c, h, w = x.shape
    return x.reshape(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)


class VGG(nn.Module):
    """mdistiller vgg.py with batch_norm=True; pool3 (64 px only) left out."""

    def __init__(self, cfg, num_classes):
        super().__init__()
        cin = 3
        for b, widths in enumerate(cfg):
            layers = []
            for w in widths:
                layers += [nn.Conv2d(cin, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
                cin = w
            setattr(self, f"block{b}", nn.Sequential(*layers[:-1]))
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x):
        for b in range(5):
            x = F.relu(getattr(self, f"block{b}")(x))
            if b < 3:
                x = F.max_pool2d(x, 2, 2)
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


class MdInvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, t):
        super().__init__()
        h = inp * t
        self.use_res = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU(),
            nn.Conv2d(h, h, 3, stride, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU(),
            nn.Conv2d(h, oup, 1, bias=False), nn.BatchNorm2d(oup))

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MdMobileNetV2(nn.Module):
    """mdistiller mobilenetv2.py, mobile_half: T = 6, width 0.5."""

    def __init__(self, num_classes, T=6, width=0.5):
        super().__init__()
        setting = [[1, 16, 1, 1], [T, 24, 2, 1], [T, 32, 3, 2], [T, 64, 4, 2], [T, 96, 3, 1],
                   [T, 160, 3, 2], [T, 320, 1, 1]]
        cin = int(32 * width)
        self.conv1 = nn.Sequential(nn.Conv2d(3, cin, 3, 2, 1, bias=False), nn.BatchNorm2d(cin),
                                   nn.ReLU())
        self.blocks = nn.ModuleList()
        for t, c, n, s in setting:
            layers = []
            for i in range(n):
                layers.append(MdInvertedResidual(cin, int(c * width), s if i == 0 else 1, t))
                cin = int(c * width)
            self.blocks.append(nn.Sequential(*layers))
        self.conv2 = nn.Sequential(nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280),
                                   nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(1280, num_classes))

    def forward(self, x):
        x = self.conv1(x)
        for b in self.blocks:
            x = b(x)
        return self.classifier(F.adaptive_avg_pool2d(self.conv2(x), 1).flatten(1))


class V1Bottleneck(nn.Module):
    def __init__(self, inp, oup, stride, groups):
        super().__init__()
        mid = oup // 4
        self.g = 1 if inp == 24 else groups
        self.stride = stride
        self.conv1 = nn.Conv2d(inp, mid, 1, groups=self.g, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, oup, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(oup)

    def forward(self, x):
        o = _shuffle(F.relu(self.bn1(self.conv1(x))), self.g)
        o = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(o)))))
        if self.stride == 2:
            return F.relu(torch.cat([o, F.avg_pool2d(x, 3, 2, 1)], 1))
        return F.relu(o + x)


class ShuffleV1(nn.Module):
    """mdistiller ShuffleNetv1.py, ShuffleV1: groups 3, [240, 480, 960], [4, 8, 4]."""

    def __init__(self, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        cin = 24
        for li, (out, n) in enumerate(zip([240, 480, 960], [4, 8, 4])):
            blocks = []
            for i in range(n):
                blocks.append(V1Bottleneck(cin, out - (cin if i == 0 else 0), 2 if i == 0 else 1,
                                           3))
                cin = out
            setattr(self, f"layer{li + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(960, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


class V2Basic(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c // 2
        self.conv1 = nn.Conv2d(h, h, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(h)
        self.conv2 = nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False)
        self.bn2 = nn.BatchNorm2d(h)
        self.conv3 = nn.Conv2d(h, h, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(h)

    def forward(self, x):
        h = x.shape[1] // 2
        x1, x2 = x[:, :h], x[:, h:]
        o = F.relu(self.bn1(self.conv1(x2)))
        o = F.relu(self.bn3(self.conv3(self.bn2(self.conv2(o)))))
        return _shuffle(torch.cat([x1, o], 1), 2)


class V2Down(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        m = o // 2
        self.conv1 = nn.Conv2d(i, i, 3, 2, 1, groups=i, bias=False)
        self.bn1 = nn.BatchNorm2d(i)
        self.conv2 = nn.Conv2d(i, m, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(m)
        self.conv3 = nn.Conv2d(i, m, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(m)
        self.conv4 = nn.Conv2d(m, m, 3, 2, 1, groups=m, bias=False)
        self.bn4 = nn.BatchNorm2d(m)
        self.conv5 = nn.Conv2d(m, m, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(m)

    def forward(self, x):
        a = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        b = self.bn4(self.conv4(F.relu(self.bn3(self.conv3(x)))))
        b = F.relu(self.bn5(self.conv5(b)))
        return _shuffle(torch.cat([a, b], 1), 2)


class ShuffleV2(nn.Module):
    """mdistiller ShuffleNetv2.py, ShuffleV2 (net_size 1)."""

    def __init__(self, num_classes):
        super().__init__()
        out, nb = (116, 232, 464, 1024), (3, 7, 3)
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        cin = 24
        for li in range(3):
            layers = [V2Down(cin, out[li])] + [V2Basic(out[li]) for _ in range(nb[li])]
            cin = out[li]
            setattr(self, f"layer{li + 1}", nn.Sequential(*layers))
        self.conv2 = nn.Conv2d(out[2], out[3], 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out[3])
        self.linear = nn.Linear(out[3], num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


class V2Block(nn.Module):
    """resnetv2.py BasicBlock (bottleneck=False) or Bottleneck: branch + shortcut, ReLU."""

    def __init__(self, cin, planes, stride, bottleneck):
        super().__init__()
        cout = planes * (4 if bottleneck else 1)
        if bottleneck:
            specs = [(cin, planes, 1, 1), (planes, planes, 3, stride), (planes, cout, 1, 1)]
        else:
            specs = [(cin, planes, 3, stride), (planes, planes, 3, 1)]
        self.n = len(specs)
        for i, (a, b, k, s) in enumerate(specs, 1):
            setattr(self, f"conv{i}", nn.Conv2d(a, b, k, s, k // 2, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(b))
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        o = x
        for i in range(1, self.n + 1):
            o = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(o))
            if i < self.n:
                o = F.relu(o)
        return F.relu(o + self.shortcut(x))


class Conv1x1Head(nn.Conv2d):
    """A Conv2d(D, classes, 1) classifier on the pooled features (mdistiller's
    Tiny-ImageNet MobileNetV2 `conv2`): takes and returns 2-D tensors, so that it
    stands where the Linear of the other nets stands (fc_of, feature hooks)."""

    def __init__(self, d, classes):
        super().__init__(d, classes, 1)
        self.in_features = d

    def forward(self, x):
        return super().forward(x[:, :, None, None]).flatten(1)


class TiBottleneck(nn.Module):
    """mv2_tinyimagenet.py LinearBottleNeck: biased convs, ReLU6."""

    def __init__(self, cin, cout, stride, t):
        super().__init__()
        h = cin * t
        self.use_res = stride == 1 and cin == cout
        self.residual = nn.Sequential(
            nn.Conv2d(cin, h, 1), nn.BatchNorm2d(h), nn.ReLU6(),
            nn.Conv2d(h, h, 3, stride, 1, groups=h), nn.BatchNorm2d(h), nn.ReLU6(),
            nn.Conv2d(h, cout, 1), nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.residual(x) + x if self.use_res else self.residual(x)


class TiMobileNetV2(nn.Module):
    """mdistiller mv2_tinyimagenet.py MobileNetV2 (DOT's Tiny-ImageNet student)."""

    def __init__(self, num_classes):
        super().__init__()
        self.pre = nn.Sequential(nn.Conv2d(3, 32, 1, padding=1), nn.BatchNorm2d(32), nn.ReLU6())
        self.stage1 = TiBottleneck(32, 16, 1, 1)
        cin = 16
        for s, (n, c, stride) in enumerate([(2, 24, 2), (3, 32, 2), (4, 64, 2), (3, 96, 1),
                                             (3, 160, 1)]):
            blocks = []
            for i in range(n):
                blocks.append(TiBottleneck(cin, c, stride if i == 0 else 1, 6))
                cin = c
            setattr(self, f"stage{s + 2}", nn.Sequential(*blocks))
        self.stage7 = TiBottleneck(160, 320, 1, 6)
        self.conv1 = nn.Sequential(nn.Conv2d(320, 1280, 1), nn.BatchNorm2d(1280), nn.ReLU6())
        self.conv2 = Conv1x1Head(1280, num_classes)

    def forward(self, x):
        x = self.pre(x)
        for s in range(1, 8):
            x = getattr(self, f"stage{s}")(x)
        return self.conv2(F.adaptive_avg_pool2d(self.conv1(x), 1).flatten(1))


class MdResNetV2(nn.Module):
    """mdistiller resnetv2.py ResNet18 / ResNet50: 3x3 stride-1 stem, no max pool."""

    def __init__(self, blocks, bottleneck, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for li, (planes, n) in enumerate(zip([64, 128, 256, 512], blocks)):
            layers = []
            for i in range(n):
                layers.append(V2Block(cin, planes, 2 if i == 0 and li > 0 else 1, bottleneck))
                cin = planes * (4 if bottleneck else 1)
            setattr(self, f"layer{li + 1}", nn.Sequential(*layers))
        self.linear = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


CIFAR = {
    "resnet20": lambda c: CifarResNet(20, [16, 16, 32, 64], c),
    "resnet32": lambda c: CifarResNet(32, [16, 16, 32, 64], c),
    "resnet56": lambda c: CifarResNet(56, [16, 16, 32, 64], c),
    "resnet110": lambda c: CifarResNet(110, [16, 16, 32, 64], c),
    "wrn_16_1": lambda c: WideResNet(16, 1, c),
    "wrn_40_1": lambda c: WideResNet(40, 1, c),
    "vgg8": lambda c: VGG([[64], [128], [256], [512], [512]], c),
    "vgg13": lambda c: VGG([[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]], c),
    "MobileNetV2": lambda c: MdMobileNetV2(c),
    "ShuffleV1": lambda c: ShuffleV1(c),
    "ShuffleV2": lambda c: ShuffleV2(c),
    "ResNet18": lambda c: MdResNetV2([2, 2, 2, 2], False, c),
    "ResNet50": lambda c: MdResNetV2([3, 4, 6, 3], True, c),
    "mobilenetv2_tinyimagenet": lambda c: TiMobileNetV2(c),
}

TORCHVISION = ["mobilenet_v2", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5",
               "shufflenet_v2_x2_0", "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf",
               "regnet_y_3_2gf", "regnet_y_8gf", "regnet_y_16gf", "regnet_y_32gf"]


def zoo_model(name, num_classes):
    if name in CIFAR:
        return CIFAR[name](num_classes)
    if name in TORCHVISION:
        return getattr(torchvision.models, name)(num_classes=num_classes)
    raise KeyError(name)


def fc_of(model):
    """The classifier Linear (its input is the pooled features D)."""
    return [m for m in model.modules() if isinstance(m, (nn.Linear, Conv1x1Head))][-1]
