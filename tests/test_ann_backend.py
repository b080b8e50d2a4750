"""The faiss top-k backend (kvmem.memory.ann) and SlotMemory(index=...) on small data.

References: a full float64 sort of all scores (the top-k separation's own rule) for the
exact search; the flat (exact) faiss index must give identical top-k; IVF and HNSW must
reach a stated recall@k against exact search; same seed, same index results.
"""

from __future__ import annotations

import copy
import pickle
import sys

import pytest
import torch

import kvmem
from kvmem.memory import ann

faiss = pytest.importorskip("faiss")
pytestmark = pytest.mark.usefixtures("one_thread")

K = 10


def clustered(n=2000, d=32, m=100, clusters=20, seed=0, dtype=torch.float32):
    """Unit keys around cluster centres and noisy cues of stored keys."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=gen, dtype=dtype)
    keys = centres[torch.randint(clusters, (n,), generator=gen)] + 0.5 * torch.randn(n, d, generator=gen, dtype=dtype)
    keys = keys / keys.norm(dim=-1, keepdim=True)
    q = keys[torch.randint(n, (m,), generator=gen)] + 0.1 * torch.randn(m, d, generator=gen, dtype=dtype)
    return keys, q / q.norm(dim=-1, keepdim=True)


def full_sort_topk(queries, keys, k, sim):
    scores = kvmem.similarity.get(sim)(queries.double(), keys.double())
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[:, :k]
    return scores.gather(-1, order), order


@pytest.mark.parametrize("sim", ["dot", "scaled_dot", "cosine", "neg_euclidean", "rbf"])
def test_exact_topk_in_blocks_equals_a_full_sort(sim):
    gen = torch.Generator().manual_seed(1)
    keys, q = torch.randn(2000, 16, generator=gen, dtype=torch.float64), torch.randn(40, 16, generator=gen,
                                                                                   dtype=torch.float64)
    scores, idx = ann.exact_topk(q, keys, K, similarity=sim, block_size=300)
    ref_s, ref_i = full_sort_topk(q, keys, K, sim)
    assert torch.equal(idx, ref_i)
    torch.testing.assert_close(scores, ref_s, rtol=1e-12, atol=0)
    assert ann.exact_topk(q, keys[:4], K, similarity=sim)[1].shape == (40, 4)  # k > N: all N keys


@pytest.mark.parametrize("sim", ["dot", "cosine", "neg_euclidean", "rbf"])
def test_flat_index_gives_identical_top_k_to_brute_force(sim):
    gen = torch.Generator().manual_seed(2)
    keys, q = torch.randn(2000, 16, generator=gen), torch.randn(50, 16, generator=gen)
    scores, idx = ann.KeyIndex(keys, similarity=sim, index="flat").search(q, K)
    ref_s, ref_i = full_sort_topk(q, keys, K, sim)
    assert torch.equal(idx, ref_i)
    torch.testing.assert_close(scores.double(), ref_s, rtol=1e-5, atol=1e-5)


def test_hamming_codes_map_to_the_right_metric():
    gen = torch.Generator().manual_seed(3)
    for code in ("bipolar", "binary"):
        bits = torch.randint(0, 2, (600, 48), generator=gen).float()
        keys = bits * 2 - 1 if code == "bipolar" else bits
        q = keys[:20].clone()
        sim = {"name": "hamming", "code": code}
        scores, _ = ann.KeyIndex(keys, similarity=sim, index="flat").search(q, 5)
        ref_s, _ = full_sort_topk(q, keys, 5, sim)
        # Hamming distances tie a lot, so compare the scores of the k best (which key wins a
        # tie may differ), and each query finds itself at distance 0.
        torch.testing.assert_close(scores.double(), ref_s)
        assert (scores[:, 0] == 0).all()


@pytest.mark.parametrize("spec, bound", [
    ({"name": "ivf", "nlist": 32, "nprobe": 2}, 0.85),
    ({"name": "hnsw", "m": 8, "ef_search": 16}, 0.9),
])
def test_approximate_indexes_reach_the_stated_recall(spec, bound):
    keys, q = clustered()
    _, exact = ann.exact_topk(q, keys, K, similarity="cosine")
    _, found = ann.KeyIndex(keys, similarity="cosine", index=spec).search(q, K)
    recall = ann.recall_at_k(found, exact)
    assert bound <= recall <= 1.0
    # Whatever an index finds is scored exactly: each found key's score is its true score.
    scores, found = ann.KeyIndex(keys, similarity="cosine", index=spec).search(q, K)
    true = (q.unsqueeze(1) * keys[found.clamp_min(0)]).sum(-1)
    torch.testing.assert_close(scores[found >= 0], true[found >= 0], rtol=1e-5, atol=1e-6)


def test_more_ivf_probes_never_lower_recall():
    keys, q = clustered(seed=4)
    _, exact = ann.exact_topk(q, keys, K, similarity="cosine")
    recalls = []
    for nprobe in (1, 2, 8, 32):
        index = ann.KeyIndex(keys, similarity="cosine", index={"name": "ivf", "nlist": 32, "nprobe": nprobe})
        recalls.append(ann.recall_at_k(index.search(q, K)[1], exact))
    assert recalls == sorted(recalls) and recalls[-1] == 1.0  # all 32 cells probed: exact
    assert recalls[0] < 1.0


@pytest.mark.parametrize("spec", ["ivf", "hnsw", {"name": "hnsw", "seed": 3}])
def test_same_seed_same_index_results(spec):
    keys, q = clustered(seed=5)
    a = ann.KeyIndex(keys, similarity="cosine", index=spec).search(q, K)
    b = ann.KeyIndex(keys, similarity="cosine", index=spec).search(q, K)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])


def test_slot_memory_with_flat_index_equals_the_top_k_read():
    keys, q = clustered(seed=6)
    values = torch.randn(2000, 3, generator=torch.Generator().manual_seed(0))
    sep = {"name": "topk", "k": 5, "beta": 8.0}
    plain = kvmem.SlotMemory("cosine", sep)
    indexed = kvmem.SlotMemory("cosine", sep, index="flat")
    for mem in (plain, indexed):
        mem.write(keys, values)
    torch.testing.assert_close(indexed.read(q), plain.read(q), rtol=1e-5, atol=1e-6)
    r, ref = indexed.read(q, details=True), plain.read(q, details=True)
    torch.testing.assert_close(r.weights, ref.weights, rtol=1e-5, atol=1e-6)
    assert r.scores is None


def test_slot_memory_with_hnsw_recalls_stored_values_batched():
    keys, _ = clustered(n=1000, seed=7)
    keys = torch.stack([keys, keys.flip(0)])  # two memories of the batch, different order
    values = torch.randn(2, 1000, 4, generator=torch.Generator().manual_seed(1))
    mem = kvmem.SlotMemory("cosine", {"name": "topk", "k": 1}, index="hnsw")
    mem.write(keys, values)
    out = mem.read(keys[:, :30])
    torch.testing.assert_close(out, values[:, :30])


def test_index_is_rebuilt_after_a_write_and_survives_copies():
    keys, q = clustered(n=500, seed=8)
    values = torch.randn(500, 2, generator=torch.Generator().manual_seed(2))
    mem = kvmem.SlotMemory("dot", {"name": "topk", "k": 1}, index="flat")
    mem.write(keys[:250], values[:250])
    first = mem._key_indexes()[0]
    mem.read(q)
    assert mem._key_indexes()[0] is first  # reads reuse the built index
    mem.write(keys[250:], values[250:])
    assert len(mem._key_indexes()[0]) == 500  # a write rebuilds it over all keys
    torch.testing.assert_close(mem.read(keys[400:410]), values[400:410])
    for twin in (copy.deepcopy(mem), pickle.loads(pickle.dumps(mem))):
        torch.testing.assert_close(twin.read(keys[400:410]), values[400:410])


def test_lru_policy_marks_the_slot_found_by_the_index():
    keys = torch.eye(4)
    mem = kvmem.SlotMemory("dot", {"name": "topk", "k": 2}, index="flat", capacity=4, overwrite="lru")
    plain = kvmem.SlotMemory("dot", {"name": "topk", "k": 2}, capacity=4, overwrite="lru")
    for m in (mem, plain):
        m.write(keys, torch.arange(4.0).unsqueeze(-1))
        m.read(torch.tensor([[0.0, 0.0, 1.0, 0.1]]))
    assert torch.equal(mem.last_used, plain.last_used)


def test_reads_through_the_index_are_differentiable():
    keys, q = clustered(n=300, seed=9)
    kg = keys.clone().requires_grad_(True)
    mem = kvmem.SlotMemory("scaled_dot", {"name": "topk", "k": 4}, index="hnsw")
    mem.write(kg, torch.randn(300, 2, generator=torch.Generator().manual_seed(3)))
    mem.read(q).sum().backward()
    assert kg.grad is not None and torch.isfinite(kg.grad).all() and kg.grad.abs().sum() > 0


def test_config_round_trip_keeps_the_index_spec(tmp_path):
    keys, q = clustered(n=300, seed=10)
    values = torch.randn(300, 2, generator=torch.Generator().manual_seed(4))
    mem = kvmem.SlotMemory("cosine", {"name": "topk", "k": 3}, index={"name": "ivf", "nlist": 8, "nprobe": 8})
    mem.write(keys, values)
    assert mem.config()["index"] == {"name": "ivf", "nlist": 8, "nprobe": 8, "niter": 20, "seed": 0}
    kvmem.save(mem, tmp_path / "m")
    back = kvmem.load(tmp_path / "m")
    torch.testing.assert_close(back.read(q), mem.read(q))


def test_missing_faiss_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes "import faiss" fail
    with pytest.raises(ImportError, match=r"pip install kvmem\[faiss\]"):
        ann.KeyIndex(torch.eye(3), index="hnsw")
    mem = kvmem.SlotMemory("dot", {"name": "topk", "k": 1}, index="ivf")  # construction needs no faiss
    mem.write(torch.eye(3), torch.eye(3))
    with pytest.raises(ImportError, match=r"pip install kvmem\[faiss\]"):
        mem.read(torch.eye(3))
    # The exact search is plain torch.
    assert ann.exact_topk(torch.eye(3), torch.eye(3), 1)[1].flatten().tolist() == [0, 1, 2]


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="index: a search index serves the top-k separation"):
        kvmem.SlotMemory("dot", "softmax", index="hnsw")
    with pytest.raises(ValueError, match="similarity"):
        kvmem.SlotMemory("neg_manhattan", {"name": "topk", "k": 2}, index="hnsw")
    with pytest.raises(ValueError, match="unknown index"):
        kvmem.SlotMemory("dot", {"name": "topk", "k": 2}, index="annoy")
    with pytest.raises(TypeError, match="nprobes"):
        ann.get({"name": "ivf", "nprobes": 3})
    with pytest.raises(ValueError, match="nprobe"):
        ann.get({"name": "ivf", "nprobe": 0})
    with pytest.raises(ValueError, match="m"):
        ann.get({"name": "hnsw", "m": 1})
    with pytest.raises(ValueError, match="queries"):
        ann.exact_topk(torch.ones(2, 3), torch.ones(5, 4), 1)
    with pytest.raises(ValueError, match="k"):
        ann.exact_topk(torch.ones(2, 3), torch.ones(5, 3), 0)
    with pytest.raises(ValueError, match="keys"):
        ann.KeyIndex(torch.ones(3), index="flat")
    with pytest.raises(ValueError, match="NaN"):
        ann.KeyIndex(torch.tensor([[float("nan"), 1.0]]), index="flat")
    with pytest.raises(ValueError, match="found, exact"):
        ann.recall_at_k(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long))
    index = ann.KeyIndex(torch.eye(4), index="flat")
    with pytest.raises(ValueError, match="queries"):
        index.search(torch.ones(2, 3), 1)
    assert ann.recall_at_k(torch.tensor([[1, -1]]), torch.tensor([[1, 2]])) == 0.5
