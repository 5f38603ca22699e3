"""optlab's bundled datasets.

- scikit-learn's bundled copies (no network): ``digits``, ``iris``, ``wine``,
  ``breast_cancer``;
- synthetic, drawn from the run's generator: ``blobs``, ``spiral``;
- the user's files: ``cifar10`` (python or binary version, directory or .tar.gz), ``mnist``
  and ``fashion_mnist`` (IDX, plain or .gz), ``npz`` (.npz or .npy files), ``csv``.

Every source returns an :class:`optlab.RawDataset`; optlab validates, splits and preprocesses
it. File sources raise :class:`optlab.DataError` naming the file and the problem.
"""

from __future__ import annotations

from functools import partial

import optlab
from optlab import DatasetRecord

from ._arrays import Csv, CsvParams, Npz, NpzParams
from ._cifar import Cifar10, Cifar10Params
from ._mnist import DIGIT_CLASSES, FASHION_CLASSES, Mnist, MnistParams
from ._sklearn import SKLEARN_DATASETS, SklearnParams, factory
from ._synthetic import Blobs, BlobsParams, Spiral, SpiralParams

__all__ = ["optlab_register_datasets"]


@optlab.hookimpl
def optlab_register_datasets() -> list[DatasetRecord]:
    """The bundled datasets."""
    records = [
        DatasetRecord(name, factory(name), SklearnParams, summary)
        for name, (_, summary, _) in SKLEARN_DATASETS.items()
    ]
    records += [
        DatasetRecord(
            "blobs", Blobs, BlobsParams, "Gaussian clusters, one per class (synthetic, seeded)"
        ),
        DatasetRecord(
            "spiral", Spiral, SpiralParams, "CS231n's spiral arms, not linearly separable"
        ),
        DatasetRecord(
            "cifar10",
            Cifar10,
            Cifar10Params,
            "CIFAR-10 from your copy: 32x32x3 images, 10 classes, own test split",
        ),
        DatasetRecord(
            "mnist",
            partial(Mnist, classes=DIGIT_CLASSES, name="mnist"),
            MnistParams,
            "MNIST from your IDX files: 28x28 digits, own test split",
        ),
        DatasetRecord(
            "fashion_mnist",
            partial(Mnist, classes=FASHION_CLASSES, name="fashion_mnist"),
            MnistParams,
            "Fashion-MNIST from your IDX files: 28x28 clothing images, own test split",
        ),
        DatasetRecord(
            "npz", Npz, NpzParams, "Arrays from your .npz (or .npy files); memory-mappable"
        ),
        DatasetRecord("csv", Csv, CsvParams, "A CSV table of features and a label column"),
    ]
    return records
