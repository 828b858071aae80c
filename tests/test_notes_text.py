"""Bad notes get clear messages; the featurizer's masked path equals vectorising the edited note."""

import numpy as np
import pytest

from medcore.notes.features import Featurizer
from medcore.notes.text import MAX_CHARS, NoteRejected, decode_upload, prepare


@pytest.mark.parametrize("text, message", [("", "empty"), ("   \n\t ", "empty"), ("... !!! ---", "no words"),
                                           ("\x00\x01\x02\x03" * 50 + "word", "binary")])
def test_unusable_notes_are_rejected_with_a_reason(text, message):
    with pytest.raises(NoteRejected, match=message):
        prepare(text)


def test_very_long_note_is_cut_with_a_warning():
    note = prepare("fever and cough " * 7000)  # 112,000 characters
    assert len(note.text) == MAX_CHARS and "only the first" in note.warnings[0]


def test_non_english_note_gets_a_warning_not_a_crash():
    note = prepare("Пациент жалуется на кашель и высокую температуру в течение трёх дней")
    assert note.tokens and any("not in English" in w for w in note.warnings)


def test_tokens_keep_offsets_into_the_text():
    note = prepare("High fever, chills; patient's <b>cough</b>.")
    assert [t.text for t in note.tokens] == ["high", "fever", "chills", "patient's", "b", "cough", "b"]
    assert all(note.text[t.start:t.end].lower() == t.text for t in note.tokens)


def test_uploads_are_decoded_or_refused():
    assert decode_upload("fièvre".encode("utf-8")) == "fièvre"
    assert decode_upload("fièvre".encode("cp1252")) == "fièvre"
    assert decode_upload("\ufefffever".encode("utf-16")) == "\ufefffever".encode("utf-16").decode("utf-16")
    with pytest.raises(NoteRejected, match="binary"):
        decode_upload(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(NoteRejected, match="MB"):
        decode_upload(b"a" * 2_000_000)


def test_masked_features_equal_the_edited_note():
    documents = [["high", "fever", "and", "dry", "cough"], ["dry", "cough", "at", "night"], ["high", "fever"]]
    featurizer = Featurizer.fit(documents, min_df=1)
    words = ["high", "fever", "and", "dry", "cough"]
    design = featurizer.design(words)
    full = featurizer.masked(design, np.ones((1, 5)))
    assert np.allclose(full.toarray(), featurizer.transform([words]).toarray())
    # Removing "and" without joining neighbours == replacing it by an unknown word.
    removed = featurizer.masked(design, np.array([[1, 1, 0, 1, 1]]))
    replaced = featurizer.transform([["high", "fever", "qqqqqqq", "dry", "cough"]])
    assert np.allclose(removed.toarray(), replaced.toarray(), atol=1e-6)
    row = removed.toarray()[0]
    assert row[featurizer.index["w:and"]] == 0 and row[featurizer.index["b:dry cough"]] > 0
    assert np.isclose(np.linalg.norm(row), 1.0)
    assert featurizer.masked(design, np.zeros((1, 5))).nnz == 0
