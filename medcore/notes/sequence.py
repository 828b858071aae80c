"""Word-sequence models of case notes, trained from scratch: a bidirectional GRU and a small Transformer encoder.

Pretrained weights cannot be downloaded here, so both learn their word embeddings from the training notes.
`WordIndex` plays the part that `notes.features.Featurizer` plays for the bag-of-n-grams models: a note's words
become ids once (`design`), and any set of removed words is a cheap array edit (`masked`), so explanations run
on the same path as prediction. A removed word becomes the [MASK] id, as in shap's Text masker for
transformers; training replaces a share of words by [MASK] too (word dropout), so the networks know it.

The Transformer pools adjacent word pairs before attention (as Funnel-Transformer does): attention costs the
square of the length, and the 1,000 masked copies of a 250-word note that SHAP needs must stay well under a
second on two CPU cores.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import keras
import numpy as np
from keras import ops

PAD, OOV, MASK = 0, 1, 2
RESERVED = 3
MAX_WORDS = 512  # words beyond these are not read by the sequence models
LENGTH_STEP = 32  # batches are padded to a multiple of this, so few shapes are traced


@dataclass
class WordIndex:
    """Words -> ids (0 padding, 1 unknown, 2 [MASK], then the vocabulary)."""

    vocabulary: list[str]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {word: i + RESERVED for i, word in enumerate(self.vocabulary)}

    @property
    def size(self) -> int:
        return len(self.vocabulary) + RESERVED

    @classmethod
    def fit(cls, documents: list[list[str]], max_words: int = 20_000, min_df: int = 2) -> "WordIndex":
        """Keep the max_words words found in most training notes (at least min_df)."""
        df = Counter()
        for words in documents:
            df.update(set(words))
        kept = sorted((w for w, count in df.items() if count >= min_df), key=lambda w: (-df[w], w))
        return cls(sorted(kept[:max_words]))

    def design(self, words: list[str]) -> np.ndarray:
        return np.array([self.index.get(w, OOV) for w in words[:MAX_WORDS]], dtype=np.int32)

    def masked(self, design: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """The note's ids with the words where masks == 0 replaced by [MASK], one row per mask."""
        masks = np.asarray(masks)[:, :len(design)]
        return np.where(masks > 0, design[None, :], MASK).astype(np.int32)

    def transform(self, documents: list[list[str]]) -> np.ndarray:
        return pad([self.design(words) for words in documents])


def pad(sequences: list[np.ndarray]) -> np.ndarray:
    """Right-padded with PAD to the longest, rounded up to LENGTH_STEP (at least one step)."""
    longest = max((len(s) for s in sequences), default=0)
    width = max(LENGTH_STEP, -(-longest // LENGTH_STEP) * LENGTH_STEP)
    out = np.full((len(sequences), width), PAD, dtype=np.int32)
    for row, sequence in zip(out, sequences):
        row[:len(sequence)] = sequence
    return out


def word_dropout(ids: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Replace a share of the (non-padding) words by [MASK]: the networks learn what a removed word looks like."""
    dropped = (rng.random(ids.shape) < rate) & (ids != PAD)
    return np.where(dropped, MASK, ids).astype(np.int32)


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Notes of similar length batched together (less padding), batches in random order."""
    order = np.argsort(lengths + rng.random(len(lengths)) * 8, kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


@keras.saving.register_keras_serializable(package="medcore")
class WordAndPositionEmbedding(keras.layers.Layer):
    """A word's embedding plus its position's (keras-io's TokenAndPositionEmbedding); padding is zeroed."""

    def __init__(self, vocab_size: int, width: int, max_len: int = MAX_WORDS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.vocab_size, self.width, self.max_len = vocab_size, width, max_len
        self.words = keras.layers.Embedding(vocab_size, width)
        self.positions = keras.layers.Embedding(max_len, width)

    def build(self, ids_shape) -> None:
        self.words.build(ids_shape)
        self.positions.build((None,))

    def call(self, ids):
        positions = ops.arange(ops.shape(ids)[-1])
        keep = ops.expand_dims(ops.cast(ops.not_equal(ids, PAD), self.compute_dtype), -1)
        return (self.words(ids) + self.positions(positions)) * keep

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab_size": self.vocab_size, "width": self.width, "max_len": self.max_len}


@keras.saving.register_keras_serializable(package="medcore")
class PairPoolingEncoder(keras.layers.Layer):
    """Adjacent word pairs averaged, then one Transformer encoder block, then a mean over the real positions."""

    def __init__(self, width: int, heads: int = 1, dropout: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.width, self.heads, self.dropout_rate = width, heads, dropout
        self.attention = keras.layers.MultiHeadAttention(heads, width // heads, dropout=dropout)
        self.feed_forward = keras.Sequential([keras.layers.Dense(2 * width, activation="relu"),
                                              keras.layers.Dense(width)])
        self.norm1, self.norm2 = keras.layers.LayerNormalization(), keras.layers.LayerNormalization()
        self.dropout = keras.layers.Dropout(dropout)

    def build(self, embedded_shape, ids_shape=None) -> None:
        shape = (embedded_shape[0], None, self.width)
        self.attention.build(shape, shape)
        self.feed_forward.build(shape)
        self.norm1.build(shape)
        self.norm2.build(shape)

    def compute_output_shape(self, embedded_shape, ids_shape=None) -> tuple:
        return (embedded_shape[0], self.width)

    def call(self, embedded, ids, training=None):
        keep = ops.cast(ops.not_equal(ids, PAD), embedded.dtype)
        even = (ops.shape(ids)[-1] + 1) // 2 * 2  # an odd length gets one more padding position to make pairs
        embedded = ops.pad(embedded, [[0, 0], [0, 1], [0, 0]])[:, :even]
        keep = ops.pad(keep, [[0, 0], [0, 1]])[:, :even]
        pairs = ops.reshape(embedded, (ops.shape(embedded)[0], -1, 2, self.width))
        pair_keep = ops.reshape(keep, (ops.shape(keep)[0], -1, 2))
        counts = ops.sum(pair_keep, axis=-1)
        x = ops.sum(pairs, axis=2) / ops.expand_dims(ops.maximum(counts, 1.0), -1)
        present = ops.cast(counts > 0, x.dtype)
        attention_mask = ops.cast(ops.expand_dims(present, 1) * ops.expand_dims(present, 2), "bool")
        x = self.norm1(x + self.dropout(self.attention(x, x, attention_mask=attention_mask, training=training),
                                        training=training))
        x = self.norm2(x + self.dropout(self.feed_forward(x), training=training))
        weights = ops.expand_dims(present, -1)
        return ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "width": self.width, "heads": self.heads, "dropout": self.dropout_rate}


def build_bigru_network(vocab_size: int, n_classes: int, width: int = 64, dropout: float = 0.3) -> keras.Model:
    """Embedding -> bidirectional GRU over the words -> mean over the real words -> logits."""
    ids = keras.Input((None,), dtype="int32", name="word_ids")
    x = keras.layers.Embedding(vocab_size, width, mask_zero=True, name="embedding")(ids)
    x = keras.layers.Dropout(dropout, noise_shape=(None, 1, width), name="embedding_dropout")(x)
    x = keras.layers.Bidirectional(keras.layers.GRU(width // 2, return_sequences=True), name="bigru")(x)
    x = keras.layers.GlobalAveragePooling1D(name="mean_over_words")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(n_classes, name="logits", dtype="float32")(x)
    return keras.Model(ids, logits, name="medcore_notes_bigru")


def build_transformer_network(vocab_size: int, n_classes: int, width: int = 64, dropout: float = 0.3,
                              heads: int = 1) -> keras.Model:
    """Word + position embeddings -> pair pooling -> one Transformer encoder block -> mean -> logits."""
    ids = keras.Input((None,), dtype="int32", name="word_ids")
    x = WordAndPositionEmbedding(vocab_size, width, name="embedding")(ids)
    x = keras.layers.Dropout(dropout, noise_shape=(None, 1, width), name="embedding_dropout")(x)
    x = PairPoolingEncoder(width, heads, dropout=0.1, name="encoder")(x, ids)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(n_classes, name="logits", dtype="float32")(x)
    return keras.Model(ids, logits, name="medcore_notes_transformer")


SEQUENCE_NETWORKS = {"bigru": build_bigru_network, "transformer": build_transformer_network}
