"""The dual form of SGD-trained linear layers (Eqs. 10-11) against the trained layers themselves,
against a plain-loop re-derivation of every pair, and against the authors' two-matrix model."""

import copy

import pytest
import torch
from torch import nn

from kvmem.learning.dual_form import DualFormRecorder, KVPairs, NetworkRecorder, check_plain_sgd

TAGS = ("a", "b", "c")
DIN, HID, DOUT, BATCH, STEPS = 6, 10, 3, 8, 36


pytestmark = pytest.mark.usefixtures("one_thread")


def _data(dtype, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(STEPS, BATCH, DIN, generator=gen, dtype=dtype)
    y = torch.randint(0, DOUT, (STEPS, BATCH), generator=gen)
    return x, y


def _net(dtype, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(DIN, HID, bias=False), nn.ReLU(), nn.Linear(HID, DOUT, bias=False)).to(dtype)


def _lr(step):
    # A changing learning rate: eta_n must be the rate of the step that applies the pair.
    return 0.3 if step < 12 else (0.1 if step < 24 else 0.05)


def _train(dtype, explicit=True):
    """A 2-layer MLP trained for STEPS mini-batch SGD steps, tags a, b, c in thirds."""
    net = _net(dtype)
    start = copy.deepcopy(net)
    opt = torch.optim.SGD(net.parameters(), lr=_lr(0))
    rec = NetworkRecorder(net, opt, tag="a", explicit=explicit)
    x, y = _data(dtype)
    for step in range(STEPS):
        rec.tag = TAGS[step // (STEPS // 3)]
        for group in opt.param_groups:
            group["lr"] = _lr(step)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[step]), y[step]).backward()
        opt.step()
        with torch.no_grad():  # evaluation calls between steps must not be recorded
            net(x[step])
    return net, start, rec


@pytest.fixture(scope="module")
def trained32():
    return _train(torch.float32)


@pytest.fixture(scope="module")
def trained64():
    return _train(torch.float64)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_reconstructed_weights_and_outputs_equal_the_trained_layers(dtype, tol, request):
    net, start, rec = request.getfixturevalue("trained32" if dtype == torch.float32 else "trained64")
    assert rec["0"].tags == TAGS and rec.tag == "c"
    for name, din in (("0", DIN), ("2", HID)):
        r = rec[name]
        trained = net.get_submodule(name).weight.detach().T  # nn.Linear stores [Dout, Din]
        assert torch.equal(r.init_weight, start.get_submodule(name).weight.detach().T)
        assert r.init_weight.shape == (din, trained.shape[1])
        assert not torch.allclose(trained, r.init_weight, atol=1e-2)  # training moved the weight
        for source in ("memories", "pairs"):
            assert (r.weight(source) - trained).abs().max() <= tol
        assert (sum(r.memories().values()) + r.init_weight - trained).abs().max() <= tol
        q = torch.randn(20, din, dtype=dtype, generator=torch.Generator().manual_seed(7))
        layer_out = net.get_submodule(name)(q).detach()
        assert (r.read(q) - layer_out).abs().max() <= tol  # Eq. 11, attention form
        slot = r.as_slot_memory().read(q) + q @ r.init_weight  # the same through kvmem.SlotMemory
        assert (slot - layer_out).abs().max() <= tol
    kv = rec["0"].pairs()
    assert len(kv) == STEPS * BATCH and len(rec["2"].pairs()) == STEPS * BATCH
    assert kv.keys.dtype == dtype and kv.values.shape == (STEPS * BATCH, HID)


def test_pairs_equal_a_plain_loop_rederivation():
    """Keys x_n and values -eta dL/dy_n recomputed step by step without hooks (float64)."""
    net, start, rec = _train(torch.float64)
    x, y = _data(torch.float64)
    w1 = start[0].weight.detach().T.clone()
    w2 = start[2].weight.detach().T.clone()
    keys1, vals1, keys2, vals2 = [], [], [], []
    for step in range(STEPS):
        w1r, w2r = w1.clone().requires_grad_(), w2.clone().requires_grad_()
        y1 = x[step] @ w1r
        h = torch.relu(y1)
        y2 = h @ w2r
        loss = nn.functional.cross_entropy(y2, y[step])
        g1, g2 = torch.autograd.grad(loss, (y1, y2))
        eta = _lr(step)
        keys1.append(x[step]); vals1.append(-eta * g1)
        keys2.append(h.detach()); vals2.append(-eta * g2)
        w1 = w1 + x[step].T @ (-eta * g1)
        w2 = w2 + h.detach().T @ (-eta * g2)
    for name, keys, vals in (("0", keys1, vals1), ("2", keys2, vals2)):
        kv = rec[name].pairs()
        assert torch.allclose(kv.keys, torch.cat(keys), atol=1e-12)
        assert torch.allclose(kv.values, torch.cat(vals), atol=1e-12)
        assert kv.steps.tolist() == [s for s in range(STEPS) for _ in range(BATCH)]
        assert [kv.tags[i] for i in kv.tag_ids.tolist()] == [TAGS[s // 12] for s in range(STEPS) for _ in range(BATCH)]
    assert torch.allclose(w1, net[0].weight.detach().T, atol=1e-10)


def test_accumulated_memories_equal_the_explicit_sums_per_tag(trained64):
    _, _, rec = trained64
    for r in rec.recorders.values():
        kv = r.pairs()
        for tag in TAGS:
            m = kv.mask(tag)
            assert int(m.sum()) == 12 * BATCH
            assert (r.memory(tag) - kv.keys[m].T @ kv.values[m]).abs().max() <= 1e-12


def test_reactivation_dual_form_equals_weight_form_and_a_plain_loop(trained64):
    _, _, rec = trained64
    r = rec["0"]
    kv, w0 = r.pairs(), r.init_weight
    q = torch.randn(5, DIN, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    # Plain loop: y = s q W0 + sum_n beta_n (q . k_n) v_n
    def loop(betas, s=1.0):
        out = s * (q @ w0)
        for n in range(len(kv)):
            out = out + betas[n] * (q @ kv.keys[n])[:, None] * kv.values[n][None, :]
        return out

    betas = torch.where(kv.mask("a"), 1.7, 1.0)
    ref = loop(betas)
    assert torch.allclose(r.read(q, beta=1.7, tag="a"), ref, atol=1e-10)
    assert torch.allclose(q @ r.reactivated_weight(1.7, tag="a"), ref, atol=1e-10)  # accumulated path
    assert torch.allclose(r.read(q, beta=1.7, pairs=kv.mask("a")), ref, atol=1e-10)
    idx = torch.nonzero(kv.mask("a")).flatten()
    assert torch.allclose(q @ r.reactivated_weight(1.7, pairs=idx), ref, atol=1e-10)
    assert torch.allclose(r.read(q, beta=betas), ref, atol=1e-10)  # per-pair beta tensor
    # The authors' variant scales W0 with the chosen pairs.
    ref_init = loop(betas, s=1.7)
    assert torch.allclose(q @ r.reactivated_weight(1.7, tag="a", scale_init=True), ref_init, atol=1e-10)
    assert torch.allclose(r.read(q, beta=1.7, tag="a", scale_init=True), ref_init, atol=1e-10)
    assert not torch.allclose(ref_init, ref, atol=1e-3)
    # Several tags at once; a random subset of pairs.
    both = torch.where(kv.mask(["a", "c"]), 0.5, 1.0)
    assert torch.allclose(q @ r.reactivated_weight(0.5, tag=("a", "c")), loop(both), atol=1e-10)
    subset = torch.rand(len(kv), generator=torch.Generator().manual_seed(4)) < 0.3
    assert torch.allclose(q @ r.reactivated_weight(2.0, pairs=subset), loop(torch.where(subset, 2.0, 1.0)), atol=1e-10)


def test_subset_reactivation_with_only_some_tags_kept_explicitly():
    full = _train(torch.float64)[2]
    part = _train(torch.float64, explicit={"a"})[2]
    r_full, r_part = full["0"], part["0"]
    assert not r_part.complete and r_full.complete
    kv = r_part.pairs()
    assert len(kv) == 12 * BATCH and set(kv.tag_ids.tolist()) == {0}
    subset = torch.rand(len(kv), generator=torch.Generator().manual_seed(5)) < 0.5
    mask_full = torch.zeros(len(r_full.pairs()), dtype=torch.bool)
    mask_full[: len(kv)] = subset  # tag a came first
    assert torch.allclose(r_part.reactivated_weight(1.8, pairs=subset), r_full.reactivated_weight(1.8, pairs=mask_full), atol=1e-10)
    assert torch.allclose(r_part.weight(), r_full.weight("pairs"), atol=1e-10)
    with pytest.raises(ValueError, match="explicit pairs of every tag"):
        r_part.read(torch.zeros(1, DIN, dtype=torch.float64))
    with pytest.raises(ValueError, match="explicit pairs of every tag"):
        r_part.weight("pairs")
    acc = _train(torch.float64, explicit=False)[2]["0"]
    with pytest.raises(ValueError, match="explicit=False"):
        acc.pairs()
    assert torch.allclose(acc.weight(), r_full.weight(), atol=1e-12)


def test_network_reactivation_context_matches_a_manual_forward_and_restores(trained64):
    net, _, rec = trained64
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    x = torch.randn(9, DIN, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    for scale_init in (False, True):
        w = rec.reactivated_weights(1.5, tag="b", scale_init=scale_init)
        with rec.reactivated(1.5, tag="b", scale_init=scale_init), torch.no_grad():
            out = net(x)
        s = 1.5 if scale_init else 1.0
        ref = x
        for name in ("0", "2"):
            r = rec[name]
            W = s * r.init_weight + 1.5 * r.memory("b") + r.memory("a") + r.memory("c")
            assert torch.allclose(w[name], W, atol=1e-12)
            ref = ref @ W
            if name == "0":
                ref = torch.relu(ref)
        assert torch.allclose(out, ref, atol=1e-10)
    for n, p in net.named_parameters():
        assert torch.equal(p.detach(), before[n])
    with pytest.raises(ValueError, match="unknown layer"):
        with rec.swapped({"9": torch.zeros(2, 2)}):
            pass


def test_authors_superposition_model_is_the_tagged_accumulated_form():
    """The notebook trains W1 (init + Task 1) then W2 (from zero, Task 2) with W1 frozen; scaling
    W1 by beta equals reactivated_weight(beta, tag='task1', scale_init=True)."""
    dtype = torch.float64
    x, y = _data(dtype)
    net = _net(dtype)
    ref1 = [net[0].weight.detach().T.clone(), net[2].weight.detach().T.clone()]
    ref2 = [torch.zeros_like(ref1[0]), torch.zeros_like(ref1[1])]
    opt = torch.optim.SGD(net.parameters(), lr=0.2)
    rec = NetworkRecorder(net, opt, tag="task1")
    for step in range(20):
        task = 0 if step < 10 else 1
        rec.tag = ("task1", "task2")[task]
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[step]), y[step]).backward()
        opt.step()
        # The authors' two-matrix model, trained alongside: only the current task's matrices move.
        mats = [p.clone().requires_grad_() for p in (ref1 if task == 0 else ref2)]
        other = ref2 if task == 0 else ref1
        h = torch.relu(x[step] @ (mats[0] + other[0]))
        loss = nn.functional.cross_entropy(h @ (mats[1] + other[1]), y[step])
        grads = torch.autograd.grad(loss, mats)
        new = [m.detach() - 0.2 * g for m, g in zip(mats, grads)]
        if task == 0:
            ref1 = new
        else:
            ref2 = new
    for i, name in enumerate(("0", "2")):
        r = rec[name]
        assert torch.allclose(r.init_weight + r.memory("task1"), ref1[i], atol=1e-10)
        assert torch.allclose(r.memory("task2"), ref2[i], atol=1e-10)
        assert torch.allclose(r.reactivated_weight(1.6, tag="task1", scale_init=True), 1.6 * ref1[i] + ref2[i], atol=1e-10)


def test_bare_weight_recorded_through_the_recorder_call():
    gen = torch.Generator().manual_seed(2)
    w = nn.Parameter(torch.randn(DIN, DOUT, generator=gen, dtype=torch.float64))
    w0 = w.detach().clone()
    opt = torch.optim.SGD([w], lr=0.1)
    rec = DualFormRecorder(w, opt, tag="t")
    for _ in range(5):
        x = torch.randn(4, 2, DIN, generator=gen, dtype=torch.float64)  # extra leading dims: each row a pair
        opt.zero_grad()
        rec(x).pow(2).sum().backward()
        opt.step()
    assert torch.equal(rec.init_weight, w0)
    assert len(rec.pairs()) == 5 * 8
    assert torch.allclose(rec.weight("pairs"), w.detach(), atol=1e-12)
    q = torch.randn(3, DIN, generator=gen, dtype=torch.float64)
    assert torch.allclose(rec.read(q), q @ w.detach(), atol=1e-12)
    rec.remove()
    opt.step()  # hooks removed: nothing more is recorded
    assert rec.step_count == 5


def test_plain_sgd_only_and_other_bad_input():
    layer = nn.Linear(3, 2, bias=False)
    with pytest.raises(TypeError, match="plain SGD"):
        DualFormRecorder(layer, torch.optim.Adam(layer.parameters()))
    with pytest.raises(ValueError, match="momentum"):
        DualFormRecorder(layer, torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9))
    with pytest.raises(ValueError, match="weight_decay"):
        DualFormRecorder(layer, torch.optim.SGD(layer.parameters(), lr=0.1, weight_decay=1e-4))
    with pytest.raises(ValueError, match="maximize"):
        DualFormRecorder(layer, torch.optim.SGD(layer.parameters(), lr=0.1, maximize=True))
    with pytest.raises(ValueError, match="not among"):
        DualFormRecorder(layer, torch.optim.SGD(nn.Linear(3, 2).parameters(), lr=0.1))
    with pytest.raises(ValueError, match="bias=False"):
        DualFormRecorder(nn.Linear(3, 2), torch.optim.SGD(layer.parameters(), lr=0.1))
    with pytest.raises(TypeError, match="layer"):
        DualFormRecorder("W", torch.optim.SGD(layer.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="bias=False"):
        NetworkRecorder(nn.Sequential(nn.Linear(3, 2)), torch.optim.SGD(layer.parameters(), lr=0.1))
    # Momentum switched on after recording started is caught at the step.
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    rec = DualFormRecorder(layer, opt, tag="x")
    opt.param_groups[0]["momentum"] = 0.5
    opt.zero_grad()
    layer(torch.ones(1, 3)).sum().backward()
    with pytest.raises(ValueError, match="momentum"):
        opt.step()
    rec.remove()


def test_skipped_zero_grad_is_reported():
    layer = nn.Linear(3, 2, bias=False)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    DualFormRecorder(layer, opt, tag="x")
    layer(torch.ones(2, 3)).sum().backward()
    opt.step()
    layer(torch.ones(2, 3)).sum().backward()  # no zero_grad: .grad holds two steps' gradients
    with pytest.raises(RuntimeError, match="zero_grad"):
        opt.step()


def test_selection_errors(trained64):
    _, _, rec = trained64
    r = rec["0"]
    n = len(r.pairs())
    with pytest.raises(ValueError, match="unknown tag"):
        r.reactivated_weight(2.0, tag="z")
    with pytest.raises(TypeError, match="tag"):
        r.reactivated_weight(2.0, tag=3)
    with pytest.raises(ValueError, match="boolean mask"):
        r.reactivated_weight(2.0, pairs=torch.ones(n + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="out of range"):
        r.reactivated_weight(2.0, pairs=[n])
    with pytest.raises(TypeError, match="indices"):
        r.reactivated_weight(2.0, pairs=torch.ones(3))
    with pytest.raises(ValueError, match="not both"):
        r.reactivated_weight(2.0, tag="a", pairs=[0])
    with pytest.raises(ValueError, match="per-pair"):
        r.reactivated_weight(torch.ones(n - 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="scale_init"):
        r.reactivated_weight(torch.ones(n, dtype=torch.float64), scale_init=True)
    with pytest.raises(TypeError, match="beta"):
        r.reactivated_weight("2")
    with pytest.raises(ValueError, match="last dimension"):
        r.read(torch.zeros(2, DIN + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="source"):
        r.weight("other")
    with pytest.raises(TypeError, match="tag"):
        r.tag = ""
    with pytest.raises(ValueError, match="Din, Dout"):
        with r.swapped(torch.zeros(DIN, DIN, dtype=torch.float64)):
            pass
    assert isinstance(r.pairs(), KVPairs)
    w = nn.Parameter(torch.zeros(1))
    assert check_plain_sgd(torch.optim.SGD([w], lr=0.5), w)["lr"] == 0.5


def test_a_frozen_layer_records_nothing_and_stays_exact():
    net = _net(torch.float64)
    opt = torch.optim.SGD(net.parameters(), lr=0.2)
    rec = NetworkRecorder(net, opt, tag="a")
    x, y = _data(torch.float64)
    for step in range(6):
        net[2].weight.requires_grad_(step >= 3)  # the output layer is frozen for the first 3 steps
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[step]), y[step]).backward()
        opt.step()
    assert rec["0"].step_count == 6 and rec["2"].step_count == 3
    assert len(rec["2"].pairs()) == 3 * BATCH
    for name in ("0", "2"):
        assert torch.allclose(rec[name].weight("pairs"), net.get_submodule(name).weight.detach().T, atol=1e-12)
