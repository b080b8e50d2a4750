"""kvmem.save / kvmem.load: bit-exact round trips and clear errors on damaged files."""

import json
import struct

import pytest
import torch

import kvmem


def filled_memories():
    gen = torch.Generator().manual_seed(0)
    k, v = torch.randn(3, 6, 4, generator=gen), torch.randn(3, 6, 2, generator=gen)
    slot = kvmem.SlotMemory(similarity={"name": "rbf", "gamma": 0.5}, separation={"name": "topk", "k": 2, "beta": 3.0},
                            capacity=4, overwrite="random", seed=5)
    slot.write(k, v)
    matrix = kvmem.MatrixMemory(4, 2, feature_map={"name": "dpfp", "nu": 2}, rule="delta", beta=0.5, key_norm="l2")
    matrix.write(k.double(), v.double())
    return [slot, matrix]


@pytest.mark.parametrize("index", [0, 1])
def test_round_trip_is_bit_exact(tmp_path, index):
    mem = filled_memories()[index]
    path = tmp_path / "mem.safetensors"
    kvmem.save(mem, path)
    back = kvmem.load(path)
    assert type(back) is type(mem) and back.config() == mem.config()
    state, back_state = mem.state_dict(), back.state_dict()
    assert state.keys() == back_state.keys()
    for name in state:
        assert state[name].dtype == back_state[name].dtype and torch.equal(state[name], back_state[name])
    q = torch.randn(3, 5, 4, dtype=state[next(iter(state))].dtype)
    assert torch.equal(mem.read(q), back.read(q))


def test_random_policy_continues_identically_after_load(tmp_path):
    mem = filled_memories()[0]
    kvmem.save(mem, tmp_path / "m.safetensors")
    back = kvmem.load(tmp_path / "m.safetensors")
    more_k, more_v = torch.randn(3, 5, 4), torch.randn(3, 5, 2)
    mem.write(more_k, more_v)
    back.write(more_k, more_v)
    assert torch.equal(mem.values, back.values)


def test_state_dict_round_trip_and_errors():
    mem = filled_memories()[1]
    other = kvmem.MatrixMemory(**mem.config())
    other.load_state_dict(mem.state_dict())
    assert torch.equal(other.matrix, mem.matrix)
    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({"matrix": mem.matrix})
    with pytest.raises(ValueError, match="unexpected"):
        other.load_state_dict({**mem.state_dict(), "extra": torch.zeros(1)})


def test_truncated_file_raises(tmp_path):
    path = tmp_path / "m.safetensors"
    kvmem.save(filled_memories()[0], path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="safetensors"):
        kvmem.load(path)


def test_tampered_tensor_raises(tmp_path):
    path = tmp_path / "m.safetensors"
    kvmem.save(filled_memories()[1], path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # flip bits inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="integrity"):
        kvmem.load(path)


def _rewrite_metadata(path, change):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    change(header["__metadata__"])
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


def test_wrong_version_and_foreign_files_raise(tmp_path):
    path = tmp_path / "m.safetensors"
    kvmem.save(filled_memories()[0], path)
    _rewrite_metadata(path, lambda m: m.update(format_version="99"))
    with pytest.raises(ValueError, match="version"):
        kvmem.load(path)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match="not a kvmem"):
        kvmem.load(tmp_path / "foreign.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(ValueError):
        kvmem.load(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError):
        kvmem.load(tmp_path / "absent.safetensors")
    with pytest.raises(TypeError, match="memory"):
        kvmem.save("not a memory", tmp_path / "x.safetensors")


def test_no_pickle_in_saved_file(tmp_path):
    path = tmp_path / "m.safetensors"
    kvmem.save(filled_memories()[0], path)
    # Pickle streams start with the PROTO opcode 0x80 and a protocol byte; safetensors starts
    # with a little-endian header length followed by JSON.
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert data[8:9] == b"{" and json.loads(data[8 : 8 + n])["__metadata__"]["format"] == "kvmem-memory"
