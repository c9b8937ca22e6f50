#include "util/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace llmasos {
namespace {

std::string Text(int err) { return std::strerror(err); }

TEST(ErrnoErrorTest, MissingFileIsNotFoundNamingActionPathAndCause) {
  Status s = ErrnoError("reading", "/x/model.gguf", ENOENT);
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "reading '/x/model.gguf': " + Text(ENOENT));
}

TEST(ErrnoErrorTest, FullDiskQuotaAndFileSizeLimitAreDiskFull) {
  for (int err : {ENOSPC, EDQUOT, EFBIG}) {
    Status s = ErrnoError("writing", "/x/blob", err);
    EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << err;
    EXPECT_EQ(s.message(), "disk full writing '/x/blob': " + Text(err));
  }
}

TEST(ErrnoErrorTest, RefusedAccessIsPermissionDenied) {
  for (int err : {EACCES, EPERM, EROFS}) {
    Status s = ErrnoError("creating", "/x/lock", err);
    EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << err;
    EXPECT_EQ(s.message(), "creating '/x/lock': " + Text(err));
    EXPECT_EQ(s.ToString(), "PERMISSION_DENIED: creating '/x/lock': " + Text(err));
  }
}

TEST(ErrnoErrorTest, OtherErrorsAreIoErrors) {
  for (int err : {EIO, EISDIR, EBADF, EMFILE}) {
    Status s = ErrnoError("syncing", "/x/dir", err);
    EXPECT_EQ(s.code(), StatusCode::kIoError) << err;
    EXPECT_EQ(s.message(), "syncing '/x/dir': " + Text(err));
  }
  // A caller that lost errno still gets a cause, not an empty one.
  EXPECT_EQ(ErrnoError("reading", "/x", 0).message(), "reading '/x': " + Text(EIO));
}

class FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/llmasos_file_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::permissions(dir_, std::filesystem::perms::owner_all, ec);
    std::filesystem::remove_all(dir_, ec);
  }
  std::vector<std::string> Entries() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) out.push_back(e.path().filename());
    return out;
  }
  std::string dir_;
};

TEST_F(FileTest, OpeningAMissingFileIsNotFoundNamingThePath) {
  auto fd = OpenFile(dir_ + "/nope", O_RDONLY);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(fd.status().message(), "opening '" + dir_ + "/nope': " + Text(ENOENT));
}

TEST_F(FileTest, OpeningAnUnreadableFileIsPermissionDenied) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads files whatever their mode";
  const std::string path = dir_ + "/secret";
  ASSERT_TRUE(WriteFileAtomically(path, "x").ok());
  ASSERT_EQ(::chmod(path.c_str(), 0), 0);
  auto fd = OpenFile(path, O_RDONLY);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(fd.status().message().find(path), std::string::npos);
}

TEST_F(FileTest, WritingToAFullDeviceIsDiskFull) {
  auto fd = OpenFile("/dev/full", O_WRONLY);
  if (!fd.ok()) GTEST_SKIP() << "/dev/full is not available: " << fd.status().ToString();
  const std::vector<uint8_t> bytes(100, 7);
  Status s = WriteAll(fd->get(), bytes, "/dev/full");
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(), "disk full writing '/dev/full': " + Text(ENOSPC));
  EXPECT_EQ(PwriteAll(fd->get(), bytes, 0, "/dev/full").code(), StatusCode::kResourceExhausted);
}

TEST_F(FileTest, AtomicWriteRoundTripsAndLeavesNoTemporaryFile) {
  const std::string path = dir_ + "/state.json";
  ASSERT_TRUE(WriteFileAtomically(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "second, longer").ok());
  auto text = ReadFileToString(path, 1024);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(*text, "second, longer");
  EXPECT_EQ(Entries(), std::vector<std::string>{"state.json"});
}

TEST_F(FileTest, ReadingRefusesAFileOverTheLimit) {
  const std::string path = dir_ + "/big";
  ASSERT_TRUE(WriteFileAtomically(path, std::string(100, 'a')).ok());
  EXPECT_TRUE(ReadFileToString(path, 100).ok());
  auto text = ReadFileToString(path, 99);
  EXPECT_EQ(text.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(text.status().message().find("limit of 99 bytes"), std::string::npos);
}

TEST_F(FileTest, AtomicWriteIntoAMissingDirectoryFailsAndNamesTheFile) {
  Status s = WriteFileAtomically(dir_ + "/missing/state.json", "x");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_NE(s.message().find(dir_ + "/missing/state.json"), std::string::npos);
}

TEST_F(FileTest, AtomicWriteThatCannotRenameRemovesItsTemporaryFile) {
  // The target is a non-empty directory: rename(2) refuses to replace it.
  const std::string path = dir_ + "/target";
  ASSERT_EQ(::mkdir(path.c_str(), 0755), 0);
  ASSERT_TRUE(WriteFileAtomically(path + "/inside", "x").ok());
  Status s = WriteFileAtomically(path, "y");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.message().rfind("renaming into place '" + path + "': ", 0), 0u) << s.message();
  EXPECT_EQ(Entries(), std::vector<std::string>{"target"});
}

TEST_F(FileTest, PreadExactReadsAtAnOffsetAndReportsAShortFile) {
  const std::string path = dir_ + "/data";
  ASSERT_TRUE(WriteFileAtomically(path, "0123456789").ok());
  auto fd = OpenFile(path, O_RDONLY);
  ASSERT_TRUE(fd.ok());
  std::vector<uint8_t> out(4);
  ASSERT_TRUE(PreadExact(fd->get(), out, 3, path).ok());
  EXPECT_EQ(std::string(out.begin(), out.end()), "3456");
  Status s = PreadExact(fd->get(), out, 8, path);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("'" + path + "': the file ends at byte 10"), std::string::npos) << s.message();
}

TEST_F(FileTest, ReadSomeReturnsZeroAtTheEnd) {
  const std::string path = dir_ + "/data";
  ASSERT_TRUE(WriteFileAtomically(path, "abc").ok());
  auto fd = OpenFile(path, O_RDONLY);
  ASSERT_TRUE(fd.ok());
  std::vector<uint8_t> buf(16);
  auto n = ReadSome(fd->get(), buf, path);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3u);
  n = ReadSome(fd->get(), buf, path);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
  // A descriptor opened for writing only cannot be read: the error names the path.
  auto wfd = OpenFile(path, O_WRONLY);
  ASSERT_TRUE(wfd.ok());
  n = ReadSome(wfd->get(), buf, path);
  EXPECT_EQ(n.status().code(), StatusCode::kIoError);
  EXPECT_EQ(n.status().message(), "reading '" + path + "': " + Text(EBADF));
}

TEST_F(FileTest, UniqueFdClosesOnceAndMovesOwnership) {
  auto opened = OpenFile(dir_, O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(opened.ok());
  const int raw = opened->get();
  UniqueFd moved = std::move(opened).value();
  EXPECT_EQ(moved.get(), raw);
  EXPECT_EQ(::fcntl(raw, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);  // OpenFile adds O_CLOEXEC
  moved.Reset();
  EXPECT_FALSE(moved.valid());
  errno = 0;
  EXPECT_EQ(::fcntl(raw, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
}

TEST_F(FileTest, SyncDirNamesAMissingDirectory) {
  EXPECT_TRUE(SyncDir(dir_).ok());
  Status s = SyncDir(dir_ + "/gone");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_NE(s.message().find(dir_ + "/gone"), std::string::npos);
}

}  // namespace
}  // namespace llmasos
