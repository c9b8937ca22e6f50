// Finite-difference checks of every backward kernel: for a random upstream gradient dy, the
// analytic gradient of L(x) = sum(dy * f(x)) must match central differences of L computed in
// double from the float forward.
#include "model/train/backward_ops.h"

#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "drivers/cpu/tensor_type.h"

namespace llmasos::train {
namespace {

std::vector<float> Random(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// Central differences of loss() with respect to each element of x, compared with `analytic`.
void ExpectGradientMatches(std::vector<float>& x, const std::function<double()>& loss,
                           const std::vector<float>& analytic, double tol = 2e-2) {
  ASSERT_EQ(x.size(), analytic.size());
  double max_abs = 1e-3;
  for (float g : analytic) max_abs = std::max(max_abs, static_cast<double>(std::fabs(g)));
  for (size_t i = 0; i < x.size(); ++i) {
    const float saved = x[i];
    const float h = 1e-2f * std::max(1.0f, std::fabs(saved));
    x[i] = saved + h;
    const double up = loss();
    x[i] = saved - h;
    const double down = loss();
    x[i] = saved;
    const double numeric = (up - down) / (2.0 * h);
    EXPECT_NEAR(analytic[i], numeric, tol * max_abs) << "element " << i;
  }
}

double Weighted(const std::vector<float>& y, const std::vector<float>& dy) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += static_cast<double>(y[i]) * dy[i];
  return s;
}

// A random [rows, cols] matrix stored in `type` (QuantizeRow).
struct StoredMatrix {
  std::vector<uint8_t> bytes;
  cpu::MatView view;
};
StoredMatrix RandomMatrix(cpu::TensorType type, size_t rows, size_t cols, uint64_t seed) {
  const std::vector<float> wf = Random(rows * cols, seed);
  const size_t row_bytes = cpu::RowBytes(type, cols);
  StoredMatrix m;
  m.bytes.resize(rows * row_bytes);
  for (size_t r = 0; r < rows; ++r) cpu::QuantizeRow(type, &wf[r * cols], cols, &m.bytes[r * row_bytes]);
  m.view = cpu::MatView{type, m.bytes.data(), rows, cols, row_bytes};
  return m;
}

TEST(BackwardOpsTest, RmsNormGradientMatchesFiniteDifferences) {
  const size_t n = 24;
  std::vector<float> x = Random(n, 1), w = Random(n, 2), dy = Random(n, 3), y(n);
  auto loss = [&] {
    RmsNormForward(x.data(), w.data(), n, 1e-5f, y.data());
    return Weighted(y, dy);
  };
  const float inv = RmsNormForward(x.data(), w.data(), n, 1e-5f, y.data());
  std::vector<float> dx(n, 0.0f);
  RmsNormBackward(x.data(), w.data(), inv, dy.data(), n, dx.data());
  ExpectGradientMatches(x, loss, dx);
}

TEST(BackwardOpsTest, SwiGluGradientMatchesFiniteDifferences) {
  const size_t n = 20;
  std::vector<float> g = Random(n, 4, 2.0f), u = Random(n, 5), da = Random(n, 6), a(n);
  auto loss = [&] {
    cpu::SwiGlu(g.data(), u.data(), n, a.data());
    return Weighted(a, da);
  };
  std::vector<float> dg(n), du(n);
  cpu::SwiGluBackward(g.data(), u.data(), da.data(), n, dg.data(), du.data());
  ExpectGradientMatches(g, loss, dg);
  ExpectGradientMatches(u, loss, du);
}

TEST(BackwardOpsTest, RopeInverseIsTheTransposeForBothModes) {
  for (arch::RopeMode mode : {arch::RopeMode::kNormal, arch::RopeMode::kNeox}) {
    const size_t dims = 16, rope_dims = 12;
    std::vector<float> cos(rope_dims / 2), sin(rope_dims / 2);
    for (size_t i = 0; i < rope_dims / 2; ++i) {
      cos[i] = std::cos(0.3f * (i + 1));
      sin[i] = std::sin(0.3f * (i + 1));
    }
    std::vector<float> x = Random(dims, 7), dy = Random(dims, 8), y(dims);
    auto loss = [&] {
      y = x;
      Rope(mode, cos.data(), sin.data(), rope_dims, false, y.data());
      return Weighted(y, dy);
    };
    std::vector<float> dx = dy;
    Rope(mode, cos.data(), sin.data(), rope_dims, true, dx.data());
    ExpectGradientMatches(x, loss, dx);
    // And the inverse undoes the rotation.
    y = x;
    Rope(mode, cos.data(), sin.data(), rope_dims, false, y.data());
    Rope(mode, cos.data(), sin.data(), rope_dims, true, y.data());
    for (size_t i = 0; i < dims; ++i) EXPECT_NEAR(y[i], x[i], 1e-5f);
  }
}

void CheckAttentionGradient(size_t n) {
  AttentionShape s{n, 2, 4, 16, 8, 0.5f};
  std::vector<float> q = Random(n * 16, 9), k = Random(n * 8, 10), v = Random(n * 8, 11);
  std::vector<float> dout = Random(n * 16, 12), out(n * 16), scratch(AttentionScratchFloats(4, n));
  auto loss = [&] {
    for (size_t kvh = 0; kvh < 2; ++kvh) {
      AttentionForward(s, kvh, q.data(), k.data(), v.data(), out.data(), scratch.data());
    }
    return Weighted(out, dout);
  };
  std::vector<float> dq(q.size(), 0.0f), dk(k.size(), 0.0f), dv(v.size(), 0.0f);
  for (size_t kvh = 0; kvh < 2; ++kvh) {
    AttentionBackward(s, kvh, q.data(), k.data(), v.data(), dout.data(), dq.data(), dk.data(),
                      dv.data(), scratch.data());
  }
  ExpectGradientMatches(q, loss, dq);
  ExpectGradientMatches(k, loss, dk);
  ExpectGradientMatches(v, loss, dv);
}

TEST(BackwardOpsTest, AttentionGradientMatchesFiniteDifferences) {
  // 5 tokens (one block of query rows) and 70 (blocks of 32, 32 and 6), 2 KV heads, 2 query
  // heads per KV head, head_dim 4.
  for (size_t n : {5u, 70u}) {
    SCOPED_TRACE(n);
    CheckAttentionGradient(n);
  }
}

TEST(BackwardOpsTest, AttentionIsCausal) {
  AttentionShape s{4, 1, 4, 4, 4, 0.5f};
  std::vector<float> q = Random(16, 13), k = Random(16, 14), v = Random(16, 15);
  std::vector<float> out1(16), out2(16), scratch(AttentionScratchFloats(4, 4));
  AttentionForward(s, 0, q.data(), k.data(), v.data(), out1.data(), scratch.data());
  for (size_t d = 0; d < 4; ++d) v[3 * 4 + d] += 5.0f;  // the last token's value
  AttentionForward(s, 0, q.data(), k.data(), v.data(), out2.data(), scratch.data());
  for (size_t i = 0; i < 12; ++i) EXPECT_EQ(out1[i], out2[i]) << i;
  EXPECT_NE(out1[12], out2[12]);
}

TEST(BackwardOpsTest, CrossEntropyGradientMatchesFiniteDifferences) {
  const size_t vocab = 11, target = 3;
  std::vector<float> logits = Random(vocab, 16, 2.0f);
  auto loss = [&] {
    std::vector<float> copy = logits;
    return CrossEntropyForwardBackward(copy.data(), vocab, target, 1.0f);
  };
  std::vector<float> grad = logits;
  const double l = CrossEntropyForwardBackward(grad.data(), vocab, target, 1.0f);
  EXPECT_GT(l, 0.0);
  ExpectGradientMatches(logits, loss, grad);
  // The gradient of a softmax cross-entropy sums to zero.
  double sum = 0;
  for (float g : grad) sum += g;
  EXPECT_NEAR(sum, 0.0, 1e-5);
}

TEST(BackwardOpsTest, MatMulTransposedAddMatchesFiniteDifferencesForEveryWeightType) {
  const size_t rows = 40, cols = 64, tokens = 3;
  ThreadPool pool(2);
  for (cpu::TensorType type : {cpu::TensorType::kF32, cpu::TensorType::kF16, cpu::TensorType::kQ8_0,
                               cpu::TensorType::kQ4_1}) {
    const StoredMatrix stored = RandomMatrix(type, rows, cols, 17);
    const cpu::MatView& w = stored.view;
    std::vector<float> x = Random(tokens * cols, 18), dy = Random(tokens * rows, 19);
    std::vector<float> y(tokens * rows);
    auto loss = [&] {
      cpu::MatMulFloatActivations(w, x.data(), tokens, y.data(), pool);
      return Weighted(y, dy);
    };
    std::vector<float> dx(tokens * cols, 1.0f);  // adds: start from ones
    MatMulTransposedAdd(w, dy.data(), tokens, dx.data(), pool);
    for (float& g : dx) g -= 1.0f;
    ExpectGradientMatches(x, loss, dx);
  }
}

TEST(BackwardOpsTest, MatMulTiledMatchesTheDriversFloatMatMul) {
  ThreadPool pool(2);
  // Rows not a multiple of the tile, tokens not a multiple of the kernel's group.
  const size_t rows = 150, cols = 96, tokens = 7;
  for (cpu::TensorType type : {cpu::TensorType::kF32, cpu::TensorType::kQ8_0, cpu::TensorType::kQ4_1}) {
    const StoredMatrix stored = RandomMatrix(type, rows, cols, 21);
    const cpu::MatView& w = stored.view;
    std::vector<float> x = Random(tokens * cols, 22), want(tokens * rows), got(tokens * rows, 7.0f);
    cpu::MatMulFloatActivations(w, x.data(), tokens, want.data(), pool);
    MatMulTiled(w, x.data(), tokens, got.data(), pool);
    for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4f * (1.0f + std::fabs(want[i]))) << i;
  }
}

// Both products split W between threads (tiles of rows forward, slices of columns backward);
// each element's sum must run in the same order whatever the split, so the training pass
// gives the same bits on any thread count. A repacked W (its own dequantization path) gives
// the same bits as the file's layout.
TEST(BackwardOpsTest, TiledProductsGiveTheSameBitsOnAnyThreadCountAndLayout) {
  const size_t rows = 160, cols = 192, tokens = 13;
  for (cpu::TensorType type : {cpu::TensorType::kF32, cpu::TensorType::kQ8_0, cpu::TensorType::kQ4_1}) {
    const StoredMatrix stored = RandomMatrix(type, rows, cols, 31);
    const cpu::MatView& w = stored.view;
    const std::vector<float> x = Random(tokens * cols, 32), dy = Random(tokens * rows, 33);
    auto run = [&](const cpu::MatView& m, size_t threads) {
      ThreadPool pool(threads);
      std::vector<float> out(tokens * rows, 3.0f), dx(tokens * cols, 0.5f);
      MatMulTiled(m, x.data(), tokens, out.data(), pool);
      MatMulTransposedAdd(m, dy.data(), tokens, dx.data(), pool);
      out.insert(out.end(), dx.begin(), dx.end());
      return out;
    };
    const std::vector<float> one = run(w, 1);
    for (size_t threads : {2u, 3u, 5u}) EXPECT_EQ(run(w, threads), one) << cpu::Traits(type).name << " " << threads;
    if (cpu::HasPackedLayout(w)) {
      std::unique_ptr<cpu::PackedMatrix> packed = cpu::PackMatrixLayout(w);
      cpu::MatView repacked = w;
      repacked.packed = packed.get();
      EXPECT_EQ(run(repacked, 2), one) << cpu::Traits(type).name << " repacked";
    }
  }
}

}  // namespace
}  // namespace llmasos::train
