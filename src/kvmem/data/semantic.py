"""Word vectors for semantic similarity between studied words (free recall with semantics).

CMR's pre-experimental context-to-item associations can carry the semantic similarity of
the studied words (Polyn, Norman & Kahana 2009; :mod:`kvmem.paradigms.free_recall`). The
similarities here are cosines between GloVe word vectors (Pennington, Socher & Manning
2014, "GloVe: Global Vectors for Word Representation"; the 6B-token, 50-dimensional
vectors, released under the Open Data Commons Public Domain Dedication and License,
PDDL-1.0).

The package ships ``peers_glove50.safetensors``: the GloVe 6B 50-d vectors of the words
studied in the PEERS no-task free-recall data that psifr ships (every study item,
lower-cased; none is missing from the GloVe vocabulary). It was written by
:func:`build_vector_subset` from the full GloVe table; its metadata record the words, the
source, the licence and the words that could not be found.

Example:
    >>> words, vectors = load_word_vectors()
    >>> vectors.dtype, vectors.shape[1]
    (torch.float32, 50)
    >>> s = semantic_similarity(["cake", "pie", "kite"], words, vectors)
    >>> bool(s[0, 1] > s[0, 2])  # cake is closer to pie than to kite
    True
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "GLOVE_LICENCE",
    "GLOVE_SOURCE",
    "build_vector_subset",
    "load_word_vectors",
    "read_vector_file",
    "semantic_similarity",
]

GLOVE_SOURCE = ("GloVe 6B, 50 dimensions (Pennington, Socher & Manning 2014, 'GloVe: Global Vectors for Word "
                "Representation', EMNLP; https://nlp.stanford.edu/projects/glove/)")
GLOVE_LICENCE = "PDDL-1.0 (Open Data Commons Public Domain Dedication and License)"

_SHIPPED = {"peers_glove50": "peers_glove50.safetensors"}


def _word_list(words: Any, name: str) -> list[str]:
    if isinstance(words, (str, bytes)) or not isinstance(words, (Sequence, np.ndarray)):
        raise TypeError(f"{name}: expected a sequence of strings, got {type(words).__name__}")
    out = []
    for w in list(words):
        if not isinstance(w, str):
            raise TypeError(f"{name}: expected strings, got {w!r} ({type(w).__name__})")
        out.append(w)
    return out


def build_vector_subset(embedding_path: str | Path, index_path: str | Path, words: Sequence[str],
                        out_path: str | Path, *, source: str = GLOVE_SOURCE,
                        licence: str = GLOVE_LICENCE) -> dict[str, Any]:
    """Write the vectors of ``words`` from a GloVe-style table to a safetensors file.

    The table is a ``.npy`` matrix (row ``i`` = the vector of word ``i``) and a parquet file
    with one column ``index`` holding the words in row order. Words are lower-cased (the
    GloVe 6B vocabulary is lower case) and de-duplicated, keeping the first occurrence.
    A word that is not in the vocabulary is left out and listed under ``missing`` in the
    file's metadata; no attempt is made to split compounds or correct spellings, since
    choosing a split or a spelling would be a guess.

    Args:
        embedding_path: the ``.npy`` matrix ``[V, d]``.
        index_path: the parquet file with column ``index`` (``V`` words).
        words: the words wanted.
        out_path: the safetensors file to write (tensor ``vectors``, float32 ``[n, d]``).
        source, licence: recorded in the metadata.

    Returns:
        ``{"words": [...], "missing": [...], "dim": d}``.

    Raises:
        ValueError: a missing file, a table whose index and matrix disagree, no words, or
            no word found.
        TypeError: ``words`` is not a sequence of strings.

    Example:
        >>> import tempfile, pandas as pd, numpy as np
        >>> d = tempfile.mkdtemp()
        >>> np.save(f"{d}/e.npy", np.eye(3, dtype=np.float32))
        >>> pd.DataFrame({"index": ["a", "b", "c"]}).to_parquet(f"{d}/i.parquet")
        >>> build_vector_subset(f"{d}/e.npy", f"{d}/i.parquet", ["C", "a", "zz"], f"{d}/o.safetensors")
        {'words': ['c', 'a'], 'missing': ['zz'], 'dim': 3}
    """
    import pandas as pd
    from safetensors.torch import save_file

    wanted = _word_list(words, "words")
    if not wanted:
        raise ValueError("words: expected at least one word")
    for name, path in (("embedding_path", embedding_path), ("index_path", index_path)):
        if not Path(path).is_file():
            raise ValueError(f"{name}: no such file {str(path)!r}")
    index = pd.read_parquet(index_path)
    if "index" not in index.columns:
        raise ValueError(f"index_path: expected a parquet file with a column 'index', got columns {list(index.columns)}")
    # Memory-mapped: the full table need not be read for a few thousand rows.
    matrix = np.load(embedding_path, mmap_mode="r")
    if matrix.ndim != 2 or matrix.shape[0] != len(index):
        raise ValueError(f"embedding_path: expected a matrix with one row per word of index_path ({len(index)}), "
                         f"got shape {matrix.shape}")
    row_of: dict[str, int] = {}
    for i, w in enumerate(index["index"].tolist()):
        if isinstance(w, str):
            row_of.setdefault(w, i)
    seen: dict[str, None] = {}
    for w in wanted:
        seen.setdefault(w.lower(), None)
    found = [w for w in seen if w in row_of]
    missing = [w for w in seen if w not in row_of]
    if not found:
        raise ValueError(f"words: none of the {len(seen)} words is in the vocabulary of index_path")
    rows = np.asarray([row_of[w] for w in found])
    vectors = torch.from_numpy(np.ascontiguousarray(matrix[rows], dtype=np.float32))
    meta = {"words": json.dumps(found), "missing": json.dumps(missing), "source": source, "licence": licence,
            "dim": str(vectors.shape[1])}
    save_file({"vectors": vectors}, str(out_path), metadata=meta)
    return {"words": found, "missing": missing, "dim": int(vectors.shape[1])}


def read_vector_file(path: str | Path) -> tuple[list[str], torch.Tensor, dict[str, Any]]:
    """Words, vectors and metadata of a file written by :func:`build_vector_subset`
    (for a subset you built yourself; :func:`load_word_vectors` reads the shipped one).

    Args:
        path: the safetensors file.

    Returns:
        ``(words, vectors, metadata)``: the words in row order, the float32 vectors and the
        metadata (``words`` and ``missing`` as lists; ``source``, ``licence``, ``dim`` as text).

    Shapes:
        vectors: ``[len(words), d]``.

    Raises:
        ValueError: no such file, or not a file of that layout.

    Example:
        >>> import tempfile, pandas as pd, numpy as np
        >>> d = tempfile.mkdtemp()
        >>> np.save(f"{d}/e.npy", np.eye(2, dtype=np.float32))
        >>> pd.DataFrame({"index": ["a", "b"]}).to_parquet(f"{d}/i.parquet")
        >>> _ = build_vector_subset(f"{d}/e.npy", f"{d}/i.parquet", ["b", "q"], f"{d}/o.safetensors")
        >>> words, vectors, meta = read_vector_file(f"{d}/o.safetensors")
        >>> words, vectors.shape, meta["missing"]
        (['b'], torch.Size([1, 2]), ['q'])
    """
    from safetensors import safe_open

    if not Path(path).is_file():
        raise ValueError(f"path: no such file {str(path)!r}")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        if "vectors" not in f.keys() or "words" not in meta:
            raise ValueError(f"path: {str(path)!r} has no 'vectors' tensor or no 'words' metadata")
        vectors = f.get_tensor("vectors")
    words = json.loads(meta["words"])
    if len(words) != vectors.shape[0]:
        raise ValueError(f"path: {len(words)} words but {vectors.shape[0]} vectors")
    info = {k: (json.loads(v) if k in ("words", "missing") else v) for k, v in meta.items()}
    return words, vectors, info


def load_word_vectors(name: str = "peers_glove50") -> tuple[list[str], torch.Tensor]:
    """The word vectors shipped with the package.

    Args:
        name: ``"peers_glove50"``: GloVe 6B 50-d vectors of the PEERS study words.

    Returns:
        ``(words, vectors)``: lower-case words and float32 vectors ``[n, 50]``, row ``i``
        the vector of ``words[i]``.

    Raises:
        ValueError: an unknown name.

    Example:
        >>> words, vectors = load_word_vectors()
        >>> len(words) == vectors.shape[0], words[:2]
        (True, ['abdomen', 'acid'])
    """
    if not isinstance(name, str) or name not in _SHIPPED:
        raise ValueError(f"name: expected one of {sorted(_SHIPPED)}, got {name!r}")
    words, vectors, _ = read_vector_file(Path(__file__).with_name(_SHIPPED[name]))
    return words, vectors


def semantic_similarity(items: Any, words: Sequence[str], vectors: Any) -> torch.Tensor:
    """Cosine similarities between the word vectors of ``items``.

    Items are looked up lower-cased. An item without a vector (not in ``words``, or a
    zero vector) has similarity 0 to every other item, and 1 to itself: it then carries
    no semantic association, as in a localist model. The diagonal is exactly 1.

    Args:
        items: strings, a sequence ``[n]`` or an array ``[..., n]`` (e.g. ``[lists, L]``).
        words: the vocabulary, row ``i`` of ``vectors`` belonging to ``words[i]``.
        vectors: ``[V, d]`` word vectors (any float dtype).

    Shapes:
        Returns float64 ``[..., n, n]``.

    Raises:
        TypeError: non-string items or words.
        ValueError: ``vectors`` not ``[len(words), d]``, or no items.

    Example:
        >>> v = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
        >>> semantic_similarity(["A", "b", "zz"], ["a", "b"], v).numpy().round(4)
        array([[1.    , 0.7071, 0.    ],
               [0.7071, 1.    , 0.    ],
               [0.    , 0.    , 1.    ]])
    """
    vocab = _word_list(words, "words")
    v = vectors if isinstance(vectors, torch.Tensor) else torch.as_tensor(np.asarray(vectors))
    if v.ndim != 2 or v.shape[0] != len(vocab) or not v.dtype.is_floating_point:
        raise ValueError(f"vectors: expected a float matrix [len(words) = {len(vocab)}, d], got {tuple(v.shape)} {v.dtype}")
    arr = np.asarray(items, dtype=object)
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise ValueError(f"items: expected a non-empty sequence or array of strings, got shape {arr.shape}")
    flat = arr.reshape(-1)
    if not all(isinstance(w, str) for w in flat):
        raise TypeError("items: expected strings")
    row_of: dict[str, int] = {}
    for i, w in enumerate(vocab):
        row_of.setdefault(w.lower(), i)
    v64 = v.detach().to(dtype=torch.float64, device="cpu")
    norm = v64.norm(dim=-1, keepdim=True)
    unit = torch.where(norm > 0, v64 / norm.clamp_min(1e-300), 0.0)
    # Row len(vocab) is a zero vector for the items without one.
    unit = torch.cat([unit, torch.zeros(1, unit.shape[1], dtype=torch.float64)])
    idx = torch.tensor([row_of.get(w.lower(), len(vocab)) for w in flat], dtype=torch.long)
    u = unit[idx].reshape(*arr.shape, unit.shape[1])
    sim = u @ u.transpose(-1, -2)
    n = arr.shape[-1]
    eye = torch.eye(n, dtype=torch.bool)
    return sim.masked_fill(eye, 1.0)
