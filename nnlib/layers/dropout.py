"""Dropout: inverted dropout in training, the identity at inference, with a seeded generator
whose position model files keep (``get_state``)."""

from __future__ import annotations

import copy

import numpy as np

from .._validation import check_number
from .base import Layer, registry

__all__ = ["Dropout"]


def _child_generator(rng: np.random.Generator) -> np.random.Generator:
    """An independent generator derived from ``rng`` without advancing its stream.

    A Dropout layer therefore does not shift the initial weights of the layers built
    after it: a model with and without dropout starts from the same weights.
    """
    try:
        return rng.spawn(1)[0]
    except (AttributeError, TypeError):  # numpy < 1.25, or a generator without a SeedSequence
        return np.random.default_rng(int(rng.integers(2**63)))


@registry.register("dropout")
class Dropout(Layer):
    """Inverted dropout: in training, zero each input with probability ``rate`` and
    scale the kept ones by ``1 / (1 - rate)``; at inference, the identity.

    The scaling keeps every unit's expected value, so nothing changes at
    inference (as Keras and PyTorch). The masks come from a ``numpy.random.Generator``
    derived at :meth:`build` from the generator it is given (in a model, the one
    seeded by the model's ``seed``), so a seed fixes every mask; deriving it does
    not advance that generator, so the other layers' initial weights are the same
    with or without dropout.

    In a data-parallel fit (:class:`nnlib.distributed.DataParallel`) each process draws
    its slice's masks from its own stream (:meth:`fork_generator`): the masks differ from
    a one-process run's, so the result does too, but every process still applies the
    same summed gradient and the replicas stay identical.

    Parameters
    ----------
    rate : float in [0, 1), default 0.5
        Probability of dropping a unit (Keras's ``rate``, PyTorch's ``p``).
    name : str, optional
    """

    derivative_text = ("passes the gradient where the unit was kept, times 1/(1 - rate), and zero where it was "
                       "dropped: dx = g * mask (the forward pass's mask)")

    replicated_state = False  # in a data-parallel fit each process draws its own masks

    def __init__(self, rate: float = 0.5, name: str | None = None,
                 input_shape: int | tuple[int, ...] | None = None) -> None:
        super().__init__(name, input_shape)
        self.rate = check_number(rate, "rate", 0.0, 1.0)
        self._rng: np.random.Generator | None = None
        self._mask: np.ndarray | None = None

    def build(self, input_shape, rng, dtype=np.float32):
        out = super().build(input_shape, rng, dtype)
        self._rng = _child_generator(rng)
        return out

    def _draw_mask(self, mask: np.ndarray) -> None:
        """Fill ``mask`` with 0 (dropped) or ``1 / (1 - rate)`` (kept), from the layer's generator."""
        self._rng.random(out=mask, dtype=mask.dtype)
        keep = mask >= self.rate  # P(keep) = 1 - rate
        np.multiply(keep, 1.0 / (1.0 - self.rate), out=mask)

    # training: y = x * m, m = [u >= rate] / (1 - rate)  =>  dx = g * m;   inference: y = x  =>  dx = g
    def forward(self, x, training=False):
        self._check_input(x)
        y = self._buffer("y", x.shape, x.dtype if x.dtype.kind == "f" else None)
        self._mask = None
        if not training or self.rate == 0.0:
            np.copyto(y, x)
            return y
        if self._rng is None:
            raise RuntimeError(f"{self!r} is not built: call build(input_shape, rng) or use it in a model")
        mask = self._buffer("mask", x.shape, y.dtype)
        self._draw_mask(mask)
        np.multiply(x, mask, out=y)
        self._mask = mask
        return y

    def backward(self, grad_out):
        dx = self._buffer("dx", grad_out.shape, grad_out.dtype)
        if self._mask is None:
            np.copyto(dx, grad_out)
        else:
            np.multiply(grad_out, self._mask, out=dx)
        return dx

    def symbolic(self, sp, x):
        """The training-mode function with the mask the next training forward pass will draw
        (drawn from a copy of the generator, which is not advanced)."""
        if self.rate == 0.0 or self._rng is None:
            return x
        saved = self._rng
        self._rng = copy.deepcopy(saved)
        try:
            mask = np.empty(x.shape, dtype=np.float64)
            self._draw_mask(mask)
        finally:
            self._rng = saved
        return x * mask.astype(object)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}

    def fork_generator(self, index: int) -> None:
        """Draw the masks from stream ``index`` of a family of independent streams.

        Every process of a data-parallel fit calls it with its rank, so the processes' slices
        of a batch get independent masks; the family is one draw of the generator the
        processes share (the same model seed)."""
        if self._rng is not None:
            self._rng = np.random.default_rng([int(self._rng.integers(2**63)), index])

    def get_state(self):
        """``{"rng_state": uint64 array of shape (6,)}``: the mask generator's position
        (PCG64 state and increment as low/high words, then ``has_uint32``, ``uinteger``),
        so a resumed run draws the same masks. Empty before :meth:`build`."""
        if self._rng is None:
            return {}
        st = self._rng.bit_generator.state
        mask64 = (1 << 64) - 1
        words = [st["state"]["state"] & mask64, st["state"]["state"] >> 64,
                 st["state"]["inc"] & mask64, st["state"]["inc"] >> 64, st["has_uint32"], st["uinteger"]]
        return {"rng_state": np.array(words, dtype=np.uint64)}

    def _set_state(self, state):
        raw = np.asarray(state["rng_state"])
        if raw.dtype.kind not in "ui" or (raw < 0).any():
            raise ValueError(f"{self!r}.set_state: rng_state must hold unsigned integers, got {raw.dtype}")
        w = [int(v) for v in raw.astype(np.uint64)]
        if w[2] % 2 == 0 or w[4] not in (0, 1) or w[5] >= 2**32:
            raise ValueError(f"{self!r}.set_state: rng_state is not a PCG64 generator state")
        self._rng.bit_generator.state = {
            "bit_generator": "PCG64", "state": {"state": w[0] | (w[1] << 64), "inc": w[2] | (w[3] << 64)},
            "has_uint32": w[4], "uinteger": w[5]}

    def __repr__(self) -> str:
        return f"Dropout({self.rate:g}{', name=' + repr(self.name) if self.name else ''})"
