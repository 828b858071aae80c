"""TF-IDF features of word unigrams, word bigrams and character 3-5-grams, built from word positions.

Why not sklearn's TfidfVectorizer: explanations need the features of the note with any set of
words removed. Here every word contributes a fixed sparse count vector (its unigram and its
character n-grams) and every adjacent pair a bigram that counts only when both words are kept, so
the counts of thousands of masked variants are two sparse products, not thousands of re-tokenised
strings. Prediction and explanation share this one code path: an all-ones mask is the note itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

CHAR_NGRAMS = (3, 5)


def word_feature_names(word: str) -> list[str]:
    padded = f"<{word}>"
    grams = [padded[i:i + n] for n in range(CHAR_NGRAMS[0], CHAR_NGRAMS[1] + 1)
             for i in range(len(padded) - n + 1)]
    return [f"w:{word}"] + [f"c:{g}" for g in grams]


def document_feature_names(words: list[str]) -> list[str]:
    names = [name for word in words for name in word_feature_names(word)]
    return names + [f"b:{a} {b}" for a, b in zip(words, words[1:])]


@dataclass
class Design:
    """A note's words as sparse rows: U (words x features), B (adjacent pairs x features)."""

    unigrams: sparse.csr_matrix
    bigrams: sparse.csr_matrix

    @property
    def n_words(self) -> int:
        return self.unigrams.shape[0]


@dataclass
class Featurizer:
    vocabulary: list[str]
    idf: np.ndarray
    index: dict[str, int] = field(init=False, repr=False)
    _word_cache: dict[str, list[int]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {name: i for i, name in enumerate(self.vocabulary)}
        self.idf = np.asarray(self.idf, dtype=np.float32)

    @property
    def size(self) -> int:
        return len(self.vocabulary)

    @classmethod
    def fit(cls, documents: list[list[str]], max_features: int = 20_000, min_df: int = 2) -> "Featurizer":
        """Keep the max_features features found in most training documents (at least min_df)."""
        df = Counter()
        for words in documents:
            df.update(set(document_feature_names(words)))
        kept = sorted((name for name, count in df.items() if count >= min_df), key=lambda n: (-df[n], n))
        kept = sorted(kept[:max_features])
        n_docs = len(documents)
        idf = np.array([np.log((1 + n_docs) / (1 + df[name])) + 1.0 for name in kept])
        return cls(kept, idf)

    def _word_indices(self, word: str) -> list[int]:
        cached = self._word_cache.get(word)
        if cached is None:
            cached = [self.index[n] for n in word_feature_names(word) if n in self.index]
            if len(self._word_cache) < 200_000:
                self._word_cache[word] = cached
        return cached

    def design(self, words: list[str]) -> Design:
        rows = [self._word_indices(w) for w in words]
        unigrams = _rows_to_csr(rows, self.size)
        pairs = [[self.index[f"b:{a} {b}"]] if f"b:{a} {b}" in self.index else [] for a, b in zip(words, words[1:])]
        return Design(unigrams, _rows_to_csr(pairs, self.size))

    def weigh(self, counts: sparse.csr_matrix) -> sparse.csr_matrix:
        """Counts -> sublinear TF x IDF, each row L2-normalised (as TfidfVectorizer(sublinear_tf=True))."""
        weighted = counts.tocsr(copy=True).astype(np.float32)
        weighted.data = (1.0 + np.log(weighted.data)) * self.idf[weighted.indices]
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sparse.diags(1.0 / norms).dot(weighted).tocsr()

    def masked(self, design: Design, masks: np.ndarray) -> sparse.csr_matrix:
        """Features of the note with the words where masks == 0 removed (neighbours are not joined)."""
        masks = sparse.csr_matrix(np.asarray(masks, dtype=np.float32))
        counts = masks @ design.unigrams
        if design.n_words > 1:
            pair_masks = masks[:, :-1].multiply(masks[:, 1:]).tocsr()
            counts = counts + pair_masks @ design.bigrams
        counts.eliminate_zeros()
        return self.weigh(counts)

    def transform(self, documents: list[list[str]]) -> sparse.csr_matrix:
        """Features of whole notes (an all-ones mask for each)."""
        rows = [self.masked(self.design(words), np.ones((1, len(words)))) if words else
                sparse.csr_matrix((1, self.size), dtype=np.float32) for words in documents]
        return sparse.vstack(rows).tocsr()


def _rows_to_csr(rows: list[list[int]], width: int) -> sparse.csr_matrix:
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(indptr[-1]))
    data = np.ones(len(indices), dtype=np.float32)
    matrix = sparse.csr_matrix((data, indices, indptr), shape=(len(rows), width))
    matrix.sum_duplicates()  # a word whose n-grams repeat counts them twice, as a vectoriser would
    return matrix
