"""LiftPool: learned, invertible 2x pooling by the lifting scheme (Zhao & Snoek, ICLR 2021).

One 1D lifting step along an axis splits ``x`` into even and odd samples and computes::

    d = xo - P(xe)      # detail (high-pass)
    s = xe + U(d)       # approximation (low-pass)

which is exactly invertible for any ``P`` and ``U`` (``xe = s - U(d)``, ``xo = d + P(xe)``). The 2D down pool lifts
along W first, then lifts both results along H::

    (s, d) = lift_W(x);  (LL, LH) = lift_H(s);  (HL, HH) = lift_H(d)

and returns the sum of the kept sub-bands (all four by default, as in the paper). The first letter of a band names
the horizontal (W) filter, the second the vertical (H) one; with ``P = U = 0`` the bands are the polyphase
components ``LL = x[0::2, 0::2]``, ``LH = x[1::2, 0::2]``, ``HL = x[0::2, 1::2]``, ``HH = x[1::2, 1::2]``.

Choices made here (documented in the paper only loosely):

* ``P`` and ``U`` are ``Tanh . depthwise Conv(1x1, no bias) . ReLU . depthwise Conv(K, no bias) . ReflectPad(K//2)``
  along the lifted axis: ``C*K + C`` weights each, the count the authors give. One P/U pair per layer serves all
  three lifts. The 1x1 weights start at zero (:meth:`LiftDownPool2d.reset_parameters`), so a fresh layer is plain
  polyphase subsampling and its default output is 4x the 2x2 average.
* An odd H (W) is reflect-padded by one row (column) at the bottom (right) to even; the up pool crops it off again.
  So every size maps H -> ceil(H/2).
* Auxiliary loss of one 1D lift: ``loss_u = mean((s - xo)**2)`` and ``loss_p = mean(d**2)`` (squared L2 norms divided
  by the number of elements, so the value does not grow with the tensor); each is averaged over the three lifts of
  the layer, and the layer's loss is ``lambda_u * loss_u + lambda_p * loss_p``. It is computed in training mode only.
* :class:`LiftUpPool2d` inverts with the paired layer's P/U. The pooled output is a SUM of bands, so exact inversion
  needs the LL band itself: the up pool takes LL (a decoder feature takes LL's place) plus the detail bands that the
  down pool hands out with ``return_details=True``; :meth:`LiftDetails.ll_from_pooled` recovers LL from the pooled
  output when LL is among the kept bands.

Speed: on CPU tensors, each lifting step runs as one fused kernel (:mod:`robustbench_lift.layers.kernel`, the
C++ file ``csrc/lift_step.cpp``: split, P, U and the loss's sums of squares in one pass per image plane, and a
backward that recomputes them). Where it cannot run (no compiler, CUDA, user-supplied P/U, planes shorter than the
filter's padding) the layer runs the steps below as torch operations: :func:`reflect_filter` keeps torch's forward
convolution but computes its backward itself on planes of at least 32x32 (the input gradient as a convolution with
the flipped taps folded back over the mirrored border, the tap gradients from one batched matmul), and
:func:`fast_tanh` evaluates ``2 * sigmoid(2x) - 1``. All paths give the same values to float rounding;
``benchmarks/_lift_reference.py`` keeps the plain version that the tests compare with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from robustbench_lift.layers import kernel
from robustbench_lift.layers.blur import pad_nd

__all__ = [
    "BANDS",
    "LiftDetails",
    "LiftDownPool2d",
    "LiftUpPool2d",
    "LiftingFunction",
    "lift_down_pool2d",
    "lift_up_pool2d",
    "lifting_loss",
]

BANDS: tuple[str, ...] = ("LL", "LH", "HL", "HH")

#: ``f(t, axis) -> Tensor`` of ``t``'s shape, filtering along ``axis`` (-1 = W, -2 = H).
LiftFn = Callable[[Tensor, int], Tensor]


def _check_input(x: Tensor, channels: int | None = None, name: str = "x") -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be a 4D (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {x.dtype}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} channels, got shape {tuple(x.shape)}")


def _parse_bands(bands: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(bands, str):
        items = list(BANDS) if bands.lower() == "all" else bands.replace(",", "+").split("+")
    else:
        try:
            items = list(bands)
        except TypeError:
            raise TypeError(
                f"bands must be 'all', a band name or a sequence of them, got {bands!r}"
            ) from None
    out: list[str] = []
    for band in items:
        key = band.strip().upper() if isinstance(band, str) else band
        if key not in BANDS:
            raise ValueError(f"unknown band {band!r} in bands={bands!r}; valid: all, {', '.join(BANDS)}")
        if key in out:
            raise ValueError(f"band {key!r} given twice in bands={bands!r}")
        out.append(key)
    if not out:
        raise ValueError(f"bands must name at least one of {', '.join(BANDS)}, got {bands!r}")
    return tuple(b for b in BANDS if b in out)


def _check_fn(fn: object, name: str) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be callable as {name}(t, axis), got {type(fn).__name__}")


# Speed (see "Speed" in the module docstring): on CPU, torch's depthwise convolution backward and its tanh are the slow
# parts of a lifting layer. The two functions below compute the same values with a cheaper backward / kernel.


class _ReflectFilter(torch.autograd.Function):
    """Depthwise K-tap filter along one axis of the reflect-padded input, with a backward made of shifted sums."""

    @staticmethod
    def forward(ctx, t: Tensor, weight: Tensor, axis: int) -> Tensor:
        channels, k = weight.shape
        pad = k // 2
        if axis == -1:
            padded, kernel = F.pad(t, (pad, pad, 0, 0), mode="reflect"), weight.view(channels, 1, 1, k)
        else:
            padded, kernel = F.pad(t, (0, 0, pad, pad), mode="reflect"), weight.view(channels, 1, k, 1)
        ctx.save_for_backward(padded, weight)
        ctx.axis = axis
        return F.conv2d(padded, kernel, groups=channels)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        padded, weight = ctx.saved_tensors
        dim = grad.dim() + ctx.axis
        channels, k = weight.shape
        pad, length = k // 2, grad.shape[dim]
        grad_t = grad_w = None
        if ctx.needs_input_grad[0]:
            # Tap j of output i reads padded sample i + j, so the padded input's gradient is the full correlation of
            # the gradient with the flipped taps ...
            kernel = weight.flip(-1)
            if ctx.axis == -1:
                wide, kernel = F.pad(grad, (k - 1, k - 1, 0, 0)), kernel.view(channels, 1, 1, k)
            else:
                wide, kernel = F.pad(grad, (0, 0, k - 1, k - 1)), kernel.view(channels, 1, k, 1)
            grad_padded = F.conv2d(wide, kernel, groups=channels)
            # ... then fold the mirrored border onto the samples it copies (padded pad - i is t[i], and
            # padded pad + length - 1 + i is t[length - 1 - i]).
            grad_t = grad_padded.narrow(dim, pad, length).contiguous()
            for i in range(1, pad + 1):
                grad_t.narrow(dim, i, 1).add_(grad_padded.narrow(dim, pad - i, 1))
                grad_t.narrow(dim, length - 1 - i, 1).add_(grad_padded.narrow(dim, pad + length - 1 + i, 1))
        if ctx.needs_input_grad[1]:
            # grad_w[c, j] = sum of grad[i] * padded[i + j] over the channel's samples: per image plane, the
            # products of all (i, i') pairs along the axis (one batched matmul), then the sums of the diagonals
            # i' = i + j.
            n, _, height, width = grad.shape
            g = grad.reshape(n * channels, height, width)
            p = padded.reshape(n * channels, *padded.shape[-2:])
            pairs = torch.bmm(g.transpose(1, 2), p) if ctx.axis == -1 else torch.bmm(g, p.transpose(1, 2))
            pairs = pairs.view(n, channels, *pairs.shape[-2:]).sum(0)
            grad_w = torch.stack([pairs.diagonal(j, 1, 2).sum(-1) for j in range(k)], dim=1)
        return grad_t, grad_w, None


#: Smallest H * W for which :func:`reflect_filter` uses its custom backward (below it, torch's is faster).
FAST_MIN_PLANE = 32 * 32


def reflect_filter(t: Tensor, weight: Tensor, axis: int) -> Tensor:
    """Depthwise ``K``-tap filter of ``t`` along ``axis`` (-1 = W, -2 = H) after reflect padding by ``K // 2``.

    The same values as ``conv2d(pad_nd(t, ..., "reflect"), weight, groups=C)``; ``weight`` is (C, K).
    """
    pad = weight.shape[-1] // 2
    if t.shape[axis] > pad and t.shape[-1] * t.shape[-2] >= FAST_MIN_PLANE:
        return _ReflectFilter.apply(t, weight, axis)
    # Small planes: torch's own convolution backward is faster there (measured: the ConvNet at 28 px trains faster
    # without the custom backward). Padding as long as the axis: torch's reflect mode is undefined there, pad_nd
    # continues the mirror.
    channels, k = weight.shape
    if axis == -1:
        return F.conv2d(
            pad_nd(t, (pad, pad, 0, 0), "reflect"), weight.view(channels, 1, 1, k), groups=channels
        )
    return F.conv2d(pad_nd(t, (0, 0, pad, pad), "reflect"), weight.view(channels, 1, k, 1), groups=channels)


class _Tanh(torch.autograd.Function):
    """``tanh(x) = 2 * sigmoid(2x) - 1``: torch's CPU sigmoid kernel is several times faster than its tanh."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = torch.sigmoid(x * 2).mul_(2).sub_(1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def fast_tanh(x: Tensor) -> Tensor:
    """``torch.tanh(x)`` to float rounding, faster on CPU (the CUDA tanh is already fast)."""
    if x.is_cuda:
        return torch.tanh(x)
    return _Tanh.apply(x)


class LiftingFunction(nn.Module):
    """The P or U function of a lifting step: ``Tanh . Conv1x1 . ReLU . ConvK . ReflectPad(K//2)``.

    Both convolutions are depthwise (groups = channels) and bias-free; the K-tap kernel runs along the lifted axis,
    so one instance serves horizontal and vertical lifts.

    Args:
        channels: number of channels.
        kernel_size: odd number of taps K.

    Shape:
        forward(t, axis): (N, C, H, W) -> (N, C, H, W), filtering along ``axis`` (-1 = W, -2 = H).
    """

    def __init__(self, channels: int, kernel_size: int = 5) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        if (
            isinstance(kernel_size, bool)
            or not isinstance(kernel_size, int)
            or kernel_size < 1
            or kernel_size % 2 == 0
        ):
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.depthwise = nn.Parameter(torch.empty(channels, 1, kernel_size))
        self.pointwise = nn.Parameter(torch.empty(channels, 1, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """K-tap kernel: the ``nn.Conv1d`` default init; 1x1 weights: zero (the function starts as 0)."""
        nn.init.kaiming_uniform_(self.depthwise, a=math.sqrt(5))
        nn.init.zeros_(self.pointwise)

    def forward(self, t: Tensor, axis: int) -> Tensor:
        if axis not in (-1, -2):
            raise ValueError(f"axis must be -1 (W) or -2 (H), got {axis!r}")
        h = F.relu(reflect_filter(t, self.depthwise.view(self.channels, self.kernel_size), axis))
        return fast_tanh(h * self.pointwise.view(1, self.channels, 1, 1))

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}"


@dataclass
class LiftDetails:
    """Everything a :class:`LiftUpPool2d` needs besides LL, and the auxiliary loss terms.

    Attributes:
        ll, lh, hl, hh: the four sub-bands, each (N, C, ceil(H/2), ceil(W/2)).
        input_size: (H, W) of the input before the odd-size padding.
        padding: (rows, cols) appended at the bottom / right to make H and W even (0 or 1 each).
        bands: the bands summed into the pooled output.
        loss_u, loss_p: normalised update / predict loss terms (before the lambdas), None unless requested.
    """

    ll: Tensor
    lh: Tensor
    hl: Tensor
    hh: Tensor
    input_size: tuple[int, int]
    padding: tuple[int, int]
    bands: tuple[str, ...] = BANDS
    loss_u: Tensor | None = None
    loss_p: Tensor | None = None

    def as_dict(self) -> dict[str, Tensor]:
        """The four sub-bands by name (``LL``, ``LH``, ``HL``, ``HH``)."""
        return {"LL": self.ll, "LH": self.lh, "HL": self.hl, "HH": self.hh}

    def ll_from_pooled(self, pooled: Tensor) -> Tensor:
        """Recover LL from a pooled output (the sum of the kept bands) by subtracting the kept detail bands.

        Raises:
            ValueError: when LL is not among the kept bands (the sum then carries no LL to recover).
        """
        if "LL" not in self.bands:
            raise ValueError(f"LL is not among the pooled bands {self.bands}; pass details.ll instead")
        bands = self.as_dict()
        return pooled - sum((bands[b] for b in self.bands if b != "LL"), torch.zeros_like(pooled))


def _split(x: Tensor, axis: int) -> tuple[Tensor, Tensor]:
    if axis == -1:
        return x[..., 0::2], x[..., 1::2]
    return x[..., 0::2, :], x[..., 1::2, :]


def _lift(x: Tensor, predict: LiftFn, update: LiftFn, axis: int) -> tuple[Tensor, Tensor, Tensor]:
    xe, xo = _split(x, axis)
    d = xo - predict(xe, axis)
    s = xe + update(d, axis)
    return s, d, xo


def _unlift(s: Tensor, d: Tensor, predict: LiftFn, update: LiftFn, axis: int) -> Tensor:
    xe = s - update(d, axis)
    xo = d + predict(xe, axis)
    # Interleave even and odd samples along the axis.
    if axis == -1:
        return torch.stack((xe, xo), dim=-1).flatten(-2)
    return torch.stack((xe, xo), dim=-2).flatten(-3, -2)


def _lift_down(
    x: Tensor, predict: LiftFn, update: LiftFn, bands: tuple[str, ...], all_bands: bool, aux_loss: bool
) -> tuple[Tensor, LiftDetails]:
    height, width = x.shape[-2:]
    pad_h, pad_w = height % 2, width % 2
    x = pad_nd(x, (0, pad_w, 0, pad_h), "reflect")
    fused = _fused_lifts(x, predict, update)
    if fused is not None:
        return _lift_down_fused(x, fused, bands, (height, width), (pad_h, pad_w), aux_loss)
    s, d, xo = _lift(x, predict, update, -1)
    ll, lh, xo_s = _lift(s, predict, update, -2)
    bands_d = {"LL": ll, "LH": lh}
    losses_u, losses_p = [], []
    if aux_loss:
        losses_u += [(s - xo).square().mean(), (ll - xo_s).square().mean()]
        losses_p += [d.square().mean(), lh.square().mean()]
    if all_bands or aux_loss or "HL" in bands or "HH" in bands:
        hl, hh, xo_d = _lift(d, predict, update, -2)
        bands_d.update(HL=hl, HH=hh)
        if aux_loss:
            losses_u.append((hl - xo_d).square().mean())
            losses_p.append(hh.square().mean())
    y = bands_d[bands[0]]
    for b in bands[1:]:
        y = y + bands_d[b]
    details = LiftDetails(
        ll=ll,
        lh=lh,
        hl=bands_d.get("HL"),  # type: ignore[arg-type]  # only None when the caller asked for no details
        hh=bands_d.get("HH"),  # type: ignore[arg-type]
        input_size=(height, width),
        padding=(pad_h, pad_w),
        bands=bands,
        loss_u=torch.stack(losses_u).mean() if aux_loss else None,
        loss_p=torch.stack(losses_p).mean() if aux_loss else None,
    )
    return y, details


def _fused_lifts(x: Tensor, predict: LiftFn, update: LiftFn) -> tuple[Tensor, ...] | None:
    """P's and U's weights as (taps, scale) when the fused CPU kernel can run this layer, else None."""
    if not (isinstance(predict, LiftingFunction) and isinstance(update, LiftingFunction)):
        return None
    if predict.kernel_size != update.kernel_size:
        return None
    # The vertical steps run on s and d, which keep x's height.
    if not (kernel.supports(x, predict.depthwise, -1) and kernel.supports(x, predict.depthwise, -2)):
        return None
    c, k = predict.channels, predict.kernel_size
    return (
        predict.depthwise.view(c, k),
        predict.pointwise.view(c),
        update.depthwise.view(c, k),
        update.pointwise.view(c),
    )


def _lift_down_fused(
    x: Tensor,
    weights: tuple[Tensor, ...],
    bands: tuple[str, ...],
    input_size: tuple[int, int],
    padding: tuple[int, int],
    aux_loss: bool,
) -> tuple[Tensor, LiftDetails]:
    """:func:`_lift_down` with each lifting step (split, P, U and the loss sums) as one fused kernel call."""
    s, d, su_w, sp_w = kernel.lift_step(x, *weights, axis=-1)
    ll, lh, su_s, sp_s = kernel.lift_step(s, *weights, axis=-2)
    hl, hh, su_d, sp_d = kernel.lift_step(d, *weights, axis=-2)
    bands_d = {"LL": ll, "LH": lh, "HL": hl, "HH": hh}
    y = bands_d[bands[0]]
    for b in bands[1:]:
        y = y + bands_d[b]
    loss_u = loss_p = None
    if aux_loss:
        # Each sum of squares divided by its element count: the mean of each lift, as in _lift_down.
        loss_u = (su_w / s.numel() + su_s / ll.numel() + su_d / hl.numel()) / 3
        loss_p = (sp_w / d.numel() + sp_s / lh.numel() + sp_d / hh.numel()) / 3
    details = LiftDetails(ll, lh, hl, hh, input_size, padding, bands, loss_u, loss_p)
    return y, details


def lift_down_pool2d(
    x: Tensor,
    predict: LiftFn,
    update: LiftFn,
    bands: str | Iterable[str] = BANDS,
    return_details: bool = False,
    *,
    aux_loss: bool = False,
) -> Tensor | tuple[Tensor, LiftDetails]:
    """2D lifting down pool: lift along W, then along H; return the sum of the kept sub-bands.

    Args:
        x: input features.
        predict: P, called as ``predict(t, axis)`` with ``axis`` -1 (along W) or -2 (along H); returns ``t``'s shape.
        update: U, same contract.
        bands: "all" or a subset of ``("LL", "LH", "HL", "HH")`` (a sequence, or one string like "LL+HH").
        return_details: also return a :class:`LiftDetails` (all four bands, padding) for :func:`lift_up_pool2d`.
        aux_loss: fill ``loss_u`` / ``loss_p`` of the details (see the module docstring).

    Returns:
        The pooled tensor, or ``(pooled, details)`` with ``return_details``.

    Shape:
        (N, C, H, W) -> (N, C, ceil(H/2), ceil(W/2)); odd sizes are reflect-padded to even first.
    """
    _check_input(x)
    _check_fn(predict, "predict")
    _check_fn(update, "update")
    kept = _parse_bands(bands)
    y, details = _lift_down(x, predict, update, kept, all_bands=return_details, aux_loss=aux_loss)
    return (y, details) if return_details else y


def lift_up_pool2d(ll: Tensor, details: LiftDetails, predict: LiftFn, update: LiftFn) -> Tensor:
    """Inverse of :func:`lift_down_pool2d`: vertical inverse lifts, then the horizontal one, then crop the padding.

    Args:
        ll: the LL band, or a feature taking its place (e.g. from a decoder).
        details: from ``lift_down_pool2d(..., return_details=True)``; its LH, HL, HH bands are used.
        predict, update: the P and U used by the down pool.

    Returns:
        The reconstruction; equals the down pool's input (up to float rounding) when ``ll`` is ``details.ll``.

    Shape:
        (N, C, h, w) -> (N, C, H, W) with (H, W) = ``details.input_size``, (h, w) = (ceil(H/2), ceil(W/2)).
    """
    _check_input(ll, name="ll")
    if not isinstance(details, LiftDetails):
        raise TypeError(
            f"details must be LiftDetails (from return_details=True), got {type(details).__name__}"
        )
    if details.hl is None or details.hh is None:
        raise ValueError("details lack the HL/HH bands; get them with return_details=True")
    if ll.shape != details.lh.shape:
        raise ValueError(
            f"ll has shape {tuple(ll.shape)} but the detail bands have shape {tuple(details.lh.shape)}"
        )
    _check_fn(predict, "predict")
    _check_fn(update, "update")
    s = _unlift(ll, details.lh, predict, update, -2)
    d = _unlift(details.hl, details.hh, predict, update, -2)
    x = _unlift(s, d, predict, update, -1)
    height, width = details.input_size
    return x[..., :height, :width]


class _AuxSlot:
    """Holds the last auxiliary loss; copies and pickles of a module start empty (the loss carries a graph)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: Tensor | None = None

    def __deepcopy__(self, memo: dict) -> _AuxSlot:
        return _AuxSlot()

    def __reduce__(self) -> tuple[type, tuple]:
        return (_AuxSlot, ())


class LiftDownPool2d(nn.Module):
    """Learned 2x pooling by 2D lifting (LiftDownPool); see the module docstring for the formulation.

    Args:
        channels: number of input channels.
        kernel_size: odd number of taps of P and U (the paper uses 5).
        bands: "all" (default, the paper's) or a subset of LL, LH, HL, HH to sum into the output.
        lambda_u, lambda_p: weights of the update and predict terms of the auxiliary loss.

    Attributes:
        aux_loss: ``lambda_u * loss_u + lambda_p * loss_p`` of the last forward in training mode (None in eval
            mode or before any forward); add :func:`lifting_loss` of the model to the task loss.

    Shape:
        (N, C, H, W) -> (N, C, ceil(H/2), ceil(W/2)).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 5,
        bands: str | Iterable[str] = "all",
        lambda_u: float = 0.01,
        lambda_p: float = 0.1,
    ) -> None:
        super().__init__()
        for name, value in (("lambda_u", lambda_u), ("lambda_p", lambda_p)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        self.predict = LiftingFunction(channels, kernel_size)
        self.update = LiftingFunction(channels, kernel_size)
        self.channels = channels
        self.kernel_size = kernel_size
        self.bands = _parse_bands(bands)
        self.lambda_u = float(lambda_u)
        self.lambda_p = float(lambda_p)
        self._aux = _AuxSlot()

    @property
    def aux_loss(self) -> Tensor | None:
        return self._aux.value

    def reset_parameters(self) -> None:
        """Re-initialise P and U; the zero 1x1 weights make the layer polyphase subsampling again."""
        self.predict.reset_parameters()
        self.update.reset_parameters()

    def forward(self, x: Tensor, return_details: bool = False) -> Tensor | tuple[Tensor, LiftDetails]:
        """Pool ``x``; with ``return_details`` also return the :class:`LiftDetails` for a :class:`LiftUpPool2d`."""
        _check_input(x, self.channels)
        y, details = _lift_down(
            x, self.predict, self.update, self.bands, all_bands=return_details, aux_loss=self.training
        )
        if self.training:
            self._aux.value = self.lambda_u * details.loss_u + self.lambda_p * details.loss_p
        else:
            self._aux.value = None
        return (y, details) if return_details else y

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, kernel_size={self.kernel_size}, bands={'+'.join(self.bands)}, "
            f"lambda_u={self.lambda_u}, lambda_p={self.lambda_p}"
        )


class LiftUpPool2d(nn.Module):
    """Inverse lifting (LiftUpPool) with the P/U of a paired :class:`LiftDownPool2d`.

    Owns no parameters: it uses the down layer's, which stays the only owner (so the state_dict holds them once).

    Args:
        down: the paired down pool.

    Shape:
        forward(ll, details): (N, C, h, w) -> (N, C, H, W), (H, W) = ``details.input_size``.
    """

    def __init__(self, down: LiftDownPool2d) -> None:
        super().__init__()
        if not isinstance(down, LiftDownPool2d):
            raise TypeError(f"down must be a LiftDownPool2d, got {type(down).__name__}")
        # Stored outside _modules so the shared P/U are not registered (and saved) twice.
        self.__dict__["_down"] = down

    @property
    def down(self) -> LiftDownPool2d:
        return self.__dict__["_down"]

    def forward(self, ll: Tensor, details: LiftDetails) -> Tensor:
        """Reconstruct from ``ll`` (LL or a feature in its place) and the down pool's ``details``."""
        _check_input(ll, self.down.channels, name="ll")
        return lift_up_pool2d(ll, details, self.down.predict, self.down.update)

    def extra_repr(self) -> str:
        return f"paired with LiftDownPool2d({self.down.channels}, kernel_size={self.down.kernel_size})"


def lifting_loss(model: nn.Module) -> Tensor:
    """Sum of the auxiliary losses of ``model``'s pooling layers (every :class:`LiftDownPool2d` among them).

    The same as :func:`robustbench_lift.layers.aux.auxiliary_loss`, kept under the name the paper's loss goes by.
    """
    from .aux import auxiliary_loss

    return auxiliary_loss(model)
