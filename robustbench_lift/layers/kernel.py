"""The fused CPU kernel of one lifting step (``csrc/lift_step.cpp``), built on first use and called through ctypes.

:class:`~robustbench_lift.layers.lift.LiftDownPool2d` spends its time on CPU in many small passes over memory
(split, pad, filter, ReLU, scale, tanh, add - each a separate torch kernel, forward and backward). The C++ file
computes a whole lifting step, ``d = xo - P(xe)`` then ``s = xe + U(d)`` with the auxiliary loss's sums of squares,
in one pass per image plane, and its backward in one more (recomputing the intermediates instead of storing them).

Build: the first call compiles the file with the system C++ compiler (``$CXX``, else ``c++``/``g++``; about 3 s)
into ``$RBL_CACHE_DIR`` (default ``~/.cache/robustbench_lift``) under a name made from the source, the flags and the
CPU, so a changed file, compiler flag or machine builds anew. It is plain C++ with OpenMP and no torch headers.
When no compiler is found or the build fails, :func:`available` is False (logged once) and LiftPool runs on torch
operations alone; ``RBL_LIFT_KERNEL=0`` turns the kernel off.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["available", "build_error", "lift_step", "enabled"]

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "lift_step.cpp"
FLAGS = (
    "-O3",
    "-march=native",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fopenmp",
    "-shared",
    "-fPIC",
    "-std=c++17",
)
ABI_VERSION = 1

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None
_tried = False


def _cpu_id() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def _cache_dir() -> Path:
    root = os.environ.get("RBL_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "robustbench_lift"


def _build() -> ctypes.CDLL:
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join((cxx, *FLAGS, _cpu_id())).encode()).hexdigest()[:16]
    target = _cache_dir() / f"lift_step-{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            out = Path(tmp) / target.name
            proc = subprocess.run(
                [cxx, *FLAGS, str(SOURCE), "-o", str(out)], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                raise RuntimeError(f"{cxx} failed: {proc.stderr.strip()[-2000:]}")
            os.replace(out, target)  # atomic: a concurrent build of the same key writes the same file
    lib = ctypes.CDLL(str(target))
    if lib.rbl_lift_abi_version() != ABI_VERSION:
        raise RuntimeError(f"{target} has ABI {lib.rbl_lift_abi_version()}, expected {ABI_VERSION}")
    i64, i32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    for name in ("f32", "f64"):
        fwd = getattr(lib, f"rbl_lift_forward_{name}")
        fwd.argtypes = [ptr] * 4 + [i64, i64, i64, i32, i64, i32] + [ptr] * 4 + [i32]
        fwd.restype = None
        bwd = getattr(lib, f"rbl_lift_backward_{name}")
        bwd.argtypes = [ptr] * 6 + [i64, i64, i64, i32, i64, i32] + [ptr] * 4 + [i32]
        bwd.restype = None
    return lib


def _load() -> ctypes.CDLL | None:
    global _lib, _error, _tried
    if _tried:
        return _lib
    with _lock:
        if not _tried:
            try:
                _lib = _build()
            except Exception as exc:  # noqa: BLE001 - any build failure means: use the torch path
                _error = str(exc)
                log.warning("LiftPool's fused CPU kernel is unavailable (%s); using torch operations", exc)
            _tried = True
    return _lib


def enabled() -> bool:
    """True unless ``RBL_LIFT_KERNEL=0`` (read at each call, so tests can switch it)."""
    return os.environ.get("RBL_LIFT_KERNEL", "1") != "0"


def available() -> bool:
    """Whether the kernel is enabled and built (builds it on the first call)."""
    return enabled() and _load() is not None


def build_error() -> str | None:
    """Why the build failed, or None."""
    _load()
    return _error


def supports(x: Tensor, weight: Tensor, axis: int) -> bool:
    """Whether :func:`lift_step` can run ``x``: CPU float32/float64, even along ``axis``, halves longer than K // 2."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x.dim() != 4:
        return False
    length = x.shape[axis]
    return length % 2 == 0 and length // 2 > weight.shape[-1] // 2 and available()


def _ptr(t: Tensor) -> int:
    return t.data_ptr()


class _LiftStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, wp, ap, wu, au, axis):
        lib = _lib
        n, c, h, w = x.shape
        x = x.contiguous()
        wp_, ap_, wu_, au_ = (t.detach().contiguous().to(x.dtype) for t in (wp, ap, wu, au))
        out_shape = (n, c, h // 2, w) if axis == -2 else (n, c, h, w // 2)
        s = x.new_empty(out_shape)
        d = x.new_empty(out_shape)
        sq = torch.empty(n * c, 2, dtype=torch.float64)
        fn = lib.rbl_lift_forward_f32 if x.dtype == torch.float32 else lib.rbl_lift_forward_f64
        fn(
            _ptr(x), _ptr(s), _ptr(d), _ptr(sq), n * c, h, w, 0 if axis == -2 else 1, c, wp_.shape[-1],
            _ptr(wp_), _ptr(ap_), _ptr(wu_), _ptr(au_), torch.get_num_threads(),
        )  # fmt: skip
        sums = sq.sum(0).to(x.dtype)
        ctx.save_for_backward(x, wp_, ap_, wu_, au_)
        ctx.axis = axis
        ctx.weight_dtype = wp.dtype
        return s, d, sums[0], sums[1]

    @staticmethod
    @once_differentiable
    def backward(ctx, gs, gd, g_su, g_sp):
        lib = _lib
        x, wp, ap, wu, au = ctx.saved_tensors
        n, c, h, w = x.shape
        k = wp.shape[-1]
        zeros = None
        if gs is None or gd is None:
            zeros = x.new_zeros((n, c, h // 2, w) if ctx.axis == -2 else (n, c, h, w // 2))
        gs = (zeros if gs is None else gs).contiguous()
        gd = (zeros if gd is None else gd).contiguous()
        gl = torch.stack(
            [
                g_su if g_su is not None else x.new_zeros(()),
                g_sp if g_sp is not None else x.new_zeros(()),
            ]
        ).to(x.dtype).contiguous()  # fmt: skip
        gx = torch.empty_like(x)
        gw = torch.empty(n * c, 2 * k + 2, dtype=torch.float64)
        fn = lib.rbl_lift_backward_f32 if x.dtype == torch.float32 else lib.rbl_lift_backward_f64
        fn(
            _ptr(x), _ptr(gs), _ptr(gd), _ptr(gl), _ptr(gx), _ptr(gw), n * c, h, w, 0 if ctx.axis == -2 else 1, c, k,
            _ptr(wp), _ptr(ap), _ptr(wu), _ptr(au), torch.get_num_threads(),
        )  # fmt: skip
        gw = gw.view(n, c, 2 * k + 2).sum(0).to(ctx.weight_dtype)
        g_wp, g_ap, g_wu, g_au = gw[:, :k], gw[:, k], gw[:, k + 1 : 2 * k + 1], gw[:, 2 * k + 1]
        return gx, g_wp, g_ap, g_wu, g_au, None


def lift_step(
    x: Tensor, wp: Tensor, ap: Tensor, wu: Tensor, au: Tensor, axis: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One lifting step along ``axis`` (-1 = W, -2 = H) of an even-sized ``x``.

    ``P(t) = tanh(ap * relu(filter(t, wp)))`` and ``U`` likewise with ``wu, au``; ``wp``/``wu`` are (C, K) taps,
    ``ap``/``au`` (C,) scales. Returns ``(s, d, sum((s - xo)**2), sum(d**2))``; differentiable in every input.
    Call only when :func:`supports` is True.
    """
    if _load() is None:
        raise RuntimeError(f"the fused lifting kernel is unavailable: {_error}")
    return _LiftStep.apply(x, wp, ap, wu, au, axis)
