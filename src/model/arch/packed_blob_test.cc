// The derived blob of a model's packed matrices: a later load maps what the first one packed
// (the same bytes and logits), and a blob that is corrupted, truncated, of another layout
// version, CPU target or source file is refused and rebuilt. The matrices are packed whether
// or not this CPU has the packed kernels (pack_without_kernel), so this runs on every machine.
#include "model/arch/packed_blob.h"

#include <unistd.h>

#include <cctype>
#include <cstring>
#include <filesystem>
#include <functional>
#include <span>
#include <fstream>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "model/arch/llama_context.h"
#include "model/arch/llama_model.h"
#include "model/arch/tiny_model.h"

namespace llmasos::arch {
namespace {

namespace fs = std::filesystem;

constexpr char kSource[] = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

class PackedBlobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("packed_blob_test." + std::to_string(::getpid()) + "." +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    model_path_ = (dir_ / "model.gguf").string();
    blob_path_ = (dir_ / "model.packed").string();
    TinyModelSpec spec;
    spec.type = cpu::TensorType::kQ4_1;
    spec.embd = 64;
    spec.ff = 96;
    spec.tied = true;  // token look-ups read the packed output matrix: logits depend on it
    auto bytes = MakeTinyModel(spec);
    ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
    std::ofstream(model_path_, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes->data()), static_cast<std::streamsize>(bytes->size()));
  }
  void TearDown() override { fs::remove_all(dir_); }

  LoadOptions Options() const {
    LoadOptions o;
    o.pool = &pool_;
    o.packed_blob_path = blob_path_;
    o.packed_blob_source = kSource;
    o.pack_without_kernel = true;
    o.target_for_test = "TEST_TARGET";
    return o;
  }

  std::unique_ptr<Model> Load(const LoadOptions& o) {
    auto m = Model::Load(model_path_, o);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? std::move(m).value() : nullptr;
  }

  std::vector<float> Logits(const Model& m) {
    auto ctx = Context::Create(m, pool_, ContextOptions{});
    EXPECT_TRUE(ctx.ok()) << ctx.status().ToString();
    const std::vector<TokenId> tokens = {1, 7, 42, 300, 5};
    std::vector<float> logits(tokens.size() * m.config().vocab_size);
    EXPECT_TRUE((*ctx)->Forward(tokens, /*all_logits=*/true, logits.data()).ok());
    return logits;
  }

  static void ExpectSamePackedBytes(const Model& a, const Model& b) {
    const auto ma = a.Matrices(), mb = b.Matrices();
    ASSERT_EQ(ma.size(), mb.size());
    size_t num_packed = 0;
    for (size_t i = 0; i < ma.size(); ++i) {
      ASSERT_EQ(ma[i]->packed == nullptr, mb[i]->packed == nullptr) << "matrix " << i;
      if (ma[i]->packed == nullptr) continue;
      ++num_packed;
      ASSERT_EQ(ma[i]->packed->bytes, mb[i]->packed->bytes);
      EXPECT_EQ(std::memcmp(ma[i]->packed->data, mb[i]->packed->data, ma[i]->packed->bytes), 0)
          << "matrix " << i;
    }
    EXPECT_GT(num_packed, 0u);
  }

  // Overwrites `n` bytes at `offset` of the blob (negative: from its end).
  void Scribble(int64_t offset, size_t n) {
    std::fstream f(blob_path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const int64_t size = f.tellg();
    f.seekp(offset < 0 ? size + offset : offset);
    const std::vector<char> junk(n, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(n));
  }

  fs::path dir_;
  std::string model_path_;
  std::string blob_path_;
  mutable ThreadPool pool_{2};
};

TEST_F(PackedBlobTest, LaterLoadMapsTheBlobWithTheSameBytesAndLogitsAsARepack) {
  std::unique_ptr<Model> first = Load(Options());
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->packed_from(), PackedFrom::kRepacked);
  first->WaitForPackedBlob();  // written in the background
  ASSERT_TRUE(fs::exists(blob_path_));
  std::unique_ptr<Model> second = Load(Options());
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->packed_from(), PackedFrom::kBlob);
  ExpectSamePackedBytes(*first, *second);
  EXPECT_EQ(Logits(*first), Logits(*second));
  // And a repack without any blob gives the same logits.
  LoadOptions plain = Options();
  plain.packed_blob_path.clear();
  std::unique_ptr<Model> fresh = Load(plain);
  EXPECT_EQ(fresh->packed_from(), PackedFrom::kRepacked);
  EXPECT_EQ(Logits(*fresh), Logits(*second));
}

TEST_F(PackedBlobTest, CorruptedOrTruncatedBlobIsRebuilt) {
  // The reference holds its own packed copy: the damage below is done in place, which a
  // mapping of the file would see (the store only ever replaces a blob by renaming).
  std::unique_ptr<Model> reference = Load(Options());
  ASSERT_EQ(reference->packed_from(), PackedFrom::kRepacked);
  reference->WaitForPackedBlob();
  const auto size = fs::file_size(blob_path_);
  struct Damage {
    const char* what;
    std::function<void()> apply;
  };
  const std::vector<Damage> damages = {
      {"payload byte", [&] { Scribble(-100, 1); }},
      {"table entry", [&] { Scribble(256 + 8, 4); }},
      {"magic", [&] { Scribble(0, 2); }},
      {"truncated", [&] { fs::resize_file(blob_path_, size - 4096); }},
      {"truncated header", [&] { fs::resize_file(blob_path_, 100); }},
      {"empty", [&] { fs::resize_file(blob_path_, 0); }},
  };
  ASSERT_EQ(Load(Options())->packed_from(), PackedFrom::kBlob);
  for (const Damage& d : damages) {
    d.apply();
    std::unique_ptr<Model> m = Load(Options());
    ASSERT_NE(m, nullptr) << d.what;
    EXPECT_EQ(m->packed_from(), PackedFrom::kRepacked) << d.what;
    m->WaitForPackedBlob();
    ExpectSamePackedBytes(*reference, *m);
    EXPECT_EQ(fs::file_size(blob_path_), size) << d.what << ": the blob is rewritten whole";
    EXPECT_EQ(Load(Options())->packed_from(), PackedFrom::kBlob) << d.what;
  }
}

TEST_F(PackedBlobTest, BlobOfAnotherLayoutTargetOrSourceIsRebuilt) {
  std::unique_ptr<Model> reference = Load(Options());
  ASSERT_NE(reference, nullptr);
  reference->WaitForPackedBlob();  // before this test writes the same path
  const std::vector<const cpu::MatView*> views = reference->Matrices();
  PackedBlobKey key{kSource, cpu::kPackedLayoutVersion, "TEST_TARGET"};
  ASSERT_TRUE(WritePackedBlob(blob_path_, key, views, pool_).ok());
  EXPECT_EQ(Load(Options())->packed_from(), PackedFrom::kBlob);  // the key as the loader's

  PackedBlobKey old_layout = key;
  old_layout.layout_version = cpu::kPackedLayoutVersion + 1;
  PackedBlobKey other_target = key;
  other_target.target = "AVX3_SPR";
  PackedBlobKey other_source = key;
  other_source.source_digest = "sha256:" + std::string(64, 'f');
  for (const PackedBlobKey& k : {old_layout, other_target, other_source}) {
    ASSERT_TRUE(WritePackedBlob(blob_path_, k, views, pool_).ok());
    std::vector<std::unique_ptr<cpu::PackedMatrix>> out;
    std::vector<bool> want;
    for (const cpu::MatView* v : views) want.push_back(v->packed != nullptr);
    auto mapped = MapPackedBlob(blob_path_, key, views, want, pool_, &out);
    EXPECT_EQ(mapped.status().code(), StatusCode::kDataLoss) << k.target << " " << k.layout_version;
    std::unique_ptr<Model> m = Load(Options());
    EXPECT_EQ(m->packed_from(), PackedFrom::kRepacked) << k.target << " " << k.layout_version;
    m->WaitForPackedBlob();
    ExpectSamePackedBytes(*reference, *m);
    EXPECT_EQ(Load(Options())->packed_from(), PackedFrom::kBlob);
  }
  // A load keyed by another target does not take this target's blob, and replaces it.
  LoadOptions other = Options();
  other.target_for_test = "OTHER_TARGET";
  EXPECT_EQ(Load(other)->packed_from(), PackedFrom::kRepacked);
  EXPECT_EQ(Load(other)->packed_from(), PackedFrom::kBlob);
  EXPECT_EQ(Load(Options())->packed_from(), PackedFrom::kRepacked);
}

TEST_F(PackedBlobTest, ConcurrentLoadsLeaveAValidBlob) {
  std::unique_ptr<Model> reference = Load(Options());
  reference->WaitForPackedBlob();  // else its writer may still rename (or leave) a temp file
  fs::remove(blob_path_);
  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<Model>> models(4);
  for (size_t i = 0; i < models.size(); ++i) {
    threads.emplace_back([&, i] {
      ThreadPool pool(1);
      LoadOptions o = Options();
      o.pool = &pool;
      auto m = Model::Load(model_path_, o);
      if (m.ok()) models[i] = std::move(m).value();
    });
  }
  for (std::thread& t : threads) t.join();
  for (const auto& m : models) {
    ASSERT_NE(m, nullptr);
    m->WaitForPackedBlob();
    ExpectSamePackedBytes(*reference, *m);
  }
  std::unique_ptr<Model> after = Load(Options());
  EXPECT_EQ(after->packed_from(), PackedFrom::kBlob);
  ExpectSamePackedBytes(*reference, *after);
  for (const auto& entry : fs::directory_iterator(dir_)) {
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path() << " left behind";
  }
}

// The blob is written in the background: a model dropped right after its load leaves it
// complete (the destructor waits), and views replaced after the load (an adapter merged into
// the weights) change nothing in it.
TEST_F(PackedBlobTest, BackgroundWriteIsCompleteWhateverHappensToTheModel) {
  std::unique_ptr<Model> reference = Load(Options());
  ASSERT_NE(reference, nullptr);
  reference.reset();
  std::unique_ptr<Model> mapped = Load(Options());
  ASSERT_EQ(mapped->packed_from(), PackedFrom::kBlob);

  fs::remove(blob_path_);
  std::unique_ptr<Model> merged = Load(Options());
  ASSERT_EQ(merged->packed_from(), PackedFrom::kRepacked);
  for (size_t i = 0; i < merged->config().num_layers; ++i) {
    LayerWeights& l = merged->mutable_layer(i);
    l.wq = merged->KeepMatrix(std::vector<float>(l.wq.rows * l.wq.cols, 0.5f), l.wq.rows, l.wq.cols);
  }
  merged->WaitForPackedBlob();
  merged->WaitForPackedBlob();  // again: nothing left to wait for
  std::unique_ptr<Model> after = Load(Options());
  ASSERT_EQ(after->packed_from(), PackedFrom::kBlob);
  ExpectSamePackedBytes(*mapped, *after);
}

TEST_F(PackedBlobTest, NothingToPackWritesNoBlob) {
  LoadOptions o = Options();
  o.repack = false;
  EXPECT_EQ(Load(o)->packed_from(), PackedFrom::kNone);
  EXPECT_FALSE(fs::exists(blob_path_));
}

// Resident bytes of this process's mappings of `path` (/proc/self/smaps).
size_t ResidentBytesOf(const std::string& path) {
  std::ifstream smaps("/proc/self/smaps");
  const std::string canonical = fs::canonical(path).string();
  std::string line;
  bool in_file = false;
  size_t kib = 0;
  while (std::getline(smaps, line)) {
    if (line.empty()) continue;
    if (std::isxdigit(static_cast<unsigned char>(line[0])) && line.find('-') != std::string::npos &&
        line.find(':') > line.find(' ')) {  // a mapping's header line: "begin-end perms ... path"
      in_file = line.size() >= canonical.size() &&
                line.compare(line.size() - canonical.size(), canonical.size(), canonical) == 0;
    } else if (in_file && line.rfind("Rss:", 0) == 0) {
      kib += std::stoul(line.substr(4));
    }
  }
  return kib * 1024;
}

// Every page of the file faulted in, as reading the metadata again can (volatile: the reads
// must happen although their values are not used).
void TouchEveryPage(const Model& m) {
  const std::span<const uint8_t> bytes = m.file().bytes();
  const volatile uint8_t* p = bytes.data();
  for (size_t i = 0; i < bytes.size(); i += 512) (void)p[i];
}

// Once the matrices are packed (here mapped from the blob), nothing reads the file's pages:
// the load releases them, ReleaseUnusedFilePages does again after a later read (the loader
// calls it once the tokenizer has read the metadata), and the logits do not change.
TEST_F(PackedBlobTest, ReleasingUnusedFilePagesDropsThemAndKeepsTheLogits) {
  Load(Options())->WaitForPackedBlob();
  std::unique_ptr<Model> m = Load(Options());
  ASSERT_EQ(m->packed_from(), PackedFrom::kBlob);
  // The load itself let go of what it read of the file (the metadata, the norms it copied)
  // before mapping the blob.
  EXPECT_LE(ResidentBytesOf(model_path_), 2 * static_cast<size_t>(::sysconf(_SC_PAGESIZE)));
  const std::vector<float> before = Logits(*m);
  TouchEveryPage(*m);
  const size_t resident = ResidentBytesOf(model_path_);
  const size_t file_bytes = m->file().size_bytes();
  ASSERT_GE(resident, file_bytes / 2);
  m->ReleaseUnusedFilePages();
  // At most a page at each end of the mapping stays (whole pages only are released).
  EXPECT_LE(ResidentBytesOf(model_path_), 2 * static_cast<size_t>(::sysconf(_SC_PAGESIZE)));
  EXPECT_EQ(Logits(*m), before);
}

// Matrices multiplied in the file's own layout keep their pages; the rest go. Matrices of
// several pages each (Q8_0 [512, 256] is 68 KiB), so that whole pages lie inside them.
TEST_F(PackedBlobTest, ReleasingUnusedFilePagesKeepsTheMatricesReadFromTheFile) {
  TinyModelSpec spec;
  spec.embd = 256;
  spec.ff = 512;
  auto bytes = MakeTinyModel(spec);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  std::ofstream(model_path_, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(bytes->data()), static_cast<std::streamsize>(bytes->size()));
  LoadOptions o = Options();
  o.repack = false;
  std::unique_ptr<Model> m = Load(o);
  const std::vector<float> before = Logits(*m);
  TouchEveryPage(*m);
  // The whole pages inside the matrices (and the unpacked token table) must stay.
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  size_t kept_pages = 0;
  std::vector<const cpu::MatView*> used = m->Matrices();
  used.push_back(&m->token_embd());
  for (const cpu::MatView* v : used) {
    const auto b = reinterpret_cast<uintptr_t>(v->data);
    const uintptr_t e = b + v->rows * v->row_bytes;
    if (e / page > (b + page - 1) / page) kept_pages += e / page - (b + page - 1) / page;
  }
  ASSERT_GT(kept_pages, 20u);
  const size_t resident = ResidentBytesOf(model_path_);
  m->ReleaseUnusedFilePages();
  const size_t after = ResidentBytesOf(model_path_);
  EXPECT_LT(after, resident);  // the metadata and the small tensors went
  EXPECT_GE(after, kept_pages * page);
  EXPECT_EQ(Logits(*m), before);
}

TEST(PackedBlobKindTest, NamesLayoutAndTargetInLowerCase) {
  EXPECT_EQ(PackedBlobKind({kSource, 3, "AVX3_ZEN4"}), "packed-v3-avx3_zen4");
}

}  // namespace
}  // namespace llmasos::arch
