"""What each dimension of a layer is to a weight-stationary Gemmini array, found from the tensors.

The array multiplies A (rows: output pixels, columns: the reduction dimension) by B (rows: the
reduction dimension, columns: output channels). Roles come from `Problem.dims_with_role`, so no
dimension letter is assumed: a conv's C is the reduction, K the output channel, R / S the window,
N / P / Q the pixels; a matmul's K, N and M the same; G / B (groups, batch) index all tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from ...problem import INPUTS, Problem


@dataclass(frozen=True)
class GemminiDims:
    reduction: str  # on the array's X axis (rows of B, columns of A)
    output_channel: str  # on the Y axis (columns of B and of the results)
    window: tuple  # reduction dimensions that enter the inputs through a sliding window
    pixels: tuple  # rows of A and of the results
    shared: tuple  # dimensions of every tensor (groups, batch of a batched matmul)
    # conv: (pixel, window, stride, dilation) per sliding-window input axis, outermost first
    windows: tuple = ()

    @property
    def reductions(self) -> tuple:
        return (self.reduction,) + self.window


class NotAGemminiLayer(NotImplementedError):
    """The layer has no single reduction / output-channel pair the array can take."""


def gemmini_dims(problem: Problem) -> GemminiDims:
    red = sorted(problem.dims_with_role("reduction"))
    oc = sorted(problem.dims_with_role("output_channel"))
    if len(red) != 1 or len(oc) != 1:
        raise NotAGemminiLayer(
            f"{problem.name}: the array needs one reduction and one output-channel dimension, "
            f"found reduction {red} and output channel {oc}")
    inputs = problem.tensor(INPUTS)
    windows = []
    for axis in inputs.axes:
        if len(axis) == 2:
            terms = dict(axis)
            pixel = [d for d in terms if d in problem.dims_with_role("pixel")]
            window = [d for d in terms if d in problem.dims_with_role("window")]
            if len(pixel) != 1 or len(window) != 1:
                raise NotAGemminiLayer(f"{problem.name}: input axis {axis} is not pixel*stride + "
                                       "window*dilation")
            windows.append((pixel[0], window[0], terms[pixel[0]], terms[window[0]]))
        elif len(axis) > 2:
            raise NotAGemminiLayer(f"{problem.name}: input axis {axis} has more than two terms")
    in_dims = inputs.dims
    shared = tuple(d for d in problem.dims if all(d in t.dims for t in problem.tensors))
    return GemminiDims(
        reduction=red[0], output_channel=oc[0],
        window=tuple(d for d in problem.dims if d in problem.dims_with_role("window")),
        pixels=tuple(d for d in problem.dims if d in problem.dims_with_role("pixel")
                     and d in in_dims),
        shared=shared, windows=tuple(windows))


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def largest_divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of n that is <= limit (at least 1)."""
    return max(d for d in divisors(n) if d <= max(1, limit))
