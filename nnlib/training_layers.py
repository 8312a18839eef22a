"""Deprecated: the old home of Dropout and BatchNormalization (now nnlib.layers.dropout and
nnlib.layers.normalization). Importing it warns (DeprecationWarning) and re-exports the same
classes; it will be removed in a later release (see CHANGELOG.md)."""

import warnings

from .layers.dropout import Dropout
from .layers.normalization import BatchNormalization

__all__ = ["Dropout", "BatchNormalization"]

warnings.warn("nnlib.training_layers is deprecated: import Dropout and BatchNormalization from nnlib.layers",
              DeprecationWarning, stacklevel=2)
