"""Wrote tests/data/legacy_v1_*.nnlib and their *_expected.npz with nnlib at commit df81fa2 (model file
format version 1, which stored Adam's rescaled moments M = m / (1 - beta1), V = v / (1 - beta2)). Kept to
show how the fixtures were made; run from the repository root with that commit checked out."""
import numpy as np

import nnlib as nn

rng = np.random.default_rng(7)
x = rng.normal(size=(24, 5)).astype(np.float32)
y = rng.integers(0, 3, size=24)
for name, opt in [("adam", nn.Adam(lr=0.01)), ("momentum", nn.Momentum(lr=0.05, momentum=0.9))]:
    model = nn.Sequential([nn.Dense(8, input_dim=5, activation="relu"), nn.BatchNormalization(), nn.Dropout(0.25),
                           nn.Dense(3)], seed=3)
    model.compile(optimizer=opt, loss="softmax_cross_entropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, tol=None)
    path = f"tests/data/legacy_v1_{name}.nnlib"
    model.save(path)
    state = model.optimizer.state
    arrays = {"x": x, "predict": model.predict(x)}
    for i, p in enumerate(model.parameters()):
        arrays[f"weight_{i}"] = p.value.copy()
        for slot, a in state[p].items():
            arrays[f"state_{i}_{slot}"] = a.copy()
    if name == "adam":
        for i, p in enumerate(model.parameters()):
            m, v = model.optimizer.moments(p)
            arrays[f"torch_{i}_m"], arrays[f"torch_{i}_v"] = m, v
    # one more epoch of the same model in memory: what a resumed run should reach
    model.fit(x, y, epochs=3, initial_epoch=2, batch_size=8, verbose=0, tol=None)
    arrays["weights_after_epoch_3"] = np.concatenate([w.ravel() for w in model.get_weights()])
    np.savez(f"tests/data/legacy_v1_{name}_expected.npz", **arrays)
    print(name, model.optimizer.iterations)
