"""Small hand-built ONNX graphs for testing the model-card builder (needs onnx, not scikit-learn).

Each function writes one model with `onnx.helper` to `path` and returns nothing. Every graph passes
`onnx.checker` (full check) and loads and runs in onnxruntime 1.31.1; whether the service can serve it
is the card builder's decision:

REFUSED (valid ONNX the builder must reject with a clear reason):
    two_unknown_outputs               x float [N,4] -> a float [N,1], b float [N,1] (which one is the score?)
    image_input                       image float [N,3,8,8] -> y float [N,1] (not a feature row)
    dynamic_feature_count             x float [N,"features"] -> y float [N,1] (width unknown)
    string_input                      x string [N,4] -> LabelEncoder -> y float [N,1]
    no_batch_3d_output                x float [N,4] -> y float [N,2,2]
    classifier_without_probabilities  x float [N,4] -> label int64 [N] only
    classifier_logits                 x float [N,4] -> scores float [N,3] (logits: no softmax)
ACCEPTED (unusual but servable):
    per_feature_inputs                f0..f3 float [N,1] -> Concat -> MatMul + bias -> variable float [N,1]
    int64_and_double_inputs           counts int64 [N,2], measures double [N,2] -> variable double [N,1]
    classifier_string_zipmap          x float [N,4] -> LinearClassifier(SOFTMAX, classlabels_strings) ->
                                      label string [N], output_probability seq(map(string, float))
    binary_classifier_int_zipmap      x float [N,4] -> LinearClassifier(LOGISTIC, classlabels_ints [0,1]) ->
                                      label int64 [N], output_probability seq(map(int64, float))

The batch dimension is the symbolic "N". Opsets: default domain 17, ai.onnx.ml 3; IR version 8 (as
inference-image/model/train.py). Weights are fixed numbers, so the files are byte-for-byte reproducible.

    python tests/support/onnx_graphs.py DIR   writes all of them into DIR and prints what onnxruntime
                                              reports for each (inputs, outputs, a batch of 3 rows)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
ML_OPSET = 3
IR_VERSION = 8
BATCH = "N"
WIDTH = 4

PathLike = str | os.PathLike


def _save(path: PathLike, name: str, nodes, inputs, outputs, initializers=(), ml: bool = False) -> None:
    graph = helper.make_graph(list(nodes), name, list(inputs), list(outputs), initializer=list(initializers))
    opsets = [helper.make_opsetid("", OPSET)]
    if ml:
        opsets.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="mlops-console tests/support/onnx_graphs.py")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    Path(path).write_bytes(model.SerializeToString())


def _tensor(name: str, elem_type: int, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, shape)


def _weights(name: str, rows: int, cols: int, dtype=np.float32, scale: float = 1.0) -> onnx.TensorProto:
    """Fixed, distinct small weights: scale * (0.1, 0.2, ...) (row-major), alternating sign by column."""
    w = scale * np.arange(1, rows * cols + 1, dtype=np.float64).reshape(rows, cols) / 10.0
    w[:, 1::2] *= -1.0
    return numpy_helper.from_array(w.astype(dtype), name)


def _zipmap_output(name: str, key_type: int) -> onnx.ValueInfoProto:
    """seq(map(key_type, tensor(float))), the type skl2onnx declares for ZipMap."""
    value = helper.make_tensor_type_proto(TensorProto.FLOAT, None)
    return helper.make_value_info(name, helper.make_sequence_type_proto(helper.make_map_type_proto(key_type, value)))


def _linear_classifier_attrs(n_classes: int) -> dict:
    coefficients = [((i % 5) + 1) / 10.0 * (1 if i % 2 == 0 else -1) for i in range(n_classes * WIDTH)]
    intercepts = [0.05 * (k + 1) for k in range(n_classes)]
    return {"coefficients": coefficients, "intercepts": intercepts, "multi_class": 0}


# ------------------------------------------------------------------------------------------------
# Refused
# ------------------------------------------------------------------------------------------------
def two_unknown_outputs(path: PathLike) -> None:
    """x float [N,4] -> a = x @ Wa [N,1], b = x @ Wb [N,1]: two outputs whose names say nothing."""
    _save(path, "two_unknown_outputs",
          [helper.make_node("MatMul", ["x", "Wa"], ["a"], name="matmul_a"),
           helper.make_node("MatMul", ["x", "Wb"], ["b"], name="matmul_b")],
          [_tensor("x", TensorProto.FLOAT, [BATCH, WIDTH])],
          [_tensor("a", TensorProto.FLOAT, [BATCH, 1]), _tensor("b", TensorProto.FLOAT, [BATCH, 1])],
          [_weights("Wa", WIDTH, 1), _weights("Wb", WIDTH, 1, scale=-2.0)])


def image_input(path: PathLike) -> None:
    """image float [N,3,8,8] -> ReduceMean over axes 1,2,3 (keepdims) [N,1,1,1] -> Flatten -> y [N,1]."""
    _save(path, "image_input",
          [helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=1, name="mean"),
           helper.make_node("Flatten", ["mean"], ["y"], axis=1, name="flatten")],
          [_tensor("image", TensorProto.FLOAT, [BATCH, 3, 8, 8])],
          [_tensor("y", TensorProto.FLOAT, [BATCH, 1])])


def dynamic_feature_count(path: PathLike) -> None:
    """x float [N,"features"] (symbolic width) -> ReduceSum over axis 1 (keepdims) -> y [N,1]."""
    _save(path, "dynamic_feature_count",
          [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1, name="sum")],
          [_tensor("x", TensorProto.FLOAT, [BATCH, "features"])],
          [_tensor("y", TensorProto.FLOAT, [BATCH, 1])],
          [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")])


def string_input(path: PathLike) -> None:
    """x string [N,4] -> LabelEncoder (ai.onnx.ml) "low"/"mid"/"high" -> 0/1/2 (else -1) -> ReduceSum -> y [N,1]."""
    _save(path, "string_input",
          [helper.make_node("LabelEncoder", ["x"], ["codes"], domain="ai.onnx.ml", name="encode",
                            keys_strings=["low", "mid", "high"], values_floats=[0.0, 1.0, 2.0],
                            default_float=-1.0),
           helper.make_node("ReduceSum", ["codes", "axes"], ["y"], keepdims=1, name="sum")],
          [_tensor("x", TensorProto.STRING, [BATCH, WIDTH])],
          [_tensor("y", TensorProto.FLOAT, [BATCH, 1])],
          [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
          ml=True)


def no_batch_3d_output(path: PathLike) -> None:
    """x float [N,4] -> Reshape to [-1,2,2] -> y float [N,2,2]."""
    _save(path, "no_batch_3d_output",
          [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")],
          [_tensor("x", TensorProto.FLOAT, [BATCH, WIDTH])],
          [_tensor("y", TensorProto.FLOAT, [BATCH, 2, 2])],
          [numpy_helper.from_array(np.array([-1, 2, 2], dtype=np.int64), "shape")])


def classifier_without_probabilities(path: PathLike) -> None:
    """x float [N,4] -> MatMul [4,3] -> ArgMax(axis 1, keepdims 0) -> label int64 [N]; no scores."""
    _save(path, "classifier_without_probabilities",
          [helper.make_node("MatMul", ["x", "W"], ["scores"], name="scores"),
           helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0, name="argmax")],
          [_tensor("x", TensorProto.FLOAT, [BATCH, WIDTH])],
          [_tensor("label", TensorProto.INT64, [BATCH])],
          [_weights("W", WIDTH, 3)])


def classifier_logits(path: PathLike) -> None:
    """x float [N,4] -> MatMul [4,3] (weights x 10) -> scores float [N,3]: logits, no softmax."""
    _save(path, "classifier_logits",
          [helper.make_node("MatMul", ["x", "W"], ["scores"], name="scores")],
          [_tensor("x", TensorProto.FLOAT, [BATCH, WIDTH])],
          [_tensor("scores", TensorProto.FLOAT, [BATCH, 3])],
          [_weights("W", WIDTH, 3, scale=10.0)])


# ------------------------------------------------------------------------------------------------
# Accepted
# ------------------------------------------------------------------------------------------------
def per_feature_inputs(path: PathLike) -> None:
    """f0..f3 float [N,1] -> Concat(axis 1) [N,4] -> MatMul [4,1] -> Add bias -> variable float [N,1]."""
    names = [f"f{i}" for i in range(WIDTH)]
    _save(path, "per_feature_inputs",
          [helper.make_node("Concat", names, ["features"], axis=1, name="concat"),
           helper.make_node("MatMul", ["features", "W"], ["dot"], name="matmul"),
           helper.make_node("Add", ["dot", "bias"], ["variable"], name="bias")],
          [_tensor(n, TensorProto.FLOAT, [BATCH, 1]) for n in names],
          [_tensor("variable", TensorProto.FLOAT, [BATCH, 1])],
          [_weights("W", WIDTH, 1), numpy_helper.from_array(np.array([0.5], dtype=np.float32), "bias")])


def int64_and_double_inputs(path: PathLike) -> None:
    """counts int64 [N,2], measures double [N,2] -> Cast both to double -> Concat [N,4] -> MatMul
    double [4,1] -> variable double [N,1]."""
    _save(path, "int64_and_double_inputs",
          [helper.make_node("Cast", ["counts"], ["counts_d"], to=TensorProto.DOUBLE, name="cast_counts"),
           helper.make_node("Cast", ["measures"], ["measures_d"], to=TensorProto.DOUBLE, name="cast_measures"),
           helper.make_node("Concat", ["counts_d", "measures_d"], ["features"], axis=1, name="concat"),
           helper.make_node("MatMul", ["features", "W"], ["variable"], name="matmul")],
          [_tensor("counts", TensorProto.INT64, [BATCH, 2]), _tensor("measures", TensorProto.DOUBLE, [BATCH, 2])],
          [_tensor("variable", TensorProto.DOUBLE, [BATCH, 1])],
          [_weights("W", WIDTH, 1, dtype=np.float64)])


def classifier_string_zipmap(path: PathLike) -> None:
    """x float [N,4] -> LinearClassifier (classlabels_strings setosa/versicolor/virginica, SOFTMAX)
    -> label string [N] and probabilities [N,3] -> ZipMap -> output_probability seq(map(string,float)).
    The layout skl2onnx emits for a LogisticRegression with string classes."""
    classes = ["setosa", "versicolor", "virginica"]
    _save(path, "classifier_string_zipmap",
          [helper.make_node("LinearClassifier", ["x"], ["label", "probabilities"], domain="ai.onnx.ml",
                            name="linear", classlabels_strings=classes, post_transform="SOFTMAX",
                            **_linear_classifier_attrs(len(classes))),
           helper.make_node("ZipMap", ["probabilities"], ["output_probability"], domain="ai.onnx.ml",
                            name="zipmap", classlabels_strings=classes)],
          [_tensor("x", TensorProto.FLOAT, [BATCH, WIDTH])],
          [_tensor("label", TensorProto.STRING, [BATCH]), _zipmap_output("output_probability", TensorProto.STRING)],
          ml=True)


def binary_classifier_int_zipmap(path: PathLike) -> None:
    """x float [N,4] -> LinearClassifier (classlabels_ints [0,1], one coefficient row, LOGISTIC)
    -> label int64 [N] and probabilities [N,2] -> ZipMap -> output_probability seq(map(int64,float))."""
    _save(path, "binary_classifier_int_zipmap",
          [helper.make_node("LinearClassifier", ["x"], ["label", "probabilities"], domain="ai.onnx.ml",
                            name="linear", classlabels_ints=[0, 1], post_transform="LOGISTIC",
                            **_linear_classifier_attrs(1)),
           helper.make_node("ZipMap", ["probabilities"], ["output_probability"], domain="ai.onnx.ml",
                            name="zipmap", classlabels_int64s=[0, 1])],
          [_tensor("x", TensorProto.FLOAT, [BATCH, WIDTH])],
          [_tensor("label", TensorProto.INT64, [BATCH]), _zipmap_output("output_probability", TensorProto.INT64)],
          ml=True)


REFUSED: dict[str, Callable[[PathLike], None]] = {
    f.__name__: f for f in (two_unknown_outputs, image_input, dynamic_feature_count, string_input,
                            no_batch_3d_output, classifier_without_probabilities, classifier_logits)
}
ACCEPTED: dict[str, Callable[[PathLike], None]] = {
    f.__name__: f for f in (per_feature_inputs, int64_and_double_inputs, classifier_string_zipmap,
                            binary_classifier_int_zipmap)
}
ALL: dict[str, Callable[[PathLike], None]] = {**REFUSED, **ACCEPTED}


def example_feed(session, batch: int = 3, width: int = WIDTH) -> dict[str, np.ndarray]:
    """A deterministic batch for every input of an onnxruntime session: symbolic first dimension ->
    `batch`, other symbolic dimensions -> `width`."""
    numpy_type = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}
    words = np.array(["low", "mid", "high", "other"], dtype=object)
    feed = {}
    for k, inp in enumerate(session.get_inputs()):
        shape = [d if isinstance(d, int) else (batch if i == 0 else width) for i, d in enumerate(inp.shape)]
        n = int(np.prod(shape))
        if inp.type == "tensor(string)":
            feed[inp.name] = words[(np.arange(n) + k) % len(words)].reshape(shape)
        else:
            values = (np.arange(n, dtype=np.float64) + k) / 4.0 - 1.0
            if inp.type == "tensor(int64)":
                values = np.arange(n) + k
            feed[inp.name] = values.reshape(shape).astype(numpy_type[inp.type])
    return feed


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {list(value.shape)} {value.tolist()}"
    if isinstance(value, list):
        return f"list[{len(value)}] of {type(value[0]).__name__}, first {value[0]}"
    return repr(value)


def main(argv: list[str]) -> int:
    import onnxruntime as ort

    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}")
    for name, build in ALL.items():
        path = out / f"{name}.onnx"
        build(path)
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        kind = "ACCEPT" if name in ACCEPTED else "REFUSE"
        print(f"\n[{kind}] {path.name} ({path.stat().st_size} B)")
        for i in sess.get_inputs():
            print(f"  input  {i.name}: {i.type} {i.shape}")
        for o in sess.get_outputs():
            print(f"  output {o.name}: {o.type} {o.shape}")
        if name in ACCEPTED:
            results = sess.run(None, example_feed(sess))
            for o, value in zip(sess.get_outputs(), results):
                print(f"  run    {o.name} = {_describe(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
