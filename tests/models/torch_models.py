"""PyTorch models written the ways people write them, for `alexbench import` and `compare --model`.

Each name here is a SOURCE (`tests/models/torch_models.py:NAME`): a class callable without
arguments, a factory, or an instance. Nothing here runs at import time but module definitions.
"""

import torch
import torch.nn.functional as F
from torch import nn


class TorchvisionAlexNet(nn.Module):
    """torchvision.models.alexnet's layout: features / avgpool / classifier, 224x224 input."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


class ArticleAlexNet(nn.Module):
    """The seed article's PyTorch port, in its structure: no padding anywhere, conv5 with 384 filters
    and a 1x1 "pool", so the features are 384x2x2 = 1536 per image where its
    ``x.view(-1, 256*6*6)`` expects 9216. Its forward cannot run; importing must still work."""

    def __init__(self, class_num: int = 1000):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4, padding_mode="zeros"), nn.ReLU(inplace=True),
            nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, stride=1, padding_mode="zeros"), nn.ReLU(inplace=True),
            nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, stride=1, padding_mode="zeros"), nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, stride=1, padding_mode="zeros"), nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, stride=1, padding_mode="zeros"), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=1, stride=2),
        )
        self.fully_connected = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096), nn.ReLU(), nn.Dropout(p=0.5),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(p=0.5),
            nn.Linear(4096, class_num),
        )

    def forward(self, x):
        x = self.net(x)
        x = x.view(-1, 256 * 6 * 6)
        return self.fully_connected(x)


class SmallFunctionalNet(nn.Module):
    """A small network in the functional style: F.relu, F.max_pool2d, view(x.size(0), -1), an
    LRN module, a batch norm and a softmax, on a 3x32x28 input (N != C != H != W in tests)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, kernel_size=5, stride=2, padding=(1, 2))
        self.norm1 = nn.LocalResponseNorm(size=3, alpha=2e-4, beta=0.75, k=1.5)
        self.conv2 = nn.Conv2d(8, 12, kernel_size=3, padding=1, groups=2)
        self.bn2 = nn.BatchNorm2d(12, eps=1e-3, momentum=0.05)
        self.fc = nn.Linear(12 * 3 * 3, 10)

    def forward(self, x):
        x = self.norm1(F.relu(self.conv1(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.adaptive_avg_pool2d(x, 3)
        x = x.view(x.size(0), -1)
        return F.softmax(self.fc(x), dim=1)


def small_functional_net() -> SmallFunctionalNet:
    """A factory with non-trivial batch-norm statistics (a fresh BatchNorm2d's are 0 and 1)."""
    torch.manual_seed(0)
    model = SmallFunctionalNet()
    with torch.no_grad():
        model.bn2.running_mean.uniform_(-0.5, 0.5)
        model.bn2.running_var.uniform_(0.5, 2.0)
        model.bn2.weight.uniform_(0.5, 1.5)
        model.bn2.bias.uniform_(-0.2, 0.2)
    return model.eval()


class Branching(nn.Module):
    """A residual connection: not a chain of layers, so not expressible in the spec language."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, kernel_size=3, padding=1)

    def forward(self, x):
        return x + self.conv(x)


class UnknownLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.Flatten(), nn.Linear(4 * 30 * 30, 5))

    def forward(self, x):
        return self.body(x)


class ReflectPadding(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")

    def forward(self, x):
        return self.conv(x)


small_net = small_functional_net()  # an instance, as a user's script would hold one


def seeded_torchvision_alexnet() -> TorchvisionAlexNet:
    """Always the same weights, so that a test can import it once and compare other copies with them."""
    torch.manual_seed(0)
    return TorchvisionAlexNet().eval()


def torchvision_alexnet_fc7_transposed() -> TorchvisionAlexNet:
    """The seeded model with fc7's (square) weight transposed: the structure is intact, the numbers not."""
    model = seeded_torchvision_alexnet()
    with torch.no_grad():
        model.classifier[4].weight.copy_(model.classifier[4].weight.t().clone())
    return model


def torchvision_alexnet_wrong_stride() -> TorchvisionAlexNet:
    model = seeded_torchvision_alexnet()
    model.features[3].stride = (2, 2)
    return model


def small_net_fc_hwc() -> SmallFunctionalNet:
    """small_functional_net with fc's input columns in H, W, C order instead of C, H, W: the classic bug
    of porting a first linear layer between channels-first and channels-last frameworks."""
    model = small_functional_net()
    with torch.no_grad():
        w = model.fc.weight.reshape(10, 12, 3, 3)
        model.fc.weight.copy_(w.permute(0, 2, 3, 1).reshape(10, -1).clone())
    return model


class ParityNet(nn.Module):
    """A small network written the same way in Keras (keras_models.parity_net_keras) for the import
    acceptance test: 3x28x20 input (N != C != H != W), no dropout or batch norm (inference exports drop
    and fold those), a flatten feeding a linear layer, a softmax head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 12, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(12 * 7 * 5, 16), nn.ReLU(), nn.Linear(16, 10),
                                        nn.Softmax(dim=1))

    def forward(self, x):
        return self.classifier(self.features(x))


def parity_net() -> ParityNet:
    """Seeded: always the same weights, and every bias non-zero (tf2onnx drops all-zero biases)."""
    torch.manual_seed(0)
    return ParityNet().eval()
