"""Every block format LLMasOS reads, against gguf-py's numpy dequantisers (gguf.quants), the
llama.cpp project's own independent implementation of the formats:

random blocks of each type (all bit patterns of the integer fields, finite scales of both
signs) are written with gguf-py's writer, dequantised by `gguf_dequantize` (the CPU driver's
DequantizeRow, what the forward pass reads) and compared value for value. Both sides evaluate
each formula in the same float32 operations, so they must agree exactly.
"""
import subprocess

import gguf
import numpy as np
import pytest

from oracle_inputs import require_built

Q = gguf.GGMLQuantizationType

# Byte offsets of each block's fp16 scales: d first, then dmin / m where the format has one.
HALF_SCALES = {
    Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q8_0: [0],
    Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208],
    Q.IQ4_NL: [0], Q.IQ4_XS: [0],
}


def random_blocks(qtype, rows, cols, rng):
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    nblocks = rows * cols // block_elems
    data = rng.integers(0, 256, size=(nblocks, block_bytes), dtype=np.uint8)
    for k, off in enumerate(HALF_SCALES[qtype]):
        scale = rng.uniform(1e-3, 0.1, size=nblocks).astype(np.float32)
        if k == 0:
            scale *= rng.choice([-1.0, 1.0], size=nblocks).astype(np.float32)
        scale[0] = 0.0  # a zero scale
        data[:, off:off + 2] = scale.astype(np.float16).view(np.uint8).reshape(nblocks, 2)
    return data.reshape(rows, -1)


@pytest.fixture(scope="module")
def random_file(tmp_path_factory):
    rng = np.random.default_rng(1234)
    path = tmp_path_factory.mktemp("quant") / "random_blocks.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    expected = {}
    for qtype in HALF_SCALES:
        block_elems = gguf.GGML_QUANT_SIZES[qtype][0]
        rows, cols = 3, 2 * max(block_elems, 128)
        data = random_blocks(qtype, rows, cols, rng)
        w.add_tensor(qtype.name, data, raw_dtype=qtype)
        expected[qtype.name] = gguf.quants.dequantize(data, qtype).reshape(-1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, expected


def dequant_tool():
    return require_built("src/model/gguf/gguf_dequantize")


def dequantize(path, names, out):
    subprocess.run([str(dequant_tool()), str(path), str(out), *names], check=True)
    return np.fromfile(out, dtype=np.float32)


@pytest.mark.parametrize("qtype", [q.name for q in HALF_SCALES])
def test_random_blocks_dequantize_like_gguf_py(random_file, qtype, tmp_path):
    path, expected = random_file
    ours = dequantize(path, [qtype], tmp_path / "out.f32")
    ref = expected[qtype]
    assert ours.shape == ref.shape
    assert np.isfinite(ref).all()
    mismatch = np.flatnonzero(ours != ref)
    assert mismatch.size == 0, (
        f"{qtype}: {mismatch.size} of {ref.size} values differ, first at {mismatch[0]}: "
        f"ours {ours[mismatch[0]]} gguf-py {ref[mismatch[0]]}")
    # Not vacuous: the blocks hold a spread of values.
    assert np.unique(ref).size > ref.size // 8


def test_tool_refuses_an_unknown_tensor(random_file, tmp_path):
    path, _ = random_file
    r = subprocess.run([str(dequant_tool()), str(path), str(tmp_path / "o"), "nope"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "no tensor 'nope'" in r.stderr
