"""kvmem.ops.delta_rule / gated_delta_rule: chunked vs recurrent vs a float64 loop, and safe numerics."""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import kvmem
from kvmem.ops import delta_rule, gated_delta_rule, linear_attention


def rel_rmse(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.detach().double(), ref.detach().double()
    return float((a - ref).norm() / ref.norm().clamp_min(1e-300))


def loop_reference(q, k, v, beta, g=None, s0=None, key_norm="l2"):
    """The delta rule written out token by token in float64, one (batch, head) at a time."""
    q, k, v, beta = q.double(), k.double(), v.double(), beta.double()
    if key_norm == "l2":
        q = q / q.norm(dim=-1, keepdim=True)
        k = k / k.norm(dim=-1, keepdim=True)
    *lead, t, dk = k.shape
    dv = v.shape[-1]
    s_all = torch.zeros(*lead, dk, dv, dtype=torch.float64) if s0 is None else s0.double()
    outs, finals = [], []
    for idx in torch.cartesian_prod(*[torch.arange(n) for n in lead]).reshape(-1, len(lead)).tolist():
        idx = tuple(idx)
        s = s_all[idx]
        rows = []
        for i in range(t):
            if g is not None:
                s = s * torch.exp(g[idx][i].double())
            kt, vt = k[idx][i], v[idx][i]
            s = s + beta[idx][i] * torch.outer(kt, vt - kt @ s)
            rows.append(q[idx][i] @ s)
        outs.append(torch.stack(rows))
        finals.append(s)
    return torch.stack(outs).reshape(*lead, t, dv), torch.stack(finals).reshape(*lead, dk, dv)


def make_inputs(shape, dv, dtype, seed, gated=False, beta_max=1.0):
    gen = torch.Generator().manual_seed(seed)
    *lead, t, dk = shape
    q = torch.randn(*shape, generator=gen, dtype=torch.float64)
    k = torch.randn(*shape, generator=gen, dtype=torch.float64)
    v = torch.randn(*lead, t, dv, generator=gen, dtype=torch.float64)
    beta = beta_max * torch.rand(*lead, t, generator=gen, dtype=torch.float64)
    s0 = torch.randn(*lead, dk, dv, generator=gen, dtype=torch.float64)
    g = -2.0 * torch.rand(*lead, t, generator=gen, dtype=torch.float64) if gated else None
    tensors = [q, k, v, beta, s0] + ([g] if gated else [])
    return [x.to(dtype).requires_grad_() for x in tensors]


# (leading dims, T, Dk, Dv, chunk size): T = 1, T < C, T a multiple of C and T not a multiple.
SHAPES = [((2, 3), 1, 8, 5, 16), ((1, 2), 7, 6, 4, 16), ((2, 2), 64, 8, 8, 16), ((3,), 45, 12, 6, 8),
          ((1, 1), 33, 4, 9, 5)]


def run_op(inputs, mode, chunk, gated):
    q, k, v, beta, s0, *g = inputs
    if gated:
        return gated_delta_rule(q, k, v, beta, g[0], key_norm="l2", initial_state=s0, mode=mode, chunk_size=chunk)
    return delta_rule(q, k, v, beta, key_norm="l2", initial_state=s0, mode=mode, chunk_size=chunk)


def grads(inputs, out, state, seed):
    gen = torch.Generator().manual_seed(seed + 1000)
    wo = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.dtype)
    ws = torch.randn(state.shape, generator=gen, dtype=torch.float64).to(state.dtype)
    loss = (out * wo).sum() + (state * ws).sum()
    return torch.autograd.grad(loss, inputs)


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("case", range(len(SHAPES)))
def test_chunk_and_recurrent_match_the_float64_loop(case, dtype, tol, gated):
    lead, t, dk, dv, chunk = SHAPES[case]
    seed = 10 * case + gated
    ref_inputs = make_inputs((*lead, t, dk), dv, torch.float64, seed, gated)
    ref_o, ref_s = loop_reference(*ref_inputs[:4], g=ref_inputs[5] if gated else None, s0=ref_inputs[4])
    ref_grads = grads(ref_inputs, ref_o, ref_s, seed)
    names = ["q", "k", "v", "beta", "initial_state", "log_decay"]
    for mode in ("chunk", "recurrent", "parallel"):
        inputs = make_inputs((*lead, t, dk), dv, dtype, seed, gated)
        o, s = run_op(inputs, mode, chunk, gated)
        assert o.dtype == dtype and o.shape == ref_o.shape and s.shape == ref_s.shape
        assert rel_rmse(o, ref_o) <= tol, (mode, "o", rel_rmse(o, ref_o))
        assert rel_rmse(s, ref_s) <= tol, (mode, "state", rel_rmse(s, ref_s))
        for name, got, want in zip(names, grads(inputs, o, s, seed), ref_grads):
            assert rel_rmse(got, want) <= tol, (mode, name, rel_rmse(got, want))


def test_random_shapes_and_chunk_sizes_agree_with_the_recurrence():
    gen = torch.Generator().manual_seed(7)
    for trial in range(6):
        t = int(torch.randint(1, 90, (1,), generator=gen))
        dk, dv = (int(x) for x in torch.randint(1, 12, (2,), generator=gen))
        chunk = int(torch.randint(1, 40, (1,), generator=gen))
        beta_max = 2.0 if trial % 2 else 1.0  # negative eigenvalues are allowed up to beta = 2
        q, k, v, beta, s0 = (x.detach() for x in make_inputs((2, t, dk), dv, torch.float64, trial, beta_max=beta_max))
        o1, s1 = delta_rule(q, k, v, beta, key_norm="l2", initial_state=s0, chunk_size=chunk)
        o2, s2 = delta_rule(q, k, v, beta, key_norm="l2", initial_state=s0, mode="recurrent")
        assert rel_rmse(o1, o2) <= 1e-10 and rel_rmse(s1, s2) <= 1e-10, (t, dk, dv, chunk)


def test_agrees_token_by_token_with_matrix_memory_delta():
    gen = torch.Generator().manual_seed(3)
    q, k, v = torch.randn(4, 30, 5, generator=gen), torch.randn(4, 30, 5, generator=gen), torch.randn(4, 30, 3, generator=gen)
    phi = {"name": "dpfp", "nu": 2}
    o, s = delta_rule(q, k, v, 0.7, feature_map=phi, key_norm="l2", chunk_size=8)
    mem = kvmem.MatrixMemory(5, 3, feature_map=phi, rule="delta", beta=0.7, key_norm="l2")
    for t in range(30):
        mem.write(k[:, t : t + 1], v[:, t : t + 1])
        assert torch.allclose(mem.read(q[:, t : t + 1])[:, 0], o[:, t], atol=1e-5), t
    assert torch.allclose(mem.matrix, s, atol=1e-5)


def test_gated_special_cases():
    q, k, v, beta, s0 = (x.detach() for x in make_inputs((2, 3, 40, 6), 4, torch.float64, 5))
    # No decay is the plain delta rule.
    o1, s1 = gated_delta_rule(q, k, v, beta, 0.0, key_norm="l2", initial_state=s0, chunk_size=16)
    o2, s2 = delta_rule(q, k, v, beta, key_norm="l2", initial_state=s0, chunk_size=16)
    assert rel_rmse(o1, o2) <= 1e-12 and rel_rmse(s1, s2) <= 1e-12
    # A decay of exactly 0 (g = -inf) at token 17 erases everything before it.
    g = torch.full(q.shape[:-1], -0.1, dtype=torch.float64)
    g[..., 17] = -math.inf
    for mode in ("chunk", "recurrent"):
        o, s = gated_delta_rule(q, k, v, beta, g, key_norm="l2", initial_state=s0, mode=mode, chunk_size=16)
        o_tail, s_tail = gated_delta_rule(q[..., 17:, :], k[..., 17:, :], v[..., 17:, :], beta[..., 17:],
                                          g[..., 17:].clamp_min(-1e9), key_norm="l2", mode="recurrent")
        assert torch.isfinite(o).all()
        assert rel_rmse(o[..., 17:, :], o_tail) <= 1e-12 and rel_rmse(s, s_tail) <= 1e-12, mode


def test_beta_zero_skips_the_write_and_unit_keys_with_beta_one_replace():
    k = torch.eye(4).repeat(2, 1).unsqueeze(0)  # each key twice
    v = torch.arange(8.0).reshape(1, 8, 1)
    o, s = delta_rule(k, k, v, 1.0)
    assert s.flatten().tolist() == [4.0, 5.0, 6.0, 7.0]  # the later value replaced the earlier one
    beta = torch.tensor([[1.0, 1, 1, 1, 0, 0, 0, 0]])
    _, s = delta_rule(k, k, v, beta)
    assert s.flatten().tolist() == [0.0, 1.0, 2.0, 3.0]


def test_half_precision_runs_in_float32():
    q, k, v, beta, _ = (x.detach() for x in make_inputs((1, 2, 20, 8), 8, torch.float32, 2))
    o, s = delta_rule(q.bfloat16(), k.bfloat16(), v.bfloat16(), beta.bfloat16(), key_norm="l2", chunk_size=8)
    ref, _ = delta_rule(q.bfloat16().float(), k.bfloat16().float(), v.bfloat16().float(),
                        beta.bfloat16().float(), key_norm="l2", mode="recurrent")
    assert o.dtype == torch.bfloat16 and s.dtype == torch.float32
    assert rel_rmse(o, ref) <= 1e-2


def test_safe_numerics_raise_instead_of_nan():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, 20, 8, generator=gen) for _ in range(3))
    with pytest.raises(ValueError, match="key_norm='l2'"):  # unnormalised keys: |k|^2 ~ 8
        delta_rule(q, k, v, 1.0)
    with pytest.raises(ValueError, match=r"beta: expected write strengths in \[0, 2\]"):
        delta_rule(q, k, v, 2.5, key_norm="l2")
    with pytest.raises(ValueError, match="beta"):
        delta_rule(q, k, v, -0.1, key_norm="l2")
    with pytest.raises(ValueError, match="beta"):
        delta_rule(q, k, v, torch.full((1, 1, 20), math.nan), key_norm="l2")
    bad = k.clone()
    bad[0, 0, 3, 2] = math.nan
    with pytest.raises(ValueError, match="k: contains NaN"):
        delta_rule(q, bad, v, 0.5, key_norm="l2")
    with pytest.raises(ValueError, match="log_decay"):
        gated_delta_rule(q, k, v, 0.5, 0.1, key_norm="l2")
    with pytest.raises(ValueError, match="log_decay"):
        gated_delta_rule(q, k, v, 0.5, math.nan, key_norm="l2")
    unit = k / k.norm(dim=-1, keepdim=True)
    with pytest.raises(ValueError, match="overflowed"):  # finite inputs, |o| ~ 1e35 * 1e5 > float32 max
        delta_rule(q * 1e35, unit, v * 1e5, 0.5)
    # beta = 2 with unit keys is the edge of stability and still allowed (float32 rounding included).
    o, _ = delta_rule(q, k, v, 2.0, key_norm="l2")
    assert torch.isfinite(o).all()


def test_bad_arguments():
    x = torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match="mode"):
        delta_rule(x, x, x, 0.5, key_norm="l2", mode="fast")
    with pytest.raises(ValueError, match="chunk_size"):
        delta_rule(x, x, x, 0.5, key_norm="l2", chunk_size=0)
    with pytest.raises(ValueError, match="key_norm"):
        delta_rule(x, x, x, 0.5, key_norm="max")
    with pytest.raises(ValueError, match="q, k"):
        delta_rule(x[:, :4], x, x, 0.5, key_norm="l2")
    with pytest.raises(ValueError, match="v: expected shape"):
        delta_rule(x, x, x[:, :3], 0.5, key_norm="l2")
    with pytest.raises(ValueError, match="beta"):
        delta_rule(x, x, x, torch.rand(3, 5), key_norm="l2")
    with pytest.raises(ValueError, match="initial_state"):
        delta_rule(x, x, x, 0.5, key_norm="l2", initial_state=torch.zeros(2, 4, 3))
    with pytest.raises(TypeError, match="q, k, v"):
        delta_rule(x.double(), x, x, 0.5, key_norm="l2")
    with pytest.raises(TypeError, match="q"):
        delta_rule([[1.0]], x, x, 0.5)


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any aten op produces (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("op", ["delta", "gated", "linear"])
def test_chunked_forms_never_build_a_t_by_t_matrix(op):
    b, t, d, c = 2, 512, 8, 32
    q, k, v, beta, s0, g = make_inputs((b, t, d), d, torch.float32, 0, gated=True)

    def run(mode):
        if op == "linear":
            o, s = linear_attention(q, k, v, feature_map="relu", normalize=True, mode=mode, chunk_size=c)
        elif op == "gated":
            o, s = gated_delta_rule(q, k, v, beta, g, key_norm="l2", initial_state=s0, mode=mode, chunk_size=c)
        else:
            o, s = delta_rule(q, k, v, beta, key_norm="l2", initial_state=s0, mode=mode, chunk_size=c)
        (o.sum() + s.sum()).backward()

    with _LargestTensor() as chunked:
        run("chunk")
    with _LargestTensor() as parallel:
        run("parallel")
    # O(T (D + C)) per sequence for the chunked form; the parallel form holds [B, T, T] blocks.
    assert chunked.largest <= 2 * b * t * (d + c)
    assert parallel.largest >= b * t * t
