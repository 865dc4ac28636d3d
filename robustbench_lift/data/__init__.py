"""Datasets and input preprocessing for evaluation.

``open_dataset(spec)`` turns a spec string into a dataset:

====================  ==========================================================================================
spec                  what it reads
====================  ==========================================================================================
``fashion-mnist``     IDX files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (default root
                      ``/usr/share/datasets/fashion-mnist``, Debian package ``dataset-fashion-mnist``)
``mnist:ROOT``        the same IDX layout
``cifar10:ROOT``      torchvision's python layout ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
``cifar100:ROOT``     ``cifar-100-python/{train,test,meta}`` (fine labels)
``imagefolder:ROOT``  ``ROOT/<class>/<image>``, class names sorted, decoded with PIL to RGB
``cifar10-c:ROOT``    pre-generated ``<corruption>.npy`` uint8 (5N, H, W, C) + ``labels.npy``; a PregeneratedSet
``cifar100-c:ROOT``   the same, 100 classes
``imagenet-c:ROOT``   pre-generated ``<corruption>/<severity>/<wnid>/*.JPEG`` (224 px); a PregeneratedSet
``cifar10-p:ROOT``    pre-generated ``<perturbation>.npy`` uint8 (N, T, H, W, C); a PregeneratedSequences
====================  ==========================================================================================

``ROOT`` is ``~``-expanded. For CIFAR, ``ROOT`` may be the parent folder or the batches folder itself. IDX files are
also found under ``ROOT/FashionMNIST/raw`` / ``ROOT/MNIST/raw`` (where torchvision's download puts them). Nothing is
downloaded unless ``download=True`` (CIFAR-10/100, Fashion-MNIST, MNIST, through torchvision).

Every dataset yields ``(uint8 tensor (C, H, W), int label)`` and reads whole batches (:func:`get_batch`,
:func:`iter_batches`). Modules: :mod:`.base` (dataset types), :mod:`.classes`, :mod:`.readers` (IDX, CIFAR pickles,
``.npy``), :mod:`.folder` (image folders), :mod:`.registry` (``open_dataset`` and the image openers),
:mod:`.pregenerated` (-C / -P sets), :mod:`.transforms` (preprocessing), :mod:`.loader` (batches).
"""

from __future__ import annotations

from . import pregenerated as _pregenerated  # noqa: F401  (registers the pre-generated -C / -P openers)
from .base import ArrayDataset, DatasetWarning, ImageDataset
from .classes import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ROOT,
    IMAGE_EXTENSIONS,
    MNIST_CLASSES,
)
from .folder import ImageFolderDataset
from .loader import get_batch, iter_batches, select_indices
from .pregenerated import (
    NpyCellDataset,
    PregeneratedSequences,
    PregeneratedSet,
    SequenceArray,
    UnreadableCellError,
)
from .readers import load_cifar_pickle, read_idx
from .registry import DATASETS, list_datasets, open_dataset, register_dataset
from .transforms import (
    InputPipeline,
    Normalize,
    Preprocess,
    as_pipeline,
    match_channels,
    prepare_batch,
    resize_to,
    store_as_jpeg,
    to_float,
)

__all__ = [
    "DATASETS",
    "DatasetWarning",
    "ImageDataset",
    "ArrayDataset",
    "NpyCellDataset",
    "ImageFolderDataset",
    "PregeneratedSet",
    "UnreadableCellError",
    "PregeneratedSequences",
    "SequenceArray",
    "open_dataset",
    "list_datasets",
    "register_dataset",
    "load_cifar_pickle",
    "read_idx",
    "to_float",
    "match_channels",
    "resize_to",
    "store_as_jpeg",
    "prepare_batch",
    "Normalize",
    "Preprocess",
    "InputPipeline",
    "as_pipeline",
    "get_batch",
    "iter_batches",
    "select_indices",
    "FASHION_MNIST_ROOT",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "IMAGE_EXTENSIONS",
]
