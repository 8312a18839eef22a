"""Draw an exported ONNX graph: the reference CNN (or a saved model) as nnlib.onnx writes it.

Each box is one ONNX node with its main attributes and the shapes of its weights; each arrow is a
tensor with the shape the graph declares (N is the dynamic batch). onnx's own ``onnx.tools.net_drawer``
is gone from recent onnx releases, so this writes the Graphviz file itself, then runs Graphviz's ``dot``
(Debian: ``apt-get install graphviz``). Nothing is downloaded; untrained weights draw the same graph.

Run (needs onnx; onnxruntime too for the check against predict)::

    python examples/onnx_graph.py                      # docs/reference_cnn_onnx.png, the README's picture
    python examples/onnx_graph.py --model model.nnlib --out model.svg
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnx

import nnlib as nn

PICTURE = Path(__file__).resolve().parent.parent / "docs" / "reference_cnn_onnx.png"
# the reference CNN of benchmarks/bench_cnn.py and `nnlib train --arch cnn` (which adds a Reshape of the rows)
REFERENCE_CNN = [
    nn.Conv2D(32, 3, padding="same", activation="relu", input_shape=(28, 28, 1)), nn.MaxPooling2D(2),
    nn.Conv2D(64, 3, padding="same", activation="relu"), nn.MaxPooling2D(2),
    nn.Flatten(), nn.Dense(128, activation="relu"), nn.Dense(10),
]


def _shape(value: onnx.ValueInfoProto) -> str:
    dims = [d.dim_param or str(d.dim_value) for d in value.type.tensor_type.shape.dim]
    return " x ".join(dims)


SHOWN = ("kernel_shape", "strides", "dilations", "pads", "perm", "axes", "axis", "alpha", "epsilon",
         "count_include_pad", "to")
DEFAULTS = {"strides": 1, "dilations": 1, "pads": 0}  # left out when every entry is the default


def _label(node: onnx.NodeProto, weights: dict[str, tuple[int, ...]]) -> str:
    lines = [node.op_type]
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        if a.name not in SHOWN or (a.name in DEFAULTS and all(v == DEFAULTS[a.name] for v in value)):
            continue
        lines.append(f"{a.name} {value:g}" if isinstance(value, float) else f"{a.name} {value}")
    lines += [f"{name.rsplit('/', 1)[-1]} {shape}" for name, shape in weights.items()]
    return "\\n".join(lines)


def to_dot(proto: onnx.ModelProto) -> str:
    """The graph in Graphviz's language: nodes top to bottom, tensors as arrows labelled with their shapes
    (those nnlib declares, and onnx's shape inference for the tensors inside a layer)."""
    g = onnx.shape_inference.infer_shapes(proto).graph
    weights = {t.name: tuple(t.dims) for t in g.initializer}
    shapes = {v.name: _shape(v) for v in [*g.input, *g.value_info, *g.output]}
    lines = ["digraph onnx {", '  rankdir=TB; nodesep=0.3; ranksep=0.25;',
             '  node [shape=box, style="rounded,filled", fillcolor="#e8eef7", fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9, color="#555555"];']
    for v in g.input:
        lines.append(f'  "{v.name}" [shape=oval, fillcolor="#fdf2d0", label="{v.name}\\n{shapes[v.name]}"];')
    for v in g.output:
        lines.append(f'  "{v.name}" [shape=oval, fillcolor="#fdf2d0", label="{v.name}\\n{shapes[v.name]}"];')
    producer = {v.name: v.name for v in g.input}
    for i, node in enumerate(g.node):
        key = f"node{i}"
        lines.append(f'  {key} [label="{_label(node, {n: weights[n] for n in node.input if n in weights})}"];')
        for name in node.input:
            if name in producer:
                label = shapes.get(name, "")
                lines.append(f'  "{producer[name]}" -> {key} [label=" {label}"];')
        for name in node.output:
            producer[name] = key
    for v in g.output:
        lines.append(f'  {producer[v.name]} -> "{v.name}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a file written by model.save (default: the reference CNN, untrained)")
    parser.add_argument("--out", default=str(PICTURE),
                        help="the picture: .png or .svg (default: docs/reference_cnn_onnx.png)")
    args = parser.parse_args()
    if args.model:
        model = nn.load_model(args.model)
    else:
        model = nn.Sequential(REFERENCE_CNN, seed=0, name="reference_cnn")
        model.compile("adam", "softmax_cross_entropy")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        proto = model.export(onnx_path)
        print(nn.onnx.describe(proto))
        try:
            import onnxruntime
        except ImportError:
            print("(onnxruntime is not installed: no check against predict)")
        else:
            x = np.random.default_rng(0).uniform(0, 1, (64, *model.input_shape)).astype(np.float32)
            session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            diff = np.abs(session.run(None, {"input": x})[0] - model.predict(x)).max()
            print(f"ONNX Runtime against predict on 64 random inputs: max |difference| {diff:.1e}")
    out = Path(args.out)
    dot_path = out.with_suffix(".dot")
    dot_path.write_text(to_dot(proto))
    if shutil.which("dot") is None:
        print(f"wrote {dot_path}; Graphviz's dot is not installed (apt-get install graphviz) to draw it")
        return
    fmt = out.suffix.lstrip(".") or "png"
    subprocess.run(["dot", f"-T{fmt}", "-Gdpi=72", str(dot_path), "-o", str(out)], check=True)
    dot_path.unlink()
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} kB): {len(proto.graph.node)} nodes")


if __name__ == "__main__":
    main()
