"""Convolutional networks as ONNX models: ResNet-18/50 (torchvision layout) and MobileNetV2.

Every builder takes `batch`, `image_size`, a width (base channels) and `num_classes`, so the same
code gives the full network and a tiny one for tests. Shapes follow torchvision: ResNet's stem is a
7x7/2 convolution and a 3x3/2 max pool, its classifier global average pool + Flatten + Gemm;
MobileNetV2's inverted residuals are 1x1 expand, 3x3 depthwise, 1x1 project with Clip as ReLU6.
"""

from __future__ import annotations

from .builder import OnnxBuilder, positive_int


def _stem(b: OnnxBuilder, x, width):
    x = b.relu(b.batchnorm(b.conv(x, 3, width, 7, stride=2, pad=3, bias=False, hint="conv1"),
                           width, hint="bn1"))
    return b.maxpool(x, 3, 2, 1)


def _basic_block(b, x, cin, cout, stride, name):
    y = b.relu(b.batchnorm(b.conv(x, cin, cout, 3, stride=stride, bias=False,
                                  hint=name + ".conv1"), cout, hint=name + ".bn1"))
    # A small last gamma keeps the residual sum's scale steady (as zero-init residual training).
    y = b.batchnorm(b.conv(y, cout, cout, 3, bias=False, hint=name + ".conv2"), cout, gamma=0.3,
                    hint=name + ".bn2")
    if stride != 1 or cin != cout:
        x = b.batchnorm(b.conv(x, cin, cout, 1, stride=stride, pad=0, bias=False,
                               hint=name + ".downsample"), cout, hint=name + ".downsample_bn")
    return b.relu(b.add(y, x))


def _bottleneck(b, x, cin, mid, stride, name):
    cout = 4 * mid
    y = b.relu(b.batchnorm(b.conv(x, cin, mid, 1, pad=0, bias=False, hint=name + ".conv1"),
                           mid, hint=name + ".bn1"))
    y = b.relu(b.batchnorm(b.conv(y, mid, mid, 3, stride=stride, bias=False,
                                  hint=name + ".conv2"), mid, hint=name + ".bn2"))
    y = b.batchnorm(b.conv(y, mid, cout, 1, pad=0, bias=False, hint=name + ".conv3"), cout,
                    gamma=0.3, hint=name + ".bn3")
    if stride != 1 or cin != cout:
        x = b.batchnorm(b.conv(x, cin, cout, 1, stride=stride, pad=0, bias=False,
                               hint=name + ".downsample"), cout, hint=name + ".downsample_bn")
    return b.relu(b.add(y, x))


def _resnet(name, blocks, bottleneck, *, batch, image_size, width, num_classes, opset, seed):
    for field, value in (("batch", batch), ("image_size", image_size), ("width", width),
                         ("num_classes", num_classes)):
        positive_int(value, field, name)
    b = OnnxBuilder(name, opset=opset, seed=seed)
    x = _stem(b, b.input("input", (batch, 3, image_size, image_size)), width)
    cin = width
    for stage, count in enumerate(blocks):
        mid = width * 2 ** stage
        for i in range(count):
            stride = 2 if stage > 0 and i == 0 else 1
            block = f"layer{stage + 1}.{i}"
            if bottleneck:
                x = _bottleneck(b, x, cin, mid, stride, block)
                cin = 4 * mid
            else:
                x = _basic_block(b, x, cin, mid, stride, block)
                cin = mid
    x = b.flatten(b.global_avgpool(x))
    return b.build(b.linear(x, cin, num_classes, hint="fc"), (batch, num_classes))


def resnet18(batch=1, *, image_size=224, width=64, num_classes=1000, opset=17, seed=0):
    """ResNet-18: 20 convolutions (11 unique shapes at 224x224) and one Gemm."""
    return _resnet("resnet18", (2, 2, 2, 2), False, batch=batch, image_size=image_size,
                   width=width, num_classes=num_classes, opset=opset, seed=seed)


def resnet50(batch=1, *, image_size=224, width=64, num_classes=1000, opset=17, seed=0):
    """ResNet-50: 53 convolutions (bottleneck blocks 3, 4, 6, 3) and one Gemm."""
    return _resnet("resnet50", (3, 4, 6, 3), True, batch=batch, image_size=image_size,
                   width=width, num_classes=num_classes, opset=opset, seed=seed)


# (expansion t, output channels c, repeats n, first stride s) from the MobileNetV2 paper
_MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                 (6, 160, 3, 2), (6, 320, 1, 1))


def _make_divisible(v, divisor=8):
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def mobilenet_v2(batch=1, *, image_size=224, width_mult=1.0, num_classes=1000, opset=17,
                 seed=0, blocks=None):
    """MobileNetV2: depthwise 3x3 convolutions, 1x1 expand / project, Clip(0, 6) as ReLU6.

    `blocks` limits the number of (t, c, n, s) stages for small test models."""
    for field, value in (("batch", batch), ("image_size", image_size),
                         ("num_classes", num_classes)):
        positive_int(value, field, "mobilenet_v2")
    b = OnnxBuilder("mobilenet_v2", opset=opset, seed=seed)
    x = b.input("input", (batch, 3, image_size, image_size))
    cin = _make_divisible(32 * width_mult)
    x = b.relu6(b.batchnorm(b.conv(x, 3, cin, 3, stride=2, bias=False, hint="features.0"), cin,
                            hint="features.0.bn"))
    settings = _MOBILENET_V2 if blocks is None else _MOBILENET_V2[:blocks]
    idx = 1
    for t, c, n, s in settings:
        cout = _make_divisible(c * width_mult)
        for i in range(n):
            x = _inverted_residual(b, x, cin, cout, s if i == 0 else 1, t, f"features.{idx}")
            cin, idx = cout, idx + 1
    last = _make_divisible(1280 * max(1.0, width_mult))
    x = b.relu6(b.batchnorm(b.conv(x, cin, last, 1, pad=0, bias=False, hint="features.last"),
                            last, hint="features.last.bn"))
    x = b.flatten(b.global_avgpool(x))
    return b.build(b.linear(x, last, num_classes, hint="classifier"), (batch, num_classes))


def _inverted_residual(b, x, cin, cout, stride, t, name):
    hidden = cin * t
    y = x
    if t != 1:
        y = b.relu6(b.batchnorm(b.conv(y, cin, hidden, 1, pad=0, bias=False,
                                       hint=name + ".expand"), hidden, hint=name + ".expand_bn"))
    y = b.relu6(b.batchnorm(b.conv(y, hidden, hidden, 3, stride=stride, groups=hidden,
                                   bias=False, hint=name + ".dw"), hidden, hint=name + ".dw_bn"))
    y = b.batchnorm(b.conv(y, hidden, cout, 1, pad=0, bias=False, hint=name + ".project"),
                    cout, gamma=0.5, hint=name + ".project_bn")
    return b.add(y, x) if stride == 1 and cin == cout else y


def tiny_cnn(batch=1, *, image_size=16, opset=17, seed=0, reshape_flatten=False):
    """Every conv2d flavour in a few layers, for tests: strided, padded, dilated, grouped,
    depthwise and 1x1 convolutions, max and average pooling, Clip as ReLU6, Flatten (or the
    Shape/Gather/Concat/Reshape chain older exporters write) and Gemm."""
    b = OnnxBuilder("tiny_cnn", opset=opset, seed=seed)
    x = b.input("input", (batch, 3, image_size, image_size))
    x = b.relu(b.conv(x, 3, 8, 3, stride=2, hint="stem"))  # stride 2, pad 1
    x = b.relu6(b.conv(x, 8, 8, 3, dilation=2, hint="dilated"))  # dilation 2, pad 2
    x = b.relu(b.conv(x, 8, 16, 3, groups=4, pad=0, hint="grouped"))  # groups 4, no padding
    x = b.relu6(b.conv(x, 16, 16, 3, groups=16, hint="depthwise"))
    x = b.maxpool(x, 2, 2, 0)
    x = b.relu(b.conv(x, 16, 12, 1, pad=0, hint="pointwise"))
    x = b.avgpool(x, 1, 1)
    x = b.flatten_by_shape(x) if reshape_flatten else b.flatten(x)
    side = ((image_size + 1) // 2 - 2) // 2
    return b.build(b.linear(x, 12 * side * side, 10, hint="fc"), (batch, 10))
