#include "services/registry/blob_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "services/registry/test_home.h"

namespace llmasos::registry {
namespace {

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(Sha256Test, MatchesKnownDigests) {
  // FIPS 180-2 test vectors.
  Sha256 empty;
  EXPECT_EQ(empty.FinishDigest(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 abc;
  abc.Update(Bytes("a"));
  abc.Update(Bytes("bc"));  // incremental updates hash as one
  EXPECT_EQ(abc.FinishDigest(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 two_blocks;
  two_blocks.Update(Bytes("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"));
  EXPECT_EQ(two_blocks.FinishDigest(),
            "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(BlobStoreTest, CommitStoresContentUnderItsDigest) {
  TempHome home;
  auto store = BlobStore::Open(home.path() + "/blobs");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto w = (*store)->NewWriter();
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append(Bytes("ab")).ok());
  ASSERT_TRUE((*w)->Append(Bytes("c")).ok());
  auto info = (*w)->Commit(std::string(
      "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->size_bytes, 3u);
  EXPECT_TRUE((*store)->Contains(info->digest));
  EXPECT_EQ(DirEntries(home.path() + "/blobs"),
            std::vector<std::string>{"sha256-ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"});
  EXPECT_TRUE((*store)->Verify(info->digest).ok());
  auto listed = (*store)->List();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(*listed, std::vector<std::string>{info->digest});
}

TEST(BlobStoreTest, WrongContentIsNeverStored) {
  TempHome home;
  auto store = BlobStore::Open(home.path() + "/blobs");
  ASSERT_TRUE(store.ok());
  const std::string other = "sha256:" + std::string(64, '0');
  {
    auto w = (*store)->NewWriter();
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(Bytes("abc")).ok());
    auto info = (*w)->Commit(other);
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(info.status().message().find("expected " + other), std::string::npos);
  }
  EXPECT_TRUE(DirEntries(home.path() + "/blobs").empty());
}

TEST(BlobStoreTest, AbandonedWriterLeavesNothing) {
  TempHome home;
  auto store = BlobStore::Open(home.path() + "/blobs");
  ASSERT_TRUE(store.ok());
  {
    auto w = (*store)->NewWriter();
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(Bytes("partial")).ok());
    EXPECT_EQ(DirEntries(home.path() + "/blobs").size(), 1u);  // the temp file
  }
  EXPECT_TRUE(DirEntries(home.path() + "/blobs").empty());
}

TEST(BlobStoreTest, MalformedDigestsBuildNoPath) {
  TempHome home;
  auto store = BlobStore::Open(home.path() + "/blobs");
  ASSERT_TRUE(store.ok());
  for (const std::string& bad : {std::string("sha256:../../etc/passwd"), std::string("../x"),
                                 "sha256:" + std::string(64, 'G')}) {
    auto path = (*store)->PathFor(bad);
    EXPECT_FALSE(path.ok());
    EXPECT_EQ(path.status().code(), StatusCode::kInvalidArgument);
    EXPECT_FALSE((*store)->Contains(bad));
    EXPECT_FALSE((*store)->Remove(bad).ok());
    EXPECT_FALSE((*store)->Verify(bad).ok());
  }
}

TEST(BlobStoreTest, VerifyDetectsATamperedBlob) {
  TempHome home;
  auto store = BlobStore::Open(home.path() + "/blobs");
  ASSERT_TRUE(store.ok());
  std::string src = home.path() + "/src";
  WriteBytes(src, std::vector<uint8_t>(3000, 7));
  auto info = (*store)->ImportFile(src, std::nullopt);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->size_bytes, 3000u);
  ASSERT_TRUE((*store)->Verify(info->digest).ok());
  auto path = (*store)->PathFor(info->digest);
  std::vector<uint8_t> tampered(3000, 7);
  tampered[1234] = 8;
  WriteBytes(*path, tampered);
  Status s = (*store)->Verify(info->digest);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("corrupt"), std::string::npos) << s.message();
}

TEST(BlobStoreTest, StaleTempFilesAreRemovedButLiveOnesKept) {
  TempHome home;
  auto store = BlobStore::Open(home.path() + "/blobs");
  ASSERT_TRUE(store.ok());
  // A crashed writer's leftover: a temp file nobody holds.
  WriteBytes(home.path() + "/blobs/.tmp-deadbeef", {1, 2, 3});
  // A writer still running (in this or another process) holds its temp file's lock.
  auto live = (*store)->NewWriter();
  ASSERT_TRUE(live.ok());
  ASSERT_TRUE((*live)->Append(Bytes("in progress")).ok());
  auto removed = (*store)->RemoveStaleTempFiles();
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 1u);
  auto entries = DirEntries(home.path() + "/blobs");
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(home.path() + "/blobs/" + entries[0], (*live)->temp_path());
  EXPECT_TRUE((*live)->Commit(std::nullopt).ok());
}

TEST(BlobStoreTest, SameContentTwiceIsStoredOnce) {
  TempHome home;
  auto store = BlobStore::Open(home.path() + "/blobs");
  ASSERT_TRUE(store.ok());
  std::string src = home.path() + "/src";
  WriteBytes(src, {1, 2, 3, 4});
  auto a = (*store)->ImportFile(src, std::nullopt);
  auto b = (*store)->ImportFile(src, std::nullopt);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->digest, b->digest);
  EXPECT_EQ(DirEntries(home.path() + "/blobs").size(), 1u);
}

}  // namespace
}  // namespace llmasos::registry
