"""GGUF interoperability with gguf-py, the llama.cpp project's own Python reader and writer and
so an implementation of the format independent of ours:

* files our writer makes (gguf_make_fuzz_seeds) read back in gguf-py with the same metadata,
  shapes, offsets and - through gguf-py's dequantizers - the same tensor values;
* files gguf-py writes parse in our reader (`llmasos inspect`).
"""
import os
import pathlib
import subprocess

import gguf
import numpy as np
import pytest

BUILD = pathlib.Path(os.environ.get("LLMASOS_BUILD_DIR", "build"))
SEED_TOOL = BUILD / "src" / "model" / "gguf" / "gguf_make_fuzz_seeds"
LLMASOS = BUILD / "llmasos"

# The values gguf_make_fuzz_seeds.cc writes.
RAMP = (np.arange(64, dtype=np.float32) * 0.25 - 8.0).astype(np.float32)


@pytest.fixture(scope="module")
def our_files(tmp_path_factory):
    assert SEED_TOOL.exists(), f"{SEED_TOOL} not built"
    out = tmp_path_factory.mktemp("ours")
    subprocess.run([str(SEED_TOOL), str(out)], check=True)
    return out


def test_metadata_of_every_type_reads_back_in_gguf_py(our_files):
    r = gguf.GGUFReader(our_files / "metadata_v3.gguf")
    values = {k: f.contents() for k, f in r.fields.items()}
    types = {k: f.types[0] for k, f in r.fields.items()}
    assert values["GGUF.version"] == 3
    expected = {
        "u8": (1, gguf.GGUFValueType.UINT8),
        "i8": (-1, gguf.GGUFValueType.INT8),
        "u16": (2, gguf.GGUFValueType.UINT16),
        "i16": (-2, gguf.GGUFValueType.INT16),
        "u32": (3, gguf.GGUFValueType.UINT32),
        "i32": (-3, gguf.GGUFValueType.INT32),
        "u64": (4, gguf.GGUFValueType.UINT64),
        "i64": (-4, gguf.GGUFValueType.INT64),
        "f32": (0.5, gguf.GGUFValueType.FLOAT32),
        "f64": (0.25, gguf.GGUFValueType.FLOAT64),
        "bool": (True, gguf.GGUFValueType.BOOL),
        "str": ("text", gguf.GGUFValueType.STRING),
        "strs": (["a", "bc", ""], gguf.GGUFValueType.ARRAY),
        "floats": ([-8.0, -7.75, -7.5], gguf.GGUFValueType.ARRAY),
        "ints": ([1, -2, 3], gguf.GGUFValueType.ARRAY),
    }
    for key, (value, vtype) in expected.items():
        assert values[key] == value, key
        assert types[key] == vtype, key
    assert len(r.tensors) == 0


# Largest error of one element, given the block's absolute maximum 8 and range 15.75.
TOLERANCE = {"F32": 0.0, "F16": 0.0, "BF16": 0.0, "Q8_0": 8 / 127, "Q4_0": 8 / 8 * 0.5 + 1e-6,
             "Q4_1": 15.75 / 15 * 0.5 + 1e-3}


def test_tensors_of_every_type_dequantize_in_gguf_py(our_files):
    r = gguf.GGUFReader(our_files / "tensors_v2.gguf")
    assert r.fields["GGUF.version"].contents() == 2
    assert r.fields["general.architecture"].contents() == "llama"
    names = [t.name for t in r.tensors]
    assert names == ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0"]
    for t in r.tensors:
        assert t.tensor_type.name == t.name
        assert t.shape.tolist() == [32, 2]
        assert t.data_offset % 32 == 0
        values = gguf.dequantize(t.data, t.tensor_type).reshape(-1)
        err = float(np.abs(values - RAMP).max())
        assert err <= TOLERANCE[t.name], (t.name, err)


@pytest.mark.parametrize("alignment", [1, 64])
def test_alignment_and_offsets_agree_with_gguf_py(our_files, alignment):
    r = gguf.GGUFReader(our_files / f"align{alignment}_v3.gguf")
    assert r.fields["general.alignment"].contents() == alignment
    assert r.alignment == alignment
    a, b = r.tensors
    assert a.data_offset % alignment == 0 and b.data_offset % alignment == 0
    assert np.array_equal(a.data, RAMP[:3])
    assert b.shape.tolist() == [2, 1, 1]
    assert np.array_equal(b.data.astype(np.float32).reshape(-1), RAMP[:2])


def test_gguf_py_files_parse_in_our_reader(tmp_path):
    assert LLMASOS.exists(), f"{LLMASOS} not built"
    path = tmp_path / "py.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint32("llama.block_count", 2)
    w.add_string("greeting", "h\u00e9llo")
    w.add_array("words", ["alpha", "beta"])
    w.add_float64("ratio", 1.25)
    w.add_tensor("x", np.arange(64, dtype=np.float32).reshape(2, 32))
    w.add_tensor("y", np.ones((3, 5), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = subprocess.run([str(LLMASOS), "inspect", str(path)], check=True, capture_output=True,
                         text=True).stdout
    assert '"llama"' in out
    assert "llama.block_count" in out and " 2\n" in out
    assert '"h\u00e9llo"' in out
    assert '2 items: ["alpha", "beta"]' in out
    assert "1.25" in out
    lines = {line.split()[1]: line.split() for line in out.splitlines()
             if line.startswith("  ") and line.split()[0].isdigit()}
    assert lines["x"][2:] == ["F32", "32", "x", "2", "0", "256"]
    assert lines["y"][2:] == ["F16", "5", "x", "3", "256", "30"]
