// A STREAM-style memory bandwidth test: how fast this machine streams memory with N threads.
// "read" XOR-reduces a buffer far larger than the last-level cache (what token generation
// does to the weights); "triad" is STREAM's a = b + s * c (counted as 3 arrays moved).
// Each figure is the best of --reps runs, in GB/s (1e9 bytes per second). Prints JSON.
//
//   stream [--threads N] [--mib M] [--reps R]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <emmintrin.h>  // SSE2: in every x86-64 CPU

namespace {

using Clock = std::chrono::steady_clock;

template <typename Fn>
double BestSeconds(int reps, size_t threads, const Fn& fn) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto start = Clock::now();
    std::vector<std::thread> pool;
    for (size_t t = 1; t < threads; ++t) pool.emplace_back(fn, t);
    fn(0);
    for (auto& th : pool) th.join();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count());
  }
  return best;
}

bool ParseSize(const char* text, size_t lo, size_t hi, size_t* out) {
  char* end = nullptr;
  unsigned long long v = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  size_t threads = 2, mib = 1024, reps = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    size_t* target = a == "--threads" ? &threads : a == "--mib" ? &mib : a == "--reps" ? &reps : nullptr;
    const size_t hi = a == "--threads" ? 256 : a == "--mib" ? 65536 : 1000;
    if (target == nullptr || i + 1 >= argc || !ParseSize(argv[++i], 1, hi, target)) {
      std::fprintf(stderr, "stream: bad or unknown argument '%s' (known: --threads 1..256, --mib 1..65536, --reps 1..1000)\n",
                   a.c_str());
      return 2;
    }
  }
  const size_t n = mib * 1048576 / sizeof(uint64_t);
  std::vector<uint64_t> buf(n);
  std::vector<float> a(n), b(n), c(n);
  // Touch everything first so page faults are not timed; each thread initialises its part.
  auto part = [&](size_t t) {
    size_t begin = n * t / threads, end = n * (t + 1) / threads;
    return std::pair<size_t, size_t>(begin, end);
  };
  BestSeconds(1, threads, [&](size_t t) {
    auto [lo, hi] = part(t);
    for (size_t i = lo; i < hi; ++i) {
      buf[i] = i * 0x9E3779B97F4A7C15ull;
      a[i] = 0;
      b[i] = 1;
      c[i] = 2;
    }
  });
  std::vector<uint64_t> sink(threads);
  const double read_s = BestSeconds(static_cast<int>(reps), threads, [&](size_t t) {
    auto [lo, hi] = part(t);
    // Four independent 128-bit accumulators keep the loads, not the XORs, the bottleneck.
    __m128i x0 = _mm_setzero_si128(), x1 = x0, x2 = x0, x3 = x0;
    size_t i = lo;
    for (; i + 8 <= hi; i += 8) {
      const __m128i* p = reinterpret_cast<const __m128i*>(&buf[i]);
      x0 = _mm_xor_si128(x0, _mm_loadu_si128(p));
      x1 = _mm_xor_si128(x1, _mm_loadu_si128(p + 1));
      x2 = _mm_xor_si128(x2, _mm_loadu_si128(p + 2));
      x3 = _mm_xor_si128(x3, _mm_loadu_si128(p + 3));
    }
    uint64_t lanes[2];
    _mm_storeu_si128(reinterpret_cast<__m128i*>(lanes),
                     _mm_xor_si128(_mm_xor_si128(x0, x1), _mm_xor_si128(x2, x3)));
    uint64_t x = lanes[0] ^ lanes[1];
    for (; i < hi; ++i) x ^= buf[i];
    sink[t] = x;
  });
  const float s = 3.0f;
  const double triad_s = BestSeconds(static_cast<int>(reps), threads, [&](size_t t) {
    auto [lo, hi] = part(t);
    for (size_t i = lo; i < hi; ++i) a[i] = b[i] + s * c[i];
  });
  uint64_t check = 0;
  for (uint64_t v : sink) check ^= v;
  const double bytes = static_cast<double>(n) * sizeof(uint64_t);
  std::printf("{\"threads\": %zu, \"buffer_mib\": %zu, \"read_gbps\": %.2f, \"triad_gbps\": %.2f, \"check\": %llu}\n",
              threads, mib, bytes / read_s / 1e9, 3.0 * n * sizeof(float) / triad_s / 1e9,
              static_cast<unsigned long long>(check & 1));
  return 0;
}
