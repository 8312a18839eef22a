"""Optimizers with PyTorch's arithmetic, so a run can be reproduced step for step.

- :mod:`~nnlib.optimizers.base`: the :class:`Optimizer` base (hyperparameter checks,
  lazy per-parameter state, clipping, weight decay) and the registry;
- :mod:`~nnlib.optimizers._flat`: the packed fast path over one flat buffer and the
  subnormal flush;
- :mod:`~nnlib.optimizers.algorithms`: SGD, Momentum, Adam, RMSprop, AdamW, each with
  its fast update beside a plain reference one.

``compile(optimizer="adam")`` resolves names through :data:`registry`.
"""

from ._flat import FLUSH_EVERY
from .algorithms import SGD, Adam, AdamW, Momentum, RMSprop
from .base import GLOBAL_CLIPNORM_EPS, Optimizer, get, registry

__all__ = ["Optimizer", "SGD", "Momentum", "Adam", "RMSprop", "AdamW", "registry", "get",
           "FLUSH_EVERY", "GLOBAL_CLIPNORM_EPS"]
