"""TF-IDF + logistic regression as ensemble members (kinds ``tfidf_lr``: word 1-2 grams,
``tfidf_char``: character 2-5 grams, and ``tfidf_nb``: word 1-2 grams with NB-LR heads; manifest kind
``tfidf_lr`` for all): fitted by scikit-learn (training/baselines.py), served as one ONNX graph with
a string input, like the other members.

Graph: ``text`` (string [B, 1], whitespace folded: memotion.raw_text) -> the vectoriser
(training/tfidf_graph.py) -> per head ``x W^T + b`` -> logits
[B, classes] named by the head. Softmax of those logits is the regression's probabilities: for a
multinomial head they are its decision function; for a two-class head (scikit-learn's sigmoid of
one score z) they are [0, z], since softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]. A class the
training set lacked gets a logit of -1e4 (probability 0, as ``_full_probabilities``). An NB-LR head
(training/nb_lr.py) reads the n-grams' presence instead: logits log sigmoid(presence W + b).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from memotion.labels import ALL_TASKS, TASK_A
from memotion.raw_text import fold_whitespace, raw_text_feed
from training.baselines import NUM_CLASSES, TfidfConfig, TfidfModel, fit_tfidf_lr
from training.nb_lr import NbLrHead

if TYPE_CHECKING:
    from memotion.manifest import ModelEntry
    from training.factory import KindData, KindExport
    from training.trainer import TrainResult

INPUT = "text"
INPUTS = (INPUT,)
MODEL_FILE = "model.onnx"
FEATURES_FILE = "features.json"
ABSENT_LOGIT = -1e4
PARITY_TOLERANCE = 1e-4
OPSET = 17
IR_VERSION = 8  # what the ONNX Runtime in Triton's python backend reads
# The baseline's features (scikit-learn's default words of 2+ characters, 1 + log tf) with ASCII
# words, what ONNX Runtime's tokenizer (RE2) and Python's re split alike (training/tfidf_graph.py).
MEMBER_TFIDF = TfidfConfig(token_pattern=r"[a-zA-Z0-9_][a-zA-Z0-9_]+", sublinear_tf=True)
# Character 2-5 grams (spaces included) of the lower-cased text: spelling variants, romanised Hindi.
CHAR_TFIDF = TfidfConfig(analyzer="char", ngram_range=(2, 5), max_features=100_000, sublinear_tf=True)
# NB-LR (training/nb_lr.py) on the word member's n-grams: the offline recipe's Task A voter, so Task A
# is the only head it fits (the others are constant heads, voting nowhere: RecipeConfig.member_heads).
NB_TFIDF = replace(MEMBER_TFIDF, nb_heads=(TASK_A.name,), fit_heads=(TASK_A.name,))


def head_weights(model, num_classes: int, features: int) -> tuple[np.ndarray, np.ndarray]:
    """(W [features, classes], b [classes]) whose softmax(x W + b) is ``model``'s predict_proba
    (None: a constant head, ``model`` is then its class index)."""
    weight = np.zeros((features, num_classes), np.float32)
    bias = np.full(num_classes, ABSENT_LOGIT, np.float32)
    if isinstance(model, int):
        bias[model] = 0.0
        return weight, bias
    classes = np.asarray(model.classes_)
    if len(classes) == 2:  # sigmoid of one score: logits [0, z]
        bias[classes[0]] = 0.0
        weight[:, classes[1]] = model.coef_[0]
        bias[classes[1]] = model.intercept_[0]
    else:
        weight[:, classes] = model.coef_.T
        bias[classes] = model.intercept_
    return weight, bias


def tfidf_onnx(model: TfidfModel, path: Path, name: str = "tfidf_lr") -> Path:
    """The vectoriser (training/tfidf_graph.py) and every head's linear layer as one ONNX graph at ``path``."""
    import onnx
    from onnx import helper, numpy_helper

    from training.tfidf_graph import vectoriser_nodes

    nodes, initializers = vectoriser_nodes(model.vectoriser, INPUT, "features")
    features = len(model.vectoriser.vocabulary_)
    if any(isinstance(h, NbLrHead) for h in model.heads.values()):
        nodes, initializers = (
            nodes + presence_nodes(),
            [*initializers, numpy_helper.from_array(np.float32(0), "nb_zero")],
        )
    outputs = []
    for spec in ALL_TASKS:
        head = model.heads[spec.name]
        if isinstance(head, NbLrHead):
            head_nodes, head_initializers = nb_head_graph(spec.name, head, NUM_CLASSES[spec.name])
        else:
            head_nodes, head_initializers = linear_head_graph(
                spec.name,
                head_weights(
                    head if head is not None else model.chosen[spec.name]["constant"], NUM_CLASSES[spec.name], features
                ),
            )
        nodes, initializers = nodes + head_nodes, initializers + head_initializers
        outputs.append(helper.make_tensor_value_info(spec.name, onnx.TensorProto.FLOAT, [None, NUM_CLASSES[spec.name]]))
    text = helper.make_tensor_value_info(INPUT, onnx.TensorProto.STRING, [None, 1])
    graph_model = helper.make_model(
        helper.make_graph(nodes, name, [text], outputs, initializers),
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
        ir_version=IR_VERSION,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(path))
    return path


def linear_head_graph(name: str, weights: tuple[np.ndarray, np.ndarray]) -> tuple[list, list]:
    """logits ``name`` = features W + b."""
    from onnx import helper, numpy_helper

    weight, bias = weights
    initializers = [numpy_helper.from_array(weight, f"{name}_W"), numpy_helper.from_array(bias, f"{name}_b")]
    nodes = [
        helper.make_node("MatMul", ["features", f"{name}_W"], [f"{name}_xw"]),
        helper.make_node("Add", [f"{name}_xw", f"{name}_b"], [name]),
    ]
    return nodes, initializers


def presence_nodes() -> list:
    """``nb_present`` [B, features]: 1 where an n-gram occurs (its TF-IDF value is > 0), else 0."""
    from onnx import helper

    return [
        helper.make_node("Greater", ["features", "nb_zero"], ["nb_present_bool"]),
        helper.make_node("Cast", ["nb_present_bool"], ["nb_present"], to=1),
    ]


def nb_head_graph(name: str, head: NbLrHead, num_classes: int) -> tuple[list, list]:
    """logits ``name`` = log sigmoid(z) = -softplus(-z), z = presence W + b (training/nb_lr.py): their
    softmax is the normalised one-vs-rest sigmoids; classes the training set lacked get ABSENT_LOGIT
    added (``mask``)."""
    from onnx import helper, numpy_helper

    weight = np.zeros((head.weight.shape[0], num_classes), np.float32)
    bias = np.zeros(num_classes, np.float32)
    weight[:, head.classes_] = head.weight
    bias[head.classes_] = head.bias
    mask = np.full(num_classes, ABSENT_LOGIT, np.float32)
    mask[head.classes_] = 0.0
    initializers = [numpy_helper.from_array(a, f"{name}_{k}") for k, a in (("W", weight), ("b", bias), ("mask", mask))]
    nodes = [
        helper.make_node("MatMul", ["nb_present", f"{name}_W"], [f"{name}_xw"]),
        helper.make_node("Add", [f"{name}_xw", f"{name}_b"], [f"{name}_z"]),
        helper.make_node("Neg", [f"{name}_z"], [f"{name}_negz"]),
        helper.make_node("Softplus", [f"{name}_negz"], [f"{name}_sp"]),
        helper.make_node("Sub", [f"{name}_mask", f"{name}_sp"], [name]),
    ]
    return nodes, initializers


class OnnxTextMember:
    """Runs a ``tfidf_lr`` graph with ONNX Runtime: texts (fed as the gateway feeds them) -> probabilities per head."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def probabilities(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        names = [spec.name for spec in ALL_TASKS]
        feed = {INPUT: raw_text_feed(texts)}
        logits = self.session.run(names, feed)
        out = {}
        for name, value in zip(names, logits):
            z = np.asarray(value, np.float64)
            e = np.exp(z - z.max(axis=1, keepdims=True))
            out[name] = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return out


def parity_error(model: TfidfModel, path: Path, texts: Sequence[str]) -> float:
    """Largest |probability difference| between scikit-learn and the ONNX graph on ``texts``."""
    expected = model.probabilities(texts)
    got = OnnxTextMember(path).probabilities(texts)
    return max(float(np.abs(got[h] - expected[h]).max()) for h in expected)


def fit_tfidf_member(
    texts: dict[str, Sequence[str]],
    labels: dict[str, dict[str, np.ndarray]],
    out_dir: Path,
    config: TfidfConfig = MEMBER_TFIDF,
    log: Callable[[str], None] = print,
    name: str = "tfidf_lr",
) -> tuple[TfidfModel, dict[str, np.ndarray], float]:
    """Fit on the whitespace-folded texts (what the gateway feeds), export to ``out_dir/model.onnx``,
    check parity on the validation texts; returns the model, the ONNX graph's validation
    probabilities (what the served member says) and the seconds."""
    from training.export import ExportError

    started = time.perf_counter()
    texts = {split: [fold_whitespace(t) for t in rows] for split, rows in texts.items()}
    grid = len(config.c_grid) * len(config.class_weights)
    log(f"[{name}] fitting {describe(config)} on {len(texts['train'])} memes: {grid} regressions per head")
    model = fit_tfidf_lr(texts, labels, config)
    path = tfidf_onnx(model, out_dir / MODEL_FILE, name)
    error = parity_error(model, path, texts["val"])
    if error > PARITY_TOLERANCE:
        raise ExportError(f"{name}: ONNX Runtime differs from scikit-learn by {error:.2e} on validation")
    log(f"[{name}] {len(model.vectoriser.vocabulary_)} features, ONNX vs scikit-learn max |diff| {error:.1e}")
    (out_dir / FEATURES_FILE).write_text(json.dumps({"features": describe(config)}))
    return model, OnnxTextMember(path).probabilities(texts["val"]), time.perf_counter() - started


def describe(config: TfidfConfig) -> str:
    low, high = config.ngram_range
    grams = f"tf-idf {'character' if config.analyzer == 'char' else 'word'} {low}-{high} grams"
    grams = f"{grams}, NB-LR heads {', '.join(config.nb_heads)}" if config.nb_heads else grams
    return f"{grams}, fitting only {', '.join(config.fit_heads)}" if config.fit_heads is not None else grams


# Member kind -> (the RecipeConfig field holding its TfidfConfig, the default).
KIND_CONFIGS = {
    "tfidf_lr": ("tfidf", MEMBER_TFIDF),
    "tfidf_char": ("tfidf_char", CHAR_TFIDF),
    "tfidf_nb": ("tfidf_nb", NB_TFIDF),
}


def fit_kind(data: KindData, kind: str = "tfidf_lr") -> TrainResult:
    """``memotion train --models tfidf_lr`` (or ``tfidf_char``, ``tfidf_nb``): fit on the run's train
    split, choose on its val split."""
    import torch

    from training.metrics import memotion_scores
    from training.trainer import TrainResult

    field, default = KIND_CONFIGS[kind]
    texts = {split: [r.text for r in records] for split, records in data.records.items()}
    labels = {split: tensors.target_columns() for split, tensors in data.tensors.items()}
    config = getattr(data.recipe, field, None) or default
    model, val, seconds = fit_tfidf_member(texts, labels, data.out_dir, config, data.log, kind)
    scores = memotion_scores(labels["val"], {h: p.argmax(1) for h, p in val.items()})
    (data.out_dir / "chosen.json").write_text(json.dumps(model.chosen, indent=2))
    np.savez(data.out_dir / "val_probabilities.npz", **val)
    return TrainResult(torch.nn.Identity(), kind, 1, scores, [], val, seconds)


def export_kind(job: KindExport) -> ModelEntry:
    """Copy the fitted graph into the repository (its parity was checked when it was fitted)."""
    import shutil

    from memotion.manifest import ModelEntry

    model_file = f"{job.kind}/{job.version}/model.onnx"
    (job.repository / model_file).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(job.run_dir / job.kind / MODEL_FILE, job.repository / model_file)
    job.log(f"exported {job.kind} -> {model_file}")
    return ModelEntry(
        name=job.kind,
        kind="tfidf_lr",
        version=job.version,
        file=model_file,
        inputs=INPUTS,
        outputs=tuple(t.name for t in ALL_TASKS),
        validation=job.validation,
        backbone={"features": _features(job.run_dir / job.kind)},
    )


def _features(kind_dir: Path) -> str:
    path = kind_dir / FEATURES_FILE
    return json.loads(path.read_text())["features"] if path.is_file() else describe(MEMBER_TFIDF)
