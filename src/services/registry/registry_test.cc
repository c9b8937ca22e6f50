#include "services/registry/registry.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <future>
#include <map>
#include <thread>

#include "model/arch/tiny_model.h"
#include "services/registry/test_home.h"

namespace llmasos::registry {
namespace {

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = Registry::Open(home_.path() + "/home");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    registry_ = std::move(r).value();
  }

  // A tiny model file; different seeds or types give different content.
  std::string MakeModel(const std::string& file, uint64_t seed,
                        cpu::TensorType type = cpu::TensorType::kQ8_0) {
    arch::TinyModelSpec spec;
    spec.seed = seed;
    spec.type = type;
    auto bytes = arch::MakeTinyModel(spec);
    EXPECT_TRUE(bytes.ok()) << bytes.status().ToString();
    std::string path = home_.path() + "/" + file;
    WriteBytes(path, *bytes);
    return path;
  }

  Manifest ImportOrDie(const std::string& file, const std::string& name,
                       std::optional<std::string> version = std::nullopt, std::string notes = "") {
    ImportOptions o;
    o.file = file;
    o.name = name;
    o.version = std::move(version);
    o.notes = std::move(notes);
    auto m = registry_->Import(o);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? *m : Manifest{};
  }

  std::string VersionOf(const std::string& ref) {
    auto r = registry_->Resolve(ref);
    return r.ok() ? r->manifest.version : "error: " + r.status().ToString();
  }

  size_t NumBlobs() { return DirEntries(home_.path() + "/home/blobs").size(); }

  TempHome home_;
  std::unique_ptr<Registry> registry_;
};

TEST_F(RegistryTest, AFineTunesTrainingLineageIsStoredAndComparedButOthersHaveNone) {
  ImportOptions o;
  o.file = MakeModel("a.gguf", 1, cpu::TensorType::kQ4_1);
  o.name = "tuned";
  o.command = "finetune";
  o.training = {"base@1.0.0", "sha256:" + std::string(64, 'a'), "sha256:" + std::string(64, 'b'),
                "/data/train.jsonl", R"({"rank":8,"final_eval_loss":1.5})"};
  ASSERT_TRUE(registry_->Import(o).ok());
  auto shown = registry_->Show("tuned");
  ASSERT_TRUE(shown.ok());
  const TrainingLineage& t = shown->manifest.lineage.training;
  EXPECT_EQ(t.base, "base@1.0.0");
  EXPECT_EQ(t.data_digest, "sha256:" + std::string(64, 'b'));
  EXPECT_EQ(nlohmann::json::parse(t.parameters)["rank"], 8);
  EXPECT_TRUE(ManifestToJson(shown->manifest)["lineage"]["training"]["parameters"].is_object());
  Manifest plain = ImportOrDie(MakeModel("b.gguf", 2, cpu::TensorType::kQ4_1), "plain");
  EXPECT_TRUE(plain.lineage.training.base.empty());
  EXPECT_FALSE(ManifestToJson(plain)["lineage"].contains("training"));
}

TEST_F(RegistryTest, ImportRecordsTheModelFactsAndLineage) {
  std::string file = MakeModel("a.gguf", 1, cpu::TensorType::kQ4_1);
  Manifest m = ImportOrDie(file, "tiny", "1.0.0", "first");
  EXPECT_EQ(m.name, "tiny");
  EXPECT_EQ(m.version, "1.0.0");
  EXPECT_EQ(m.format, "gguf");
  EXPECT_EQ(m.architecture, "llama");
  EXPECT_EQ(m.context_length, 256u);
  EXPECT_EQ(m.size_bytes, std::filesystem::file_size(file));
  EXPECT_GT(m.parameter_count, 0u);
  EXPECT_FALSE(m.quantization.empty());
  EXPECT_EQ(m.lineage.source, file);
  EXPECT_EQ(m.lineage.command, "import");
  EXPECT_EQ(m.lineage.notes, "first");
  EXPECT_EQ(m.lineage.parent_version, "");
  EXPECT_EQ(m.lineage.created.size(), 20u);  // 2026-11-23T14:05:09Z
  auto hashed = HashFile(file);
  ASSERT_TRUE(hashed.ok());
  EXPECT_EQ(m.digest, hashed->digest);

  auto resolved = registry_->Resolve("tiny");
  ASSERT_TRUE(resolved.ok()) << resolved.status().ToString();
  EXPECT_EQ(resolved->blob_path, home_.path() + "/home/blobs/sha256-" + m.digest.substr(7));
  EXPECT_TRUE(registry_->Verify("tiny").ok());
}

TEST_F(RegistryTest, QuantizationComesFromTheWeightTypesWithoutFileType) {
  // The tiny model writer sets no general.file_type, so the dominant 2-D type decides.
  Manifest q4 = ImportOrDie(MakeModel("q4.gguf", 1, cpu::TensorType::kQ4_1), "q4");
  Manifest q8 = ImportOrDie(MakeModel("q8.gguf", 1, cpu::TensorType::kQ8_0), "q8");
  Manifest f16 = ImportOrDie(MakeModel("f16.gguf", 1, cpu::TensorType::kF16), "f16");
  EXPECT_EQ(q4.quantization, "Q4_1");
  EXPECT_EQ(q8.quantization, "Q8_0");
  EXPECT_EQ(f16.quantization, "F16");
  EXPECT_EQ(q4.parameter_count, q8.parameter_count);
  EXPECT_EQ(FileTypeName(3), "Q4_1");
  EXPECT_EQ(FileTypeName(15), "Q4_K_M");
  EXPECT_EQ(FileTypeName(1000), "");
}

TEST_F(RegistryTest, VersionsDefaultAndLatestMovesToTheNewestImport) {
  std::string a = MakeModel("a.gguf", 1), b = MakeModel("b.gguf", 2), c = MakeModel("c.gguf", 3);
  EXPECT_EQ(ImportOrDie(a, "m").version, "1.0.0");
  Manifest second = ImportOrDie(b, "m");
  EXPECT_EQ(second.version, "1.1.0");
  EXPECT_EQ(second.lineage.parent_version, "1.0.0");
  EXPECT_EQ(VersionOf("m"), "1.1.0");
  EXPECT_EQ(ImportOrDie(c, "m", "2.0.0-rc.1").version, "2.0.0-rc.1");
  EXPECT_EQ(VersionOf("m:latest"), "2.0.0-rc.1");
  // Without moving latest.
  ImportOptions o;
  o.file = a;
  o.name = "m";
  o.version = "0.9.0";
  o.move_latest = false;
  o.tags = {"old"};
  ASSERT_TRUE(registry_->Import(o).ok());
  EXPECT_EQ(VersionOf("m"), "2.0.0-rc.1");
  EXPECT_EQ(VersionOf("m:old"), "0.9.0");
}

TEST_F(RegistryTest, ResolvesEveryReferenceForm) {
  std::string f = MakeModel("a.gguf", 1);
  for (const char* v : {"0.9.0", "1.0.0", "1.2.0", "1.2.5", "1.3.0-rc.1", "1.10.0", "2.0.0"}) {
    ImportOrDie(f, "m", v);
  }
  ASSERT_TRUE(registry_->Tag("m@1.2.0", "stable").ok());
  const std::pair<const char*, const char*> rows[] = {
      {"m", "2.0.0"},
      {"m:latest", "2.0.0"},
      {"m:stable", "1.2.0"},
      {"m@1.2.5", "1.2.5"},
      {"m@1.2.5+build", "1.2.5"},
      {"m@^1.0", "1.10.0"},
      {"m@~1.2.0", "1.2.5"},
      {"m@>=1.0 <2.0", "1.10.0"},
      {"m@\">=1.0 <1.2\"", "1.0.0"},
      {"m@*", "2.0.0"},
      {"m@1.3.0-rc.1", "1.3.0-rc.1"},
      {"m@^0.9", "0.9.0"},
  };
  for (auto [ref, want] : rows) EXPECT_EQ(VersionOf(ref), want) << ref;

  const std::pair<const char*, const char*> missing[] = {
      {"m@3.0.0", "has no version 3.0.0"},
      {"m@^3", "no version of 'm' matches '^3'"},
      {"m:nightly", "has no tag 'nightly' (tags: latest, stable)"},
      {"other", "no model named 'other'"},
  };
  for (auto [ref, problem] : missing) {
    auto r = registry_->Resolve(ref);
    ASSERT_FALSE(r.ok()) << ref;
    EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
    EXPECT_NE(r.status().message().find(problem), std::string::npos) << r.status().message();
  }
  EXPECT_EQ(registry_->Resolve("../m").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RegistryTest, RefusesDuplicateVersionsAndBadInputBeforeTouchingTheStore) {
  std::string f = MakeModel("a.gguf", 1);
  ImportOrDie(f, "m", "1.0.0");
  size_t blobs = NumBlobs();
  ImportOptions o;
  o.file = MakeModel("b.gguf", 2);
  o.name = "m";
  o.version = "1.0.0+other";  // same precedence
  auto dup = registry_->Import(o);
  EXPECT_EQ(dup.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(dup.status().message().find("already exists"), std::string::npos);
  for (const char* bad_name : {"../evil", "/abs", "a/b/c", "Bad", "x\ny", ".dot"}) {
    o.name = bad_name;
    o.version = std::nullopt;
    EXPECT_EQ(registry_->Import(o).status().code(), StatusCode::kInvalidArgument) << bad_name;
  }
  o.name = "m";
  o.version = "1.0";
  EXPECT_EQ(registry_->Import(o).status().code(), StatusCode::kInvalidArgument);
  o.version = "3.0.0";
  o.tags = {"../x"};
  EXPECT_EQ(registry_->Import(o).status().code(), StatusCode::kInvalidArgument);
  o.tags.clear();
  o.file = home_.path() + "/missing.gguf";
  EXPECT_EQ(registry_->Import(o).status().code(), StatusCode::kNotFound);
  // Not a GGUF file: refused, and nothing is left in the store.
  o.file = home_.path() + "/junk.bin";
  WriteBytes(o.file, std::vector<uint8_t>(1000, 0x41));
  auto junk = registry_->Import(o);
  EXPECT_EQ(junk.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(junk.status().message().find("junk.bin"), std::string::npos);
  EXPECT_EQ(NumBlobs(), blobs);
}

TEST_F(RegistryTest, RemoveRefusesLoadedModelsAndCollectsUnreferencedBlobs) {
  std::string a = MakeModel("a.gguf", 1), b = MakeModel("b.gguf", 2);
  Manifest v1 = ImportOrDie(a, "m", "1.0.0");
  Manifest v2 = ImportOrDie(b, "m", "2.0.0");
  ASSERT_TRUE(registry_->Copy("m@1.0.0", "n").ok());  // shares v1's blob
  EXPECT_EQ(NumBlobs(), 2u);

  ASSERT_TRUE(registry_->SetLoaded("m@2.0.0", true).ok());
  auto refused = registry_->Remove("m", false);
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("--force"), std::string::npos);
  ASSERT_TRUE(registry_->ClearLoadedMarks().ok());
  EXPECT_TRUE(registry_->Show("m")->loaded == false);
  ASSERT_TRUE(registry_->SetLoaded("m@2.0.0", true).ok());
  EXPECT_TRUE(registry_->Show("m")->loaded);
  auto forced = registry_->Remove("m", true);
  ASSERT_TRUE(forced.ok()) << forced.status().ToString();
  EXPECT_EQ(forced->version, "2.0.0");
  EXPECT_EQ(forced->blobs_removed, std::vector<std::string>{v2.digest});
  EXPECT_EQ(NumBlobs(), 1u);
  EXPECT_EQ(VersionOf("m"), "1.0.0");  // latest moved to what remains

  auto kept = registry_->Remove("m@1.0.0", false);
  ASSERT_TRUE(kept.ok());
  EXPECT_TRUE(kept->blobs_removed.empty());  // "n" still uses it
  EXPECT_EQ(NumBlobs(), 1u);
  EXPECT_EQ(registry_->Resolve("m").status().code(), StatusCode::kNotFound);
  auto last = registry_->Remove("n", false);
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->blobs_removed, std::vector<std::string>{v1.digest});
  EXPECT_EQ(NumBlobs(), 0u);
  auto list = registry_->List();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

// A model's packed weights (arch/packed_blob.h) are a derived blob next to its GGUF blob: they
// go when the blob goes (the last version using it is removed, or recovery finds no source).
TEST_F(RegistryTest, DerivedBlobsGoWithTheirSourceBlob) {
  Manifest v1 = ImportOrDie(MakeModel("a.gguf", 1, cpu::TensorType::kQ4_1), "m", "1.0.0");
  ASSERT_TRUE(registry_->Copy("m@1.0.0", "n").ok());  // shares the blob
  auto resolved = registry_->Resolve("m");
  ASSERT_TRUE(resolved.ok());
  auto derived = BlobStore::DerivedPathOf(resolved->blob_path, "packed-v1-test_target");
  ASSERT_TRUE(derived.ok());
  EXPECT_EQ(*derived, registry_->blobs().DerivedPathFor(v1.digest, "packed-v1-test_target").value());
  arch::LoadOptions load;
  load.packed_blob_path = *derived;
  load.packed_blob_source = v1.digest;
  load.pack_without_kernel = true;
  load.target_for_test = "TEST_TARGET";
  ASSERT_TRUE(arch::Model::Load(resolved->blob_path, load).ok());
  ASSERT_TRUE(std::filesystem::exists(*derived));
  auto listed = registry_->blobs().ListDerived();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].digest, v1.digest);
  EXPECT_EQ((*listed)[0].kind, "packed-v1-test_target");
  EXPECT_EQ((*listed)[0].size_bytes, std::filesystem::file_size(*derived));
  EXPECT_EQ(registry_->blobs().List()->size(), 1u);  // not a blob of its own

  ASSERT_TRUE(registry_->Remove("m", false).ok());
  EXPECT_TRUE(std::filesystem::exists(*derived)) << "'n' still uses the blob";
  ASSERT_TRUE(registry_->Remove("n", false).ok());
  EXPECT_FALSE(std::filesystem::exists(*derived));
  EXPECT_EQ(NumBlobs(), 0u);

  // Recovery removes a derived blob (and a writer's leftover temp file) whose source is gone,
  // and keeps those of present blobs.
  Manifest kept = ImportOrDie(MakeModel("b.gguf", 2), "k");
  const std::string kept_derived = registry_->blobs().DerivedPathFor(kept.digest, "packed-v1-x").value();
  WriteBytes(kept_derived, {1, 2, 3});
  WriteBytes(*derived, {4, 5, 6});
  WriteBytes(*derived + ".tmp.123.0", {7});
  registry_.reset();
  RecoveryReport report;
  auto reopened = Registry::Open(home_.path() + "/home", {}, &report);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(report.derived_blobs_removed, 2u);
  EXPECT_FALSE(std::filesystem::exists(*derived));
  EXPECT_FALSE(std::filesystem::exists(*derived + ".tmp.123.0"));
  EXPECT_TRUE(std::filesystem::exists(kept_derived));

  for (const char* bad : {"", "Packed", "../x", "a.b", "a/b"}) {
    EXPECT_EQ(BlobStore::DerivedPathOf(resolved->blob_path, bad).status().code(),
              StatusCode::kInvalidArgument) << bad;
  }
}

TEST_F(RegistryTest, CopyTagHistoryDiffAndRollback) {
  std::string a = MakeModel("a.gguf", 1), b = MakeModel("b.gguf", 2, cpu::TensorType::kQ4_1);
  ImportOrDie(a, "m", "1.0.0", "base");
  ImportOrDie(a, "m", "1.1.0", "same bytes");
  ImportOrDie(b, "m", "2.0.0", "requantized");

  auto copy = registry_->Copy("m@1.1.0", "team/m:prod");
  ASSERT_TRUE(copy.ok()) << copy.status().ToString();
  EXPECT_EQ(copy->version, "1.1.0");
  EXPECT_EQ(copy->lineage.source, "m@1.1.0");
  EXPECT_EQ(copy->lineage.command, "cp");
  EXPECT_EQ(VersionOf("team/m:prod"), "1.1.0");
  EXPECT_EQ(VersionOf("team/m"), "1.1.0");
  EXPECT_EQ(registry_->Copy("m", "x@^1").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_->Copy("m@1.1.0", "team/m").status().code(), StatusCode::kFailedPrecondition);

  ASSERT_TRUE(registry_->Tag("m@1.0.0", "stable").ok());
  ASSERT_TRUE(registry_->Tag("m@1.1.0", "stable").ok());  // moves
  EXPECT_EQ(VersionOf("m:stable"), "1.1.0");
  EXPECT_EQ(registry_->Tag("m", "Bad Tag").status().code(), StatusCode::kInvalidArgument);

  auto history = registry_->History("m");
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 3u);
  EXPECT_EQ((*history)[0].manifest.version, "2.0.0");
  EXPECT_EQ((*history)[0].tags, std::vector<std::string>{"latest"});
  EXPECT_EQ((*history)[1].manifest.version, "1.1.0");
  EXPECT_EQ((*history)[1].tags, std::vector<std::string>{"stable"});
  EXPECT_EQ((*history)[2].manifest.lineage.notes, "base");
  EXPECT_EQ((*history)[0].manifest.lineage.parent_version, "1.1.0");

  auto same = registry_->Diff("m@1.0.0", "m@1.1.0");
  ASSERT_TRUE(same.ok());
  std::map<std::string, FieldDiff> by_field;
  for (const FieldDiff& d : *same) by_field[d.field] = d;
  EXPECT_EQ(by_field.count("digest"), 0u);  // same bytes
  ASSERT_EQ(by_field.count("version"), 1u);
  EXPECT_EQ(by_field["version"].a, "1.0.0");
  EXPECT_EQ(by_field["version"].b, "1.1.0");
  EXPECT_EQ(by_field["lineage.notes"].b, "same bytes");
  auto changed = registry_->Diff("m@1.1.0", "m:latest");
  ASSERT_TRUE(changed.ok());
  by_field.clear();
  for (const FieldDiff& d : *changed) by_field[d.field] = d;
  EXPECT_EQ(by_field.count("digest"), 1u);
  EXPECT_EQ(by_field["quantization"].a, "Q8_0");
  EXPECT_EQ(by_field["quantization"].b, "Q4_1");
  EXPECT_EQ(by_field.count("architecture"), 0u);

  auto back = registry_->Rollback("m", std::nullopt);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->version, "1.1.0");
  EXPECT_EQ(VersionOf("m"), "1.1.0");
  ASSERT_TRUE(registry_->Rollback("m", std::nullopt).ok());
  EXPECT_EQ(VersionOf("m"), "1.0.0");
  auto none = registry_->Rollback("m", std::nullopt);
  EXPECT_EQ(none.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(none.status().message().find("no earlier release"), std::string::npos);
  ASSERT_TRUE(registry_->Rollback("m", std::string("2.0.0")).ok());
  EXPECT_EQ(VersionOf("m"), "2.0.0");
  EXPECT_EQ(registry_->Rollback("m", std::string("9.9.9")).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(registry_->Rollback("nope", std::nullopt).status().code(), StatusCode::kNotFound);
}

TEST_F(RegistryTest, ResolveAndVerifyDetectDamagedBlobs) {
  Manifest m = ImportOrDie(MakeModel("a.gguf", 1), "m");
  auto resolved = registry_->Resolve("m");
  ASSERT_TRUE(resolved.ok());
  // Same size, one byte changed: only a re-hash notices.
  std::vector<uint8_t> bytes(m.size_bytes);
  {
    std::ifstream in(resolved->blob_path, std::ios::binary);
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  bytes[bytes.size() / 2] ^= 0xff;
  WriteBytes(resolved->blob_path, bytes);
  EXPECT_TRUE(registry_->Resolve("m").ok());
  Status s = registry_->Verify("m");
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("corrupt"), std::string::npos) << s.message();
  // Truncated: Resolve notices the size.
  bytes.resize(bytes.size() - 1);
  WriteBytes(resolved->blob_path, bytes);
  EXPECT_EQ(registry_->Resolve("m").status().code(), StatusCode::kDataLoss);
  // Missing.
  std::filesystem::remove(resolved->blob_path);
  EXPECT_EQ(registry_->Resolve("m").status().code(), StatusCode::kDataLoss);
}

TEST_F(RegistryTest, RecoveryAfterACrashBetweenBlobWriteAndRegistryUpdate) {
  Manifest kept = ImportOrDie(MakeModel("a.gguf", 1), "m");
  // The crash: a blob was renamed into place but its version row never committed, and
  // another writer died before renaming its temp file.
  std::string orphan_src = MakeModel("b.gguf", 2);
  auto orphan = registry_->blobs().ImportFile(orphan_src, std::nullopt);
  ASSERT_TRUE(orphan.ok());
  WriteBytes(home_.path() + "/home/blobs/.tmp-0123456789abcdef", {1, 2, 3});
  registry_.reset();
  EXPECT_EQ(NumBlobs(), 3u);

  RecoveryReport report;
  auto reopened = Registry::Open(home_.path() + "/home", {}, &report);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(report.temp_files_removed, 1u);
  EXPECT_EQ(report.orphan_blobs_removed, std::vector<std::string>{orphan->digest});
  EXPECT_EQ(DirEntries(home_.path() + "/home/blobs"),
            std::vector<std::string>{"sha256-" + kept.digest.substr(7)});
  EXPECT_TRUE((*reopened)->Verify("m").ok());
  // The next import of the same content works normally.
  ImportOptions o;
  o.file = orphan_src;
  o.name = "m";
  ASSERT_TRUE((*reopened)->Import(o).ok());
  EXPECT_EQ(NumBlobs(), 2u);
}

TEST_F(RegistryTest, ConcurrentImportsAndRecoveryFromSeveralOpenersStayConsistent) {
  // Separate Registry objects stand in for separate processes: they share only the files,
  // so the flock and SQLite are what serialize them. Recovery runs concurrently with imports
  // and must never delete a blob an import is about to record.
  std::string shared = MakeModel("shared.gguf", 7);
  std::string unique[2] = {MakeModel("u0.gguf", 8), MakeModel("u1.gguf", 9)};
  constexpr int kPerThread = 4;
  std::vector<std::thread> threads;
  std::vector<Status> errors(3);
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      auto r = Registry::Open(home_.path() + "/home");
      if (!r.ok()) {
        errors[t] = r.status();
        return;
      }
      for (int i = 0; i < kPerThread; ++i) {
        ImportOptions o;
        o.file = i % 2 == 0 ? shared : unique[t];
        o.name = "c" + std::to_string(t);
        auto m = (*r)->Import(o);
        if (!m.ok()) errors[t] = m.status();
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < 6; ++i) {
      auto r = Registry::Open(home_.path() + "/home");
      if (!r.ok()) errors[2] = r.status();
    }
  });
  for (auto& th : threads) th.join();
  for (const Status& e : errors) ASSERT_TRUE(e.ok()) << e.ToString();
  auto list = registry_->List();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 2u * kPerThread);
  EXPECT_EQ(NumBlobs(), 3u);  // shared + one unique per thread
  for (const ModelEntry& e : *list) {
    EXPECT_TRUE(registry_->Verify(e.manifest.name + "@" + e.manifest.version).ok()) << e.manifest.name;
  }
  EXPECT_EQ(VersionOf("c0"), "1.3.0");
  EXPECT_EQ(VersionOf("c1"), "1.3.0");
}

TEST_F(RegistryTest, RegisterBlobRecordsAVerifiedDownload) {
  std::string f = MakeModel("a.gguf", 1);
  auto blob = registry_->blobs().ImportFile(f, std::nullopt);
  ASSERT_TRUE(blob.ok());
  ImportOptions o;
  o.name = "pulled";
  o.command = "pull";
  o.source = "https://example.com/a.gguf";
  auto m = registry_->RegisterBlob(*blob, o);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->lineage.source, "https://example.com/a.gguf");
  EXPECT_EQ(m->architecture, "llama");
  BlobInfo wrong = *blob;
  wrong.size_bytes += 1;
  o.version = "2.0.0";
  EXPECT_EQ(registry_->RegisterBlob(wrong, o).status().code(), StatusCode::kDataLoss);
  wrong = {"sha256:../../x", blob->size_bytes};
  EXPECT_EQ(registry_->RegisterBlob(wrong, o).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RegistryTest, AdoptFileMovesADownloadIntoTheStoreOnlyWhenItCanBeRecorded) {
  std::string f = MakeModel("download.part", 1);
  auto info = HashFile(f);
  ASSERT_TRUE(info.ok());
  ImportOptions o;
  o.name = "pulled";
  o.command = "pull";
  o.source = "https://example.com/a.gguf";
  bool hook_ran = false;
  o.after_blob_stored = [&] {
    hook_ran = true;
    EXPECT_TRUE(registry_->blobs().Contains(info->digest));  // in place before the row
  };
  auto m = registry_->AdoptFile(f, *info, o);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(hook_ran);
  EXPECT_FALSE(std::filesystem::exists(f));
  EXPECT_EQ(m->digest, info->digest);
  EXPECT_EQ(m->lineage.command, "pull");
  EXPECT_TRUE(registry_->Verify("pulled@1.0.0").ok());

  // A taken version is refused before the move: the download stays for a retry.
  std::string g = MakeModel("other.part", 2);
  auto other = HashFile(g);
  ASSERT_TRUE(other.ok());
  o.version = "1.0.0";
  o.after_blob_stored = nullptr;
  EXPECT_EQ(registry_->AdoptFile(g, *other, o).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(std::filesystem::exists(g));
  // So is a file that is not a model, and one whose size is not what the caller hashed.
  WriteBytes(home_.path() + "/junk.part", {1, 2, 3});
  o.version = "2.0.0";
  EXPECT_EQ(registry_->AdoptFile(home_.path() + "/junk.part", {other->digest, 3}, o).status().code(),
            StatusCode::kInvalidArgument);
  BlobInfo short_info{other->digest, other->size_bytes - 1};
  EXPECT_EQ(registry_->AdoptFile(g, short_info, o).status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(std::filesystem::exists(g));
  EXPECT_EQ(NumBlobs(), 1u);
}

TEST_F(RegistryTest, StateSurvivesReopeningAndANewerSchemaIsRefused) {
  ImportOrDie(MakeModel("a.gguf", 1), "m", "1.0.0");
  ASSERT_TRUE(registry_->Tag("m", "stable").ok());
  registry_.reset();
  auto reopened = Registry::Open(home_.path() + "/home", {.create = false});
  ASSERT_TRUE(reopened.ok());
  auto r = (*reopened)->Resolve("m:stable");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->manifest.version, "1.0.0");
  reopened->reset();

  // A state.db from a newer build is refused rather than misread.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((home_.path() + "/home/state.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE schema_versions SET version = 99 WHERE component = 'registry'",
                         nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto newer = Registry::Open(home_.path() + "/home");
  EXPECT_EQ(newer.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(newer.status().message().find("schema version 99"), std::string::npos)
      << newer.status().message();

  auto missing = Registry::Open(home_.path() + "/nowhere", {.create = false});
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(home_.path() + "/nowhere"));
}

}  // namespace
}  // namespace llmasos::registry

namespace llmasos::registry {
namespace {

// An import copies its file without the registry's mutex: another thread resolves and lists
// models while the copy is in progress (the daemon answering requests during an import).
TEST_F(RegistryTest, ReadersAreServedWhileAnImportCopies) {
  ImportOrDie(MakeModel("a.gguf", 1), "served");
  ImportOptions o;
  o.file = MakeModel("b.gguf", 2);
  o.name = "incoming";
  std::string seen;
  o.during_copy = [&] {
    // A reader on another thread; with the mutex held by the import it would never finish
    // (the join is bounded so such a bug fails instead of hanging).
    auto done = std::make_shared<std::promise<std::string>>();
    std::thread reader([this, done] {
      auto r = registry_->Resolve("served");
      auto all = registry_->List();
      done->set_value(r.ok() && all.ok() ? r->manifest.version + " " + std::to_string(all->size())
                                         : "error");
    });
    auto result = done->get_future();
    if (result.wait_for(std::chrono::seconds(60)) == std::future_status::ready) {
      seen = result.get();
      reader.join();
    } else {
      seen = "the reader was blocked by the import";
      reader.detach();
    }
  };
  auto m = registry_->Import(o);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(seen, "1.0.0 1");  // the import was not visible yet, and nothing waited for it
  EXPECT_EQ(VersionOf("incoming"), "1.0.0");
}

}  // namespace
}  // namespace llmasos::registry
