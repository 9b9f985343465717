"""Datasets: reading, generating, splitting and listing images.

Importing this package registers every dataset with
:mod:`taskcodec.data.registry`, so ``build_dataset`` knows all names.
"""

from taskcodec.data import builtin, imagefolder  # noqa: F401  (registers the datasets)
