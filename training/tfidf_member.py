"""TF-IDF + logistic regression as an ensemble member (kind ``tfidf_lr``): fitted by scikit-learn
(training/baselines.py), served as one ONNX graph with a string input, like the other members.

Graph: ``text`` (string [B, 1]) -> skl2onnx's TfidfVectorizer -> per head ``x W^T + b`` -> logits
[B, classes] named by the head. Softmax of those logits is the regression's probabilities: for a
multinomial head they are its decision function; for a two-class head (scikit-learn's sigmoid of
one score z) they are [0, z], since softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]. A class the
training set lacked gets a logit of -1e4 (probability 0, as ``_full_probabilities``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from memotion.labels import ALL_TASKS
from training.baselines import NUM_CLASSES, TfidfConfig, TfidfModel, fit_tfidf_lr

if TYPE_CHECKING:
    from memotion.manifest import ModelEntry
    from training.factory import KindData, KindExport
    from training.trainer import TrainResult

INPUT = "text"
INPUTS = (INPUT,)
MODEL_FILE = "model.onnx"
ABSENT_LOGIT = -1e4
PARITY_TOLERANCE = 1e-4
LOCALE = "C.UTF-8"
# What ONNX Runtime's tokenizer (RE2, ASCII \w) and scikit-learn (Python re) split alike: ASCII
# words of any length (the default drops 1-letter words, which ORT then bigrams across), raw term
# counts (skl2onnx does not reproduce sublinear_tf). Checked: identical features on real memes.
MEMBER_TFIDF = TfidfConfig(token_pattern=r"[a-zA-Z0-9_]+", sublinear_tf=False)


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


def tfidf_onnx(model: TfidfModel, path: Path) -> Path:
    """The vectoriser (skl2onnx) and every head's linear layer as one ONNX graph at ``path``."""
    import onnx
    from onnx import helper, numpy_helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType

    graph_model = convert_sklearn(
        model.vectoriser, initial_types=[(INPUT, StringTensorType([None, 1]))], target_opset=17
    )
    graph = graph_model.graph
    _portable_locale(graph)
    features_name = graph.output[0].name
    features = len(model.vectoriser.vocabulary_)
    del graph.output[:]
    for spec in ALL_TASKS:
        head = model.heads[spec.name]
        weight, bias = head_weights(
            head if head is not None else model.chosen[spec.name]["constant"], NUM_CLASSES[spec.name], features
        )
        graph.initializer.extend(
            [numpy_helper.from_array(weight, f"{spec.name}_W"), numpy_helper.from_array(bias, f"{spec.name}_b")]
        )
        graph.node.extend(
            [
                helper.make_node("MatMul", [features_name, f"{spec.name}_W"], [f"{spec.name}_xw"]),
                helper.make_node("Add", [f"{spec.name}_xw", f"{spec.name}_b"], [spec.name]),
            ]
        )
        graph.output.append(
            helper.make_tensor_value_info(spec.name, onnx.TensorProto.FLOAT, [None, NUM_CLASSES[spec.name]])
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(path))
    return path


def _portable_locale(graph) -> None:
    """skl2onnx's StringNormalizer (lower-casing) asks for the en_US.UTF-8 locale, which a slim
    machine (a container, Triton's) may lack; C.UTF-8 is always there and lower-cases Unicode too."""
    from onnx import helper

    for node in graph.node:
        if node.op_type == "StringNormalizer":
            kept = [a for a in node.attribute if a.name != "locale"]
            del node.attribute[:]
            node.attribute.extend([*kept, helper.make_attribute("locale", LOCALE)])


class OnnxTextMember:
    """Runs a ``tfidf_lr`` graph with ONNX Runtime: texts -> probabilities per head."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def probabilities(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        names = [spec.name for spec in ALL_TASKS]
        feed = {INPUT: np.array(list(texts), dtype=object).reshape(-1, 1)}
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
) -> tuple[TfidfModel, dict[str, np.ndarray], float]:
    """Fit, export to ``out_dir/model.onnx``, check parity on the validation texts; returns the
    model, the ONNX graph's validation probabilities (what the served member says) and the seconds."""
    from training.export import ExportError

    started = time.perf_counter()
    model = fit_tfidf_lr(texts, labels, config)
    path = tfidf_onnx(model, out_dir / MODEL_FILE)
    error = parity_error(model, path, texts["val"])
    if error > PARITY_TOLERANCE:
        raise ExportError(f"tfidf_lr: ONNX Runtime differs from scikit-learn by {error:.2e} on validation")
    log(f"[tfidf_lr] {len(model.vectoriser.vocabulary_)} features, ONNX vs scikit-learn max |diff| {error:.1e}")
    return model, OnnxTextMember(path).probabilities(texts["val"]), time.perf_counter() - started


def fit_kind(data: KindData) -> TrainResult:
    """``memotion train --models tfidf_lr``: fit on the run's train split, choose on its val split."""
    import torch

    from training.metrics import memotion_scores
    from training.trainer import TrainResult

    texts = {split: [r.text for r in records] for split, records in data.records.items()}
    labels = {split: tensors.target_columns() for split, tensors in data.tensors.items()}
    config = getattr(data.recipe, "tfidf", None) or MEMBER_TFIDF
    model, val, seconds = fit_tfidf_member(texts, labels, data.out_dir, config, data.log)
    scores = memotion_scores(labels["val"], {h: p.argmax(1) for h, p in val.items()})
    (data.out_dir / "chosen.json").write_text(json.dumps(model.chosen, indent=2))
    np.savez(data.out_dir / "val_probabilities.npz", **val)
    return TrainResult(torch.nn.Identity(), "tfidf_lr", 1, scores, [], val, seconds)


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
        backbone={"features": "tf-idf word 1-2 grams"},
    )
