"""Biological implementations of key-value memory (the paper's Sec. 5 and Box 1).

Each module builds a key-value memory out of mechanisms that neurons and synapses could
plausibly have, and keeps the memory contract of :mod:`kvmem.memory` where it can:

- :mod:`kvmem.bio.three_factor`: keys written by a non-Hebbian, three-factor overwrite
  rule, values by a Hebbian one (Tyulmankov, Fang, Vadaparty & Yang 2021), and the
  meta-learning of a parametrised local plasticity rule.
- :mod:`kvmem.bio.index`: a hippocampal index: sparse expanded keys (random expansion and
  k-winners-take-all) pointing at neocortical values; lesions, degraded values, amplified keys.
- :mod:`kvmem.bio.scaffold`: MESH / Vector-HaSH (Sharma, Chandra & Fiete 2022; Chandra et
  al. 2025): grid modules with coprime periods form a fixed scaffold of hippocampal states;
  sensory patterns are heteroassociated to it; path integration replays sequences.
- :mod:`kvmem.bio.tem`: TEM-style memory (Whittington, Warren & Behrens 2022): keys are
  path-integrated position codes, values are observations, causal softmax attention
  predicts the next observation in a grid world.
- :mod:`kvmem.bio.astrocyte`: neuron-astrocyte attention (Kozachkov, Kastanenka & Krotov
  2023), softmax attention in the limit of many hidden neurons.
"""

from . import astrocyte, index, scaffold, tem, three_factor  # noqa: F401
