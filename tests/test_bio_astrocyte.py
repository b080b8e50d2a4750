"""kvmem.bio.astrocyte: the neuron-astrocyte network against a neuron-level loop and softmax attention."""

import math

import numpy as np
import pytest
import torch

import kvmem
from kvmem.bio.astrocyte import NeuronAstrocyteAttention, compare_with_softmax, departure_table


def unit_rows(n, d, gen):
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return x / x.norm(dim=-1, keepdim=True)


class LoopNetwork:
    """Neuron by neuron, synapse by synapse, in float64: the reference for the vectorised network."""

    def __init__(self, w, b, beta, features):
        self.w, self.b, self.beta, self.features = np.asarray(w), None if b is None else np.asarray(b), beta, features
        self.m, self.d = self.w.shape
        self.H = None
        self.g = [0.0] * self.m

    def hidden(self, x):
        z = [math.sqrt(self.beta) * xi for xi in x]
        sq = sum(zi * zi for zi in z)
        out = []
        for j in range(self.m):
            drive = sum(self.w[j, i] * z[i] for i in range(self.d))
            if self.features == "positive":
                out.append(math.exp(drive - sq / 2) / math.sqrt(self.m))
            else:
                out.append(math.sqrt(2 / self.m) * math.cos(drive + self.b[j]) * math.exp(sq / 2))
        return out

    def write(self, keys, values):
        for k, v in zip(keys, values):
            h = self.hidden(k)
            if self.H is None:
                self.H = [[0.0] * len(v) for _ in range(self.m)]
            for j in range(self.m):
                self.g[j] += h[j]  # the astrocyte process at hidden neuron j integrates its activity
                for i in range(len(v)):
                    self.H[j][i] += h[j] * v[i]  # Hebbian: presynaptic hidden x clamped output

    def read(self, q):
        h = self.hidden(q)
        processes = [self.g[j] * h[j] for j in range(self.m)]
        p = sum(processes)
        y = [sum(self.H[j][i] * h[j] for j in range(self.m)) / p for i in range(len(self.H[0]))]
        return y, processes, p


@pytest.mark.parametrize("features", ["positive", "cosine"])
def test_network_matches_a_neuron_level_loop(features):
    gen = torch.Generator().manual_seed(0)
    k, v, q = (torch.randn(n, d, generator=gen, dtype=torch.float64) for n, d in ((7, 3), (7, 2), (4, 3)))
    net = NeuronAstrocyteAttention(num_hidden=12, features=features, beta=0.8, seed=4)
    net.write(k[:3], v[:3])
    net.write(k[3:], v[3:])  # writes accumulate
    ref = LoopNetwork(net.projection, net.offset, 0.8, features)
    ref.write(k.tolist(), v.tolist())
    out, procs, resp = net.read(q), net.processes(q), net.astrocyte_response(q)
    for m in range(4):
        y, pr, p = ref.read(q[m].tolist())
        np.testing.assert_allclose(out[m].numpy(), y, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(procs[m].numpy(), pr, rtol=1e-10, atol=1e-14)
        assert math.isclose(resp[m].item(), p, rel_tol=1e-10)


@pytest.mark.parametrize("features", ["positive", "cosine"])
def test_hidden_kernel_is_unbiased_for_the_softmax_kernel(features):
    # E[phi(x) . phi(y)] = exp(beta x . y): check the mean of the m per-neuron terms.
    x = torch.tensor([[0.6, -0.2, 0.3]], dtype=torch.float64)
    y = torch.tensor([[0.1, 0.5, 0.4]], dtype=torch.float64)
    m, beta = 2**18, 1.5
    net = NeuronAstrocyteAttention(num_hidden=m, features=features, beta=beta, seed=1)
    net.write(x, torch.ones(1, 1, dtype=torch.float64))
    terms = m * net.hidden(x)[0] * net.hidden(y)[0]
    exact = math.exp(beta * float(x @ y.T))
    se = terms.std().item() / math.sqrt(m)
    assert abs(terms.mean().item() - exact) < 5 * se
    assert se < 0.01 * exact  # the check has power


def test_equals_softmax_attention_in_the_large_network_limit():
    gen = torch.Generator().manual_seed(2)
    k, q = unit_rows(10, 6, gen), unit_rows(20, 6, gen)
    v = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    attention = kvmem.SlotMemory(similarity="scaled_dot", separation="softmax")
    attention.write(k, v)
    exact = attention.read(q)
    net = NeuronAstrocyteAttention(num_hidden=2**16, seed=0)  # beta = 1/sqrt(6), as scaled_dot
    net.write(k, v)
    assert (net.read(q) - exact).abs().max() < 0.01
    z = torch.exp(q @ k.T / math.sqrt(6)).sum(-1)
    assert ((net.astrocyte_response(q) / z) - 1).abs().max() < 0.02  # the softmax normaliser
    # The error shrinks like m^(-1/2): fit the slope over m = 64 .. 16384, three seeds each.
    ms = [64, 256, 1024, 4096, 16384]
    errs = [
        np.mean([compare_with_softmax(k, v, q, num_hidden=m, seed=s)["output_error"] for s in range(3)]) for m in ms
    ]
    assert all(a > b for a, b in zip(errs, errs[1:]))
    slope = np.polyfit(np.log(ms), np.log(errs), 1)[0]
    assert -0.8 < slope < -0.35


def test_departs_from_softmax_for_small_networks_sharp_attention_and_cosine_features():
    rows = departure_table(
        num_hidden=[32, 1024], betas=[1.0, 8.0], features=["positive", "cosine"],
        dim=8, num_pairs=16, num_queries=32, seeds=3,
    )
    r = {(x["features"], x["num_hidden"], x["beta"]): x for x in rows}
    assert len(rows) == 8
    # Far from the limit: a small network is a poor copy of soft attention ...
    assert r["positive", 32, 1.0]["output_error"] > 3 * r["positive", 1024, 1.0]["output_error"]
    # ... and sharp attention needs many more hidden neurons (the variance grows like exp(beta)).
    assert r["positive", 1024, 8.0]["output_error"] > 5 * r["positive", 1024, 1.0]["output_error"]
    # Positive features keep the astrocyte response positive; cosine features do not.
    assert all(x["nonpositive"] == 0 for x in rows if x["features"] == "positive")
    assert r["cosine", 32, 8.0]["nonpositive"] > 0.1


def test_batched_network_equals_separate_networks():
    gen = torch.Generator().manual_seed(3)
    k, v, q = (torch.randn(2, n, d, generator=gen) for n, d in ((6, 4), (6, 3), (5, 4)))
    net = NeuronAstrocyteAttention(num_hidden=50, features="cosine", seed=1)
    net.write(k, v)
    out = net.read(q)
    for t in range(2):
        single = NeuronAstrocyteAttention(num_hidden=50, features="cosine", seed=1)
        single.write(k[t], v[t])
        torch.testing.assert_close(out[t], single.read(q[t]), rtol=1e-6, atol=1e-6)
    assert net.read(q[0]).shape == (2, 5, 3)  # shared queries broadcast


def test_same_seed_same_result_and_float64_weights_whatever_the_dtype():
    gen = torch.Generator().manual_seed(4)
    k, v, q = torch.randn(5, 3, generator=gen), torch.randn(5, 2, generator=gen), torch.randn(4, 3, generator=gen)
    outs = []
    for seed in (9, 9, 10):
        net = NeuronAstrocyteAttention(num_hidden=40, seed=seed)
        net.write(k, v)
        outs.append(net.read(q))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    a, b = NeuronAstrocyteAttention(num_hidden=40, seed=9), NeuronAstrocyteAttention(num_hidden=40, seed=9)
    a.write(k, v)
    b.write(k.double(), v.double())
    assert torch.equal(a.projection, b.projection.float())


@pytest.mark.parametrize("features", ["positive", "cosine"])
def test_save_and_load_round_trip(tmp_path, features):
    gen = torch.Generator().manual_seed(5)
    k, v, q = torch.randn(6, 4, generator=gen), torch.randn(6, 2, generator=gen), torch.randn(3, 4, generator=gen)
    net = NeuronAstrocyteAttention(num_hidden=30, features=features, beta=0.7, seed=2)
    net.write(k, v)
    kvmem.save(net, tmp_path / "net.safetensors")
    loaded = kvmem.load(tmp_path / "net.safetensors")
    assert isinstance(loaded, NeuronAstrocyteAttention) and loaded.config() == net.config()
    assert torch.equal(loaded.read(q), net.read(q))


def test_reads_are_differentiable():
    gen = torch.Generator().manual_seed(6)
    k, v = torch.randn(5, 3, generator=gen), torch.randn(5, 2, generator=gen)
    q = torch.randn(2, 3, generator=gen, requires_grad=True)
    net = NeuronAstrocyteAttention(num_hidden=20)
    net.write(k, v)
    net.read(q).sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="num_hidden"):
        NeuronAstrocyteAttention(num_hidden=0)
    with pytest.raises(ValueError, match="features"):
        NeuronAstrocyteAttention(features="relu")
    with pytest.raises(ValueError, match="beta"):
        NeuronAstrocyteAttention(beta=-1.0)
    net = NeuronAstrocyteAttention(num_hidden=8)
    with pytest.raises(ValueError, match="empty"):
        net.read(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="empty"):
        net.inverse_temperature
    with pytest.raises(TypeError, match="keys"):
        net.write([[1.0]], [[1.0]])
    net.write(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="keys"):
        net.write(torch.zeros(2, 4), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="values"):
        net.write(torch.zeros(2, 3), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="queries"):
        net.read(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="features"):
        departure_table(features=["relu"])
    with pytest.raises(ValueError, match="betas"):
        departure_table(betas=[0.0])
