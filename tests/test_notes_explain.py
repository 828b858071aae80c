"""SHAP attributions must find the decisive word: a model is trained in the test on notes where one planted
keyword decides the class, and the explanation must rank that keyword first."""

import re
from html import escape

import numpy as np
import pytest

from medcore.notes.explain import explain, render_html
from medcore.notes.model import load_notes_model
from medcore.notes.service import predict_note
from medcore.training.options import NotesTrainingOptions
from medcore.training.train_notes import train_notes
from tests.synthetic import KEYWORDS, keyword_notes, write_notes_csv


@pytest.fixture(scope="module", params=["linear", "mlp", "bigru", "transformer"])
def keyword_model(request, tmp_path_factory):
    """Every architecture must pass the same explanation tests."""
    root = tmp_path_factory.mktemp("notes")
    write_notes_csv(root / "train.csv", keyword_notes(300, seed=0))
    epochs = 30 if request.param in ("bigru", "transformer") else 12  # embeddings learned from scratch need more
    train_notes(root / "train.csv", root / "model",
                NotesTrainingOptions(arch=request.param, epochs=epochs, patience=epochs, hidden=32, max_features=2000,
                                     width=32), task="symptom2disease")
    return load_notes_model(root / "model")


def test_model_learned_the_keywords(keyword_model):
    rows = keyword_notes(60, seed=1)
    prob = keyword_model.predict_words([text.split() for _, text in rows])
    predicted = [keyword_model.labels[i] for i in prob.argmax(1)]
    assert np.mean([p == label for p, (label, _) in zip(predicted, rows)]) >= 0.95


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_planted_keyword_ranks_first_for_its_class(keyword_model, seed):
    label, text = keyword_notes(3, seed=seed, words=60)[seed % 3]
    prediction = predict_note(keyword_model, text)
    attribution = explain(keyword_model, prediction.note)
    class_index = keyword_model.labels.index(label)
    assert attribution.top(class_index, 1)[0][0] == KEYWORDS[label]
    assert attribution.values[:, class_index].max() > 0
    # the same word pushes the other classes down: each of them for the bag-of-n-grams models; in total for the
    # sequence models, whose interactions may let one other class gain a little while the keyword's class gains most
    position = [t.text for t in attribution.tokens].index(KEYWORDS[label])
    others = [attribution.values[position, i] for i in range(len(keyword_model.labels)) if i != class_index]
    if keyword_model.meta["options"]["arch"] in ("bigru", "transformer"):
        assert sum(others) < 0 and max(others) < attribution.values[position, class_index]
    else:
        assert all(value < 0 for value in others)


def test_attributions_add_up_to_the_prediction(keyword_model):
    """SHAP's efficiency property: base value + sum of word values = the note's log-odds, per class."""
    _, text = keyword_notes(1, seed=5, words=40)[0]
    prediction = predict_note(keyword_model, text)
    attribution = explain(keyword_model, prediction.note)
    p = np.clip(prediction.probabilities, 1e-7, 1 - 1e-7)
    assert np.allclose(attribution.full_values, np.log(p / (1 - p)), atol=1e-3)
    assert attribution.values.shape == (len(prediction.note.tokens), len(keyword_model.labels))


def test_explanation_is_deterministic(keyword_model):
    _, text = keyword_notes(1, seed=6, words=40)[0]
    note = predict_note(keyword_model, text).note
    assert np.array_equal(explain(keyword_model, note).values, explain(keyword_model, note).values)


def test_rendering_escapes_the_note(keyword_model):
    text = 'zorblax <script>alert("x")</script> <img src=x onerror=alert(1)> & "quotes"'
    prediction = predict_note(keyword_model, text)
    html = render_html(prediction.note, explain(keyword_model, prediction.note), 0)
    assert "<script" not in html and "<img" not in html
    assert html.count("<span") == len(prediction.note.tokens)
    visible = re.sub(r"</?span[^>]*>", "", html.removeprefix(html[:html.index(">") + 1]).removesuffix("</div>"))
    assert visible == escape(text)  # every character of the note, escaped, nothing else


def test_only_a_refitted_linear_model_reports_out_of_fold_figures(keyword_model):
    """The performance page says "out-of-fold" only when the model really was refitted on every note."""
    refitted = keyword_model.meta["options"]["arch"] == "linear" and keyword_model.meta["options"]["refit_all"]
    assert keyword_model.figures_are_out_of_fold == refitted
    stored = keyword_model.validation_predictions()
    assert len(stored["y_true"]) == keyword_model.meta["metrics"]["validation"]["n"]
