"""kvmem.ops layers: forms agree, state carries over, causality, gradients, the docs' training example."""

import re
from pathlib import Path

import pytest
import torch

from kvmem.ops import DeltaNet, LinearAttention, delta_rule

DOCS = Path(__file__).resolve().parent.parent / "docs"


def pair(cls, mode, **kwargs):
    """Two layers with the same weights, one in ``mode`` and one in the recurrent reference form."""
    torch.manual_seed(0)
    fast = cls(12, num_heads=3, mode=mode, chunk_size=8, **kwargs).double()
    ref = cls(12, num_heads=3, mode="recurrent", **kwargs).double()
    ref.load_state_dict(fast.state_dict())
    return fast, ref


LAYERS = [(DeltaNet, {}), (DeltaNet, {"gated": True}), (DeltaNet, {"allow_neg_eigval": True}),
          (LinearAttention, {}), (LinearAttention, {"feature_map": {"name": "dpfp", "nu": 1}, "key_norm": "sum"})]


@pytest.mark.parametrize("cls,kwargs", LAYERS)
def test_chunk_and_parallel_forms_match_the_recurrence_with_gradients(cls, kwargs):
    x = torch.randn(2, 21, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for mode in ("chunk", "parallel"):
        fast, ref = pair(cls, mode, **kwargs)
        (y, s), (y_ref, s_ref) = fast(x), ref(x)
        assert y.shape == x.shape and torch.allclose(y, y_ref, atol=1e-10) and torch.allclose(s, s_ref, atol=1e-10)
        (y.square().sum() + s.sum()).backward()
        (y_ref.square().sum() + s_ref.sum()).backward()
        for (name, p), p_ref in zip(fast.named_parameters(), ref.parameters()):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
            assert torch.allclose(p.grad, p_ref.grad, atol=1e-9), (mode, name)


@pytest.mark.parametrize("cls,kwargs", LAYERS[:2] + LAYERS[3:4])
def test_state_carries_over_and_outputs_are_causal(cls, kwargs):
    torch.manual_seed(0)
    layer = cls(8, num_heads=2, chunk_size=4, **kwargs)
    x = torch.randn(3, 30, 8)
    y, s = layer(x)
    y1, s1 = layer(x[:, :11])
    y2, s2 = layer(x[:, 11:], s1)
    assert torch.allclose(torch.cat([y1, y2], 1), y, atol=1e-5) and torch.allclose(s2, s, atol=1e-5)
    later = x.clone()
    later[:, 20:] += 1.0
    y_later, _ = layer(later)
    assert torch.equal(y_later[:, :20], y[:, :20]) and not torch.allclose(y_later[:, 20:], y[:, 20:])


def test_deltanet_is_the_delta_rule_on_its_projections():
    torch.manual_seed(0)
    layer = DeltaNet(6, num_heads=2)
    x = torch.randn(1, 9, 6)
    split = lambda y: y.view(1, 9, 2, 3).transpose(1, 2)
    q = split(torch.nn.functional.silu(layer.q_proj(x)))
    k = split(torch.nn.functional.silu(layer.k_proj(x)))
    beta = torch.sigmoid(layer.beta_proj(x)).transpose(1, 2)
    o, s = delta_rule(q, k, split(layer.v_proj(x)), beta, key_norm="l2", mode="recurrent")
    y, state = layer(x)
    assert torch.allclose(y, layer.o_proj(o.transpose(1, 2).reshape(1, 9, 6)), atol=1e-6)
    assert torch.allclose(state, s, atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="num_heads"):
        DeltaNet(10, num_heads=3)
    with pytest.raises(ValueError, match="mode"):
        DeltaNet(8, mode="fast")
    layer = LinearAttention(8, num_heads=2)
    with pytest.raises(ValueError, match=r"x: expected shape \[B, T, 8\]"):
        layer(torch.randn(2, 5, 7))
    with pytest.raises(TypeError, match="x"):
        layer([[0.0] * 8])
    with pytest.raises(ValueError, match="non-negative"):
        LinearAttention(8, feature_map="identity")(torch.randn(1, 4, 8))
    assert DeltaNet(8, head_dim=5).q_proj.out_features == 4 * 5


def test_docs_training_example_learns_to_recall():
    text = (DOCS / "ops.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/ops.md", "exec"), namespace)
    assert namespace["accuracy"] >= 0.9  # chance is 1/16
