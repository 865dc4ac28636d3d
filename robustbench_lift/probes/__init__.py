"""Shift-consistency probes, feature-level shift equivariance, and the pool/unpool reconstruction probe.

Every probe is registered in :data:`PROBES` (one file each family: :mod:`.shift`, :mod:`.equivariance`,
:mod:`.reconstruction`, imported here explicitly) and run by :func:`run_probe`, a pure function of the model, the
dataset and its arguments that returns ``(arrays, rows)``: per-image arrays and rows in ``schema.RESULT_COLUMNS``
format (suite ``shift`` for the shift probes, ``reconstruction`` for the reconstruction probe).

Shift protocols (not comparable with each other; each row's ``protocol`` names its own):

* ``crop``: two crops per image at offsets drawn per image from a seeded generator; consistency = fraction of
  pairs whose top-1 agree. ``protocol="zhang"`` (with ``crop_size``): crops of ``crop_size`` from a larger image,
  Zhang's ImageNet protocol for 224 px crops of the 256 px image (offsets in [0, 32)), which the evaluator reads for
  image folders; ``"aps"`` (default for fixed-size data): zero-pad S, offsets in [0, 2S) (S = 3 up to 64 px);
  ``"reflect"``: reflect-pad S, offsets in [0, S), a one-way variant of no published protocol.
* ``circular``: two ``torch.roll`` shifts drawn in [-S, S) per axis (Chaman & Dokmanic; S = 3 for 32 px).
* ``diagonal``: shift by s = 0..S pixels along the diagonal: accuracy, mean probability of the true class and
  agreement with the unshifted prediction, per s (a curve). ``mode="zhang"`` (with ``crop_size``): crops at (s, s)
  of the larger image, real content only (Zhang's curve); ``"circular"`` (default otherwise) or ``"reflect"``.
* ``equivariance``: for each pooling layer, ``||f(roll(x, d)) - shift(f(x), d / stride)|| / ||f(x)||`` with a
  circular diagonal input shift d; an integer roll when d is a multiple of the layer's cumulative stride, a
  band-limited (Fourier) fractional shift otherwise.

Shifts act on images in [0, 1], after ``prepare`` and before ``normalize`` (see
:func:`robustbench_lift.data.as_pipeline`).
"""

from __future__ import annotations

from ..data import InputPipeline, as_pipeline, select_indices
from ..metrics.image import psnr, ssim
from ..schema import model_fields

# registration order is the order list_probes() reports: shift probes, equivariance, reconstruction
from . import shift  # noqa: F401  (registers crop, circular, diagonal)

# isort: split
from . import equivariance, reconstruction  # noqa: F401  (register the other probes)
from .base import PROBES, ProbeRun, list_probes, run_probe
from .equivariance import pool_layers
from .reconstruction import RECONSTRUCTION_PAIRS

__all__ = [
    "PROBES",
    "ProbeRun",
    "InputPipeline",
    "as_pipeline",
    "select_indices",
    "model_fields",
    "list_probes",
    "run_probe",
    "pool_layers",
    "psnr",
    "ssim",
    "RECONSTRUCTION_PAIRS",
]
