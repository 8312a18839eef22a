"""Backpropagation by hand: the chain rule on a two-layer network, one node at a time, with sympy.

The network, for one input row x of 2 features and the label y = 1::

    a1 = x W1      z1 = a1 + b1      h = tanh(z1)      (Dense(2, activation="tanh"))
    a2 = h W2      z2 = a2 + b2                        (Dense(2))
    L  = -log softmax(z2)[y]                           (softmax cross-entropy)

The forward pass computes every node's value. The backward pass then walks the
nodes right to left. Each node knows only its own formula, so sympy differentiates
that formula with respect to the node's inputs (its *local derivative*, a Jacobian
J[k, m] = d out_k / d in_m), evaluates it at the forward values, and multiplies it
by the gradient arriving from the right::

    dL/d in = dL/d out @ J        (a vector-Jacobian product)

which is the gradient the node hands left. Where the inputs are parameters this
gives dL/dW1, dL/db1, dL/dW2 and dL/db2. Finally the same four gradients are taken
from nnlib (``model.loss_and_gradients`` on a float64 model holding the same weights)
and from ``sympy.diff`` of the whole composed formula; the script exits with status
1 if either differs from the hand-made chain rule by more than 1e-9.

Run (needs sympy; a second or two)::

    python examples/backprop_by_hand.py
"""

import sys

import numpy as np
import sympy as sp

import nnlib as nn

# The point where we differentiate: one input row, its label, and hand-picked weights.
X = np.array([[0.5, -1.0]])
LABEL = 1
WEIGHTS = {
    "W1": np.array([[0.1, -0.3], [0.4, 0.2]]),
    "b1": np.array([0.05, -0.1]),
    "W2": np.array([[0.3, -0.2], [-0.5, 0.6]]),
    "b2": np.array([0.0, 0.1]),
}
PARAMS = ["W1", "b1", "W2", "b2"]  # the order of model.get_weights()
TOL = 1e-9


def matrix_symbols(name: str, rows: int, cols: int) -> sp.Matrix:
    """A rows x cols Matrix of real symbols: W1_01 for a matrix entry, h_1 for a row vector's."""
    if rows == 1:
        return sp.Matrix(1, cols, lambda _, j: sp.Symbol(f"{name}_{j}", real=True))
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i}{j}", real=True))


def cross_entropy(z: sp.Matrix) -> sp.Matrix:
    return sp.Matrix([[-z[LABEL] + sp.log(sum(sp.exp(v) for v in z))]])


# The graph, in forward order: (output, formula of its inputs, inputs, the closed form of its
# backward rule, with g the gradient from the right).
NODES = [
    ("a1", lambda x, W1: x * W1, ["x", "W1"], "dL/dW1 = x^T g"),
    ("z1", lambda a1, b1: a1 + b1, ["a1", "b1"], "an addition passes g through unchanged"),
    ("h", lambda z1: z1.applyfunc(sp.tanh), ["z1"], "dL/dz1 = g * (1 - h^2)"),
    ("a2", lambda h, W2: h * W2, ["h", "W2"], "dL/dh = g W2^T, dL/dW2 = h^T g"),
    ("z2", lambda a2, b2: a2 + b2, ["a2", "b2"], "an addition passes g through unchanged"),
    ("L", cross_entropy, ["z2"], "dL/dz2 = softmax(z2) - onehot(y)"),
]


def fmt(a: np.ndarray) -> str:
    return np.array2string(np.asarray(a), precision=6, suppress_small=True, separator=", ").replace("\n", "")


def to_numpy(m: sp.Matrix, values: dict) -> np.ndarray:
    return np.array(m.subs(values).evalf(), dtype=np.float64)


def main() -> None:
    shapes = {"x": (1, 2), "W1": (2, 2), "b1": (1, 2), "a1": (1, 2), "z1": (1, 2), "h": (1, 2),
              "W2": (2, 2), "b2": (1, 2), "a2": (1, 2), "z2": (1, 2), "L": (1, 1)}
    sym = {name: matrix_symbols(name, *shape) for name, shape in shapes.items()}
    values = {}  # symbol -> number, filled in by the forward pass

    def assign(name: str, array: np.ndarray) -> None:
        values.update({s: float(v) for s, v in zip(sym[name], np.ravel(array))})

    # Forward pass: each node's value from its inputs' values. `whole` composes the formulas for the final check.
    assign("x", X)
    for name in PARAMS:
        assign(name, WEIGHTS[name])
    whole = {name: sym[name] for name in ["x", *PARAMS]}
    print("Forward pass (label y = 1)")
    print(f"  {'x':>2} = {fmt(X)}")
    for out, formula, inputs, _ in NODES:
        assign(out, to_numpy(formula(*[sym[i] for i in inputs]), values))
        whole[out] = formula(*[whole[i] for i in inputs])
        print(f"  {out:>2} = {fmt(to_numpy(sym[out], values))}")

    # Backward pass, right to left. grad[name] is dL/d(name), same shape as the node's value.
    grad = {"L": np.ones((1, 1))}
    print("\nBackward pass, right to left: dL/d(input) = dL/d(output) @ local Jacobian d(output)/d(input)")
    for out, formula, inputs, rule in reversed(NODES):
        local = formula(*[sym[i] for i in inputs])
        print(f"\nnode {out} = {sp.sstr(local[0] if local.shape == (1, 1) else list(local))}      [{rule}]")
        print(f"  gradient from the right  dL/d{out} = {fmt(grad[out])}")
        for inp in inputs:
            if inp == "x":  # nobody needs dL/dx: x is data, not a parameter
                continue
            jac = local.jacobian(list(sym[inp]))  # J[k, m] = d out_k / d inp_m, entries row-major
            jac_value = to_numpy(jac, values)
            grad[inp] = (grad[out].reshape(1, -1) @ jac_value).reshape(shapes[inp])
            columns = f"   (columns: {', '.join(map(str, sym[inp]))})" if sym[inp].rows > 1 else ""
            print(f"  local derivative  d{out}/d{inp} = {sp.sstr(jac.tolist())}{columns}")
            print(f"                    at this point = {fmt(jac_value)}")
            label = "parameter grad" if inp in PARAMS else "handed left"
            print(f"  {label:<17} dL/d{inp} = dL/d{out} @ d{out}/d{inp} = {fmt(grad[inp])}")

    loss = to_numpy(sym["L"], values)[0, 0]
    print(f"\nResult of the chain rule: L = {loss:.12f}")
    for name in PARAMS:
        print(f"  dL/d{name} = {fmt(grad[name])}")

    # Check 1: nnlib's own backward pass, on a float64 model with the same weights.
    model = nn.Sequential([nn.Dense(2, input_dim=2, activation="tanh"), nn.Dense(2)], seed=0, dtype="float64")
    model.compile(optimizer="sgd", loss="softmax_cross_entropy")
    model.set_weights([WEIGHTS[n] for n in PARAMS])  # nnlib layout: W (D_in, D_out), b (D_out,)
    nn_loss, nn_grads = model.loss_and_gradients(X, np.array([LABEL]))
    diff_nnlib = max(abs(nn_loss - loss), *(np.abs(g - grad[n].reshape(g.shape)).max()
                                            for n, g in zip(PARAMS, nn_grads)))

    # Check 2: sympy.diff of the whole formula L(x, W1, b1, W2, b2), with no chain rule by hand.
    diff_sympy = max(np.abs(to_numpy(whole["L"].jacobian(list(sym[n])), values).reshape(shapes[n]) - grad[n]).max()
                     for n in PARAMS)

    print("\nChecks (max |difference| over L and the four gradients):")
    print(f"  vs nnlib model.loss_and_gradients (float64): {diff_nnlib:.1e}")
    print(f"  vs sympy.diff of the whole formula:          {diff_sympy:.1e}")
    if max(diff_nnlib, diff_sympy) > TOL:
        print(f"MISMATCH: a difference exceeds {TOL:g}")
        sys.exit(1)
    print(f"OK: all agree to within {TOL:g}")


if __name__ == "__main__":
    main()
