"""Training loop for the toolkit's models: resumable, seeded, with checkpoints in the toolkit's format.

``train(arch, pool, dataset, epochs=..., out=...)`` (in :mod:`.loop`) trains ``build_model(arch, pool=pool)`` and
writes

* ``out`` - the last epoch's model (written after every epoch, so an interrupted run still leaves one);
* ``<stem>.best<suffix>`` next to it - the epoch with the best validation accuracy;
* ``<out>.resume.pt`` - model, optimizer, scheduler, epoch, history and RNG seeds after every finished epoch.

Re-running the same call resumes after the last finished epoch; with deterministic mode the result equals an
uninterrupted run. Asking for more epochs than a finished run had continues it (the cosine schedule is stretched
to the new length from that point, so that result differs from a run planned that long from the start).

Choices:

* Validation: by default a seeded split of the training set (``holdout`` images, default
  :func:`~.config.default_holdout`: a tenth, at most 5 000) that training never sees, so the best checkpoint is
  never selected on the evaluation images (``val_source="holdout"`` in the metadata). ``val_split="test"`` (the
  spec's test split, ``val_source="test"``) or ``val_dataset=...`` (``val_source="dataset"``) only when asked.
  With ``limit_train`` and room to spare, the held-out images come from the training images the subset leaves
  out, so the training subset is the same whatever validates it. The checkpoint's ``train_config`` records
  ``seed``, ``val_source``, ``val_dataset`` and ``holdout``.
* Randomness: every epoch draws its data order, crops and flips from a generator seeded by
  ``derive_seed(seed, "train", epoch)``; weights are initialised from ``derive_seed(seed, "init")`` and dropout from
  ``derive_seed(seed, "dropout", epoch)`` inside ``torch.random.fork_rng``, so the caller's global RNG state is left
  as it was and resuming needs no saved generator state (the seeds are stored for the record).
* Deterministic mode: ``torch.use_deterministic_algorithms(True, warn_only=True)`` and cuDNN benchmarking off
  during training, restored afterwards.
* Augmentation: random crop with zero padding (``crop_padding``, default 4) and a horizontal flip whose default
  depends on the dataset (off for digits, on otherwise). Normalisation mean/std are measured on (up to 10 000
  of) the training images and recorded in the checkpoint.
* Loss: cross-entropy (optional label smoothing) plus :func:`robustbench_lift.layers.aux.auxiliary_loss` of the model
  (the pools' own regularisers, e.g. LiftDownPool's; zero without such layers). Weight decay applies to weights
  with more than one dimension (not to biases and norm layers).

Modules: :mod:`.config` (settings, results, defaults), :mod:`.batches` (loading, augmentation, subsets),
:mod:`.optim` (optimizer, schedule, deterministic and seeded contexts), :mod:`.state` (resume state),
:mod:`.loop` (:func:`train`).
"""

from __future__ import annotations

from .batches import augment
from .config import (
    CHECKPOINT_SUFFIXES,
    NO_FLIP_DATASETS,
    OPTIMIZERS,
    VAL_SPLITS,
    TrainConfig,
    TrainResult,
    best_path_for,
    default_flip,
    default_holdout,
    resume_path_for,
    seed_out_path,
)
from .loop import train
from .optim import warmup_cosine

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "NO_FLIP_DATASETS",
    "OPTIMIZERS",
    "TrainConfig",
    "TrainResult",
    "VAL_SPLITS",
    "augment",
    "best_path_for",
    "default_flip",
    "default_holdout",
    "resume_path_for",
    "seed_out_path",
    "train",
    "warmup_cosine",
]
