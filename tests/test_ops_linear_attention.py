"""kvmem.ops.linear_attention: chunked vs recurrent vs a float64 loop, MatrixMemory agreement, checks."""

import pytest
import torch

import kvmem
from kvmem import features
from kvmem.ops import linear_attention


def rel_rmse(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.detach().double(), ref.detach().double()
    return float((a - ref).norm() / ref.norm().clamp_min(1e-300))


def loop_reference(q, k, v, phi, normalize, s0, eps=1e-6):
    """Causal linear attention written out token by token in float64, one sequence at a time."""
    fq, fk, v = phi(q.double()), phi(k.double()), v.double()
    *lead, t, f = fk.shape
    dv = v.shape[-1]
    s_all = s0.double()
    outs, finals = [], []
    for idx in torch.cartesian_prod(*[torch.arange(n) for n in lead]).reshape(-1, len(lead)).tolist():
        idx = tuple(idx)
        m = s_all[idx][:, :dv]
        z = s_all[idx][:, dv] if normalize else None
        rows = []
        for i in range(t):
            m = m + torch.outer(fk[idx][i], v[idx][i])
            out = fq[idx][i] @ m
            if normalize:
                z = z + fk[idx][i]
                out = out / torch.clamp(fq[idx][i] @ z, min=eps)
            rows.append(out)
        outs.append(torch.stack(rows))
        finals.append(torch.cat([m, z[:, None]], dim=1) if normalize else m)
    return torch.stack(outs).reshape(*lead, t, dv), torch.stack(finals).reshape(*s0.shape)


SHAPES = [((2, 3), 1, 8, 5, 16), ((1, 2), 7, 6, 4, 16), ((2, 2), 64, 8, 8, 16), ((3,), 45, 5, 6, 8)]
MAPS = ["identity", "elu_plus_one", {"name": "dpfp", "nu": 2}]


def make_inputs(lead, t, dk, dv, f, normalize, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(*lead, t, dk, generator=gen, dtype=torch.float64) for _ in range(2))
    v = torch.randn(*lead, t, dv, generator=gen, dtype=torch.float64)
    s0 = torch.randn(*lead, f, dv, generator=gen, dtype=torch.float64)
    if normalize:  # the normaliser column starts non-negative, as a sum of phi(k) would be
        s0 = torch.cat([s0, torch.rand(*lead, f, 1, generator=gen, dtype=torch.float64)], dim=-1)
    return [x.to(dtype).requires_grad_() for x in (q, k, v, s0)]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("case", range(len(SHAPES)))
def test_chunk_and_recurrent_match_the_float64_loop(case, dtype, tol):
    lead, t, dk, dv, chunk = SHAPES[case]
    for j, spec in enumerate(MAPS):
        phi = features.get(spec)
        for normalize in ([False, True] if spec != "identity" else [False]):
            seed = 100 * case + 10 * j + normalize
            ref_in = make_inputs(lead, t, dk, dv, phi.out_dim(dk), normalize, torch.float64, seed)
            ref_o, ref_s = loop_reference(*ref_in[:3], phi, normalize, ref_in[3])
            gen = torch.Generator().manual_seed(seed)
            wo = torch.randn(ref_o.shape, generator=gen, dtype=torch.float64)
            ws = torch.randn(ref_s.shape, generator=gen, dtype=torch.float64)
            ref_g = torch.autograd.grad((ref_o * wo).sum() + (ref_s * ws).sum(), ref_in)
            for mode in ("chunk", "recurrent", "parallel"):
                inputs = make_inputs(lead, t, dk, dv, phi.out_dim(dk), normalize, dtype, seed)
                q, k, v, s0 = inputs
                o, s = linear_attention(q, k, v, feature_map=spec, normalize=normalize, initial_state=s0,
                                        mode=mode, chunk_size=chunk)
                where = (mode, spec, normalize)
                assert o.dtype == dtype and rel_rmse(o, ref_o) <= tol and rel_rmse(s, ref_s) <= tol, where
                got = torch.autograd.grad((o * wo.to(dtype)).sum() + (s * ws.to(dtype)).sum(), inputs)
                for name, a, b in zip(["q", "k", "v", "initial_state"], got, ref_g):
                    assert rel_rmse(a, b) <= tol, (*where, name, rel_rmse(a, b))


@pytest.mark.parametrize("normalize", [False, True])
def test_agrees_token_by_token_with_matrix_memory_hebbian(normalize):
    gen = torch.Generator().manual_seed(4)
    q, k, v = torch.randn(3, 25, 6, generator=gen), torch.randn(3, 25, 6, generator=gen), torch.randn(3, 25, 2, generator=gen)
    o, s = linear_attention(q, k, v, feature_map="elu_plus_one", key_norm="sum", normalize=normalize, chunk_size=7)
    mem = kvmem.MatrixMemory(6, 2, feature_map="elu_plus_one", rule="hebbian", key_norm="sum", normalize=normalize)
    for t in range(25):
        mem.write(k[:, t : t + 1], v[:, t : t + 1])
        assert torch.allclose(mem.read(q[:, t : t + 1])[:, 0], o[:, t], atol=1e-5), t
    assert torch.allclose(mem.matrix, s[..., :2], atol=1e-5)
    if normalize:
        assert torch.allclose(mem.normalizer, s[..., 2], atol=1e-5)


def test_state_carries_over_between_pieces():
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 40, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    o, s = linear_attention(q, k, v, feature_map="relu", normalize=True, chunk_size=16)
    o1, s1 = linear_attention(q[:, :13], k[:, :13], v[:, :13], feature_map="relu", normalize=True)
    o2, s2 = linear_attention(q[:, 13:], k[:, 13:], v[:, 13:], feature_map="relu", normalize=True, initial_state=s1)
    assert rel_rmse(torch.cat([o1, o2], 1), o) <= 1e-12 and rel_rmse(s2, s) <= 1e-12


def test_checks():
    x = torch.randn(1, 10, 4)
    with pytest.raises(ValueError, match="non-negative"):
        linear_attention(x, x, x, normalize=True)  # identity features take both signs
    with pytest.raises(ValueError, match="key_norm='sum'"):
        linear_attention(x, x, x, key_norm="sum")
    with pytest.raises(ValueError, match="initial_state"):
        linear_attention(x, x, x, feature_map="relu", normalize=True, initial_state=torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="normaliser"):
        linear_attention(x, x, x, feature_map="relu", normalize=True, initial_state=-torch.ones(1, 4, 5))
    with pytest.raises(ValueError, match="unknown feature map|feature_map"):
        linear_attention(x, x, x, feature_map="nope")
    with pytest.raises(ValueError, match="overflowed"):
        linear_attention(x * 1e20, x * 1e20, x * 1e20)
    bad = x.clone()
    bad[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="v: contains NaN or infinite"):
        linear_attention(x, x, bad)
    o, _ = linear_attention(x.numpy(), x.numpy(), x.numpy())  # numpy arrays are accepted
    assert isinstance(o, torch.Tensor) and o.shape == (1, 10, 4)
