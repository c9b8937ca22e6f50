#include "services/registry/pull.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <memory>
#include <thread>

#include <nlohmann/json.hpp>

#include "services/registry/blob_store.h"
#include "services/registry/http_fetch.h"
#include "services/registry/semver.h"
#include "services/registry/validate.h"
#include "util/file.h"

namespace llmasos::registry {
namespace {

using Clock = std::chrono::steady_clock;

// Restarts from zero per pull: a server that changes the file under us this often is not
// going to settle.
constexpr int kMaxRestarts = 3;
constexpr size_t kHashChunkBytes = 1 << 20;
constexpr auto kProgressInterval = std::chrono::milliseconds(100);

// What a download of one URL left behind: `<key>.json` next to `<key>.part`.
struct Sidecar {
  std::string url;
  std::string etag;
  std::string last_modified;
  std::string expected_digest;  // "" when none was given
  uint64_t total_bytes = 0;     // 0 while unknown
  // A finished pull: the part file is gone and its blob is `digest`.
  bool complete = false;
  std::string digest;
  uint64_t size_bytes = 0;
};

// A missing or unreadable sidecar is no sidecar: the download starts from zero.
std::optional<Sidecar> ReadSidecar(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  Sidecar s;
  try {
    s.url = j.at("url").get<std::string>();
    s.etag = j.value("etag", "");
    s.last_modified = j.value("last_modified", "");
    s.expected_digest = j.value("expected_digest", "");
    s.total_bytes = j.value("total_bytes", uint64_t{0});
    s.complete = j.value("complete", false);
    s.digest = j.value("digest", "");
    s.size_bytes = j.value("size_bytes", uint64_t{0});
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
  return s;
}

Status WriteSidecar(const std::string& path, const Sidecar& s) {
  nlohmann::json j = {{"url", s.url},
                      {"etag", s.etag},
                      {"last_modified", s.last_modified},
                      {"expected_digest", s.expected_digest},
                      {"total_bytes", s.total_bytes},
                      {"complete", s.complete},
                      {"digest", s.digest},
                      {"size_bytes", s.size_bytes}};
  return WriteFileAtomically(path, j.dump() + "\n");
}

// An exclusive flock on `<key>.lock`. The holder of a finished pull unlinks the file before
// it lets go, so a waiter checks that the file it locked is still the one at the path.
class DownloadLock {
 public:
  static StatusOr<std::unique_ptr<DownloadLock>> Acquire(const std::string& path, long wait_s,
                                                         const std::function<void()>& on_wait,
                                                         bool* waited) {
    *waited = false;
    auto deadline = Clock::now() + std::chrono::seconds(wait_s);
    while (true) {
      int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (fd < 0) return ErrnoError("opening", path, errno);
      if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
        struct stat held, now;
        if (::fstat(fd, &held) == 0 && ::stat(path.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
            held.st_dev == now.st_dev) {
          return std::unique_ptr<DownloadLock>(new DownloadLock(path, fd));
        }
        ::close(fd);  // unlinked under us by a finished pull: lock the new file
        continue;
      }
      int err = errno;
      ::close(fd);
      if (err != EWOULDBLOCK && err != EINTR) return ErrnoError("locking", path, err);
      if (!*waited && on_wait) on_wait();
      *waited = true;
      if (Clock::now() >= deadline) {
        return UnavailableError("another pull of the same URL has held '" + path + "' for " +
                                std::to_string(wait_s) + " s; try again when it has finished");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ~DownloadLock() {
    if (unlink_) ::unlink(path_.c_str());
    ::close(fd_);
  }
  // The pull finished: remove the lock file when letting go.
  void UnlinkOnRelease() { unlink_ = true; }

 private:
  DownloadLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
  bool unlink_ = false;
};

// The part file and everything known about it; the FetchSink of each transfer.
class Download : public FetchSink {
 public:
  Download(const PullRequest& request, std::string part_path, std::string sidecar_path,
           const PullProgressFn& progress)
      : request_(request),
        part_path_(std::move(part_path)),
        sidecar_path_(std::move(sidecar_path)),
        progress_(progress) {}
  ~Download() override {
    if (fd_ >= 0) ::close(fd_);
  }

  // Opens the part file and decides whether to resume it: only when the sidecar is for this
  // URL and digest, has a validator for If-Range, and the file is no longer than it said.
  Status Open(const std::optional<Sidecar>& previous) {
    fd_ = ::open(part_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) return ErrnoError("opening", part_path_, errno);
    struct stat st;
    if (::fstat(fd_, &st) != 0) return ErrnoError("reading", part_path_, errno);
    uint64_t size = static_cast<uint64_t>(st.st_size);
    bool resumable = previous && !previous->complete && previous->url == request_.url &&
                     previous->expected_digest == request_.expected_digest.value_or("") &&
                     (!previous->etag.empty() || !previous->last_modified.empty()) && size > 0 &&
                     (previous->total_bytes == 0 || size <= previous->total_bytes) &&
                     size <= request_.max_bytes;
    if (!resumable) return Reset();
    sidecar_ = *previous;
    if (sidecar_.total_bytes > 0) total_ = sidecar_.total_bytes;
    // The hash state is not saved; re-read what is there.
    std::vector<uint8_t> buf(kHashChunkBytes);
    while (written_ < size) {
      const std::span<uint8_t> chunk(buf.data(), static_cast<size_t>(std::min<uint64_t>(buf.size(), size - written_)));
      RETURN_IF_ERROR(PreadExact(fd_, chunk, written_, part_path_));
      hasher_->Update(chunk);
      written_ += chunk.size();
    }
    return OkStatus();
  }

  // Back to zero bytes, forgetting the server's validators.
  Status Reset() {
    if (::ftruncate(fd_, 0) != 0) return ErrnoError("truncating", part_path_, errno);
    written_ = 0;
    total_.reset();
    hasher_ = std::make_unique<Sha256>();
    sidecar_ = Sidecar{};
    sidecar_.url = request_.url;
    sidecar_.expected_digest = request_.expected_digest.value_or("");
    return OkStatus();
  }

  // Parameters of the next transfer.
  FetchOptions NextFetch() {
    requested_from_ = written_;
    restart_reason_.clear();
    FetchOptions o;
    o.url = request_.url;
    o.range_from = written_;
    o.if_range = !sidecar_.etag.empty() ? sidecar_.etag : sidecar_.last_modified;
    o.allow_private = request_.allow_private;
    o.connect_timeout_s = request_.connect_timeout_s;
    o.stall_timeout_s = request_.stall_timeout_s;
    return o;
  }

  Status OnResponse(const FetchResponse& r) override {
    if (r.status == 200) {
      if (requested_from_ > 0) {
        // The server ignored the Range, or If-Range said the file changed: take the full body.
        Emit("restarting: the server sent the whole file", true);
        RETURN_IF_ERROR(Reset());
      }
      total_ = r.content_length;
      RETURN_IF_ERROR(CheckLimit(total_.value_or(0)));
      sidecar_.etag = r.etag;
      sidecar_.last_modified = r.last_modified;
      sidecar_.total_bytes = total_.value_or(0);
      return WriteSidecar(sidecar_path_, sidecar_);
    }
    if (r.status == 206 && requested_from_ > 0) {
      if (!r.etag.empty() && !sidecar_.etag.empty() && r.etag != sidecar_.etag) {
        return Restart("the ETag changed from " + sidecar_.etag + " to " + r.etag);
      }
      if (r.etag.empty() && !r.last_modified.empty() && !sidecar_.last_modified.empty() &&
          r.last_modified != sidecar_.last_modified) {
        return Restart("Last-Modified changed");
      }
      const auto& cr = r.content_range;
      if (!cr || !cr->first || *cr->first != requested_from_) {
        return Restart("asked for bytes " + std::to_string(requested_from_) +
                       "- but the server sent Content-Range '" + r.content_range_text + "'");
      }
      if (cr->total) {
        if (total_ && *total_ != *cr->total) return Restart("the file's size changed");
        total_ = cr->total;
      }
      return CheckLimit(total_.value_or(0));
    }
    if (r.status == 416) return Restart("the server cannot serve the rest (HTTP 416)");
    return UnavailableError("'" + request_.url + "': the server answered HTTP " + std::to_string(r.status) +
                            (r.status == 206 ? " to a request without Range" : ""));
  }

  Status OnBody(std::span<const uint8_t> bytes) override {
    if (written_ + bytes.size() > request_.max_bytes) {
      return ResourceExhaustedError("'" + request_.url + "' is larger than the size limit of " +
                                    std::to_string(request_.max_bytes) + " bytes (--max-size)");
    }
    if (total_ && written_ + bytes.size() > *total_) {
      return DataLossError("'" + request_.url + "': the server sent more than the " +
                           std::to_string(*total_) + " bytes it announced");
    }
    RETURN_IF_ERROR(PwriteAll(fd_, bytes, written_, part_path_));
    hasher_->Update(bytes);
    written_ += bytes.size();
    downloaded_ += bytes.size();
    Emit("downloading", false);
    return OkStatus();
  }

  void Emit(const std::string& status, bool force) {
    if (!progress_) return;
    auto now = Clock::now();
    if (!force && now - last_emit_ < kProgressInterval) return;
    last_emit_ = now;
    progress_({status, request_.expected_digest.value_or(""), total_.value_or(0), written_});
  }

  bool restart_requested() const { return !restart_reason_.empty(); }
  const std::string& restart_reason() const { return restart_reason_; }
  bool resumable() const { return !sidecar_.etag.empty() || !sidecar_.last_modified.empty(); }
  bool complete() const { return total_ && written_ == *total_; }
  uint64_t written() const { return written_; }
  uint64_t downloaded() const { return downloaded_; }
  std::optional<uint64_t> total() const { return total_; }
  std::string FinishDigest() { return hasher_->FinishDigest(); }
  const std::string& part_path() const { return part_path_; }

 private:
  Status CheckLimit(uint64_t total) {
    if (total > request_.max_bytes) {
      return ResourceExhaustedError("'" + request_.url + "' is " + std::to_string(total) +
                                    " bytes, more than the size limit of " +
                                    std::to_string(request_.max_bytes) + " bytes (--max-size)");
    }
    return OkStatus();
  }
  // Stops this transfer; the pull starts again from zero.
  Status Restart(std::string reason) {
    restart_reason_ = std::move(reason);
    return CancelledError("restarting: " + restart_reason_);
  }

  const PullRequest& request_;
  const std::string part_path_;
  const std::string sidecar_path_;
  const PullProgressFn& progress_;
  int fd_ = -1;
  uint64_t written_ = 0;     // bytes in the part file, all hashed
  uint64_t downloaded_ = 0;  // bytes received by this pull
  uint64_t requested_from_ = 0;
  std::optional<uint64_t> total_;
  std::unique_ptr<Sha256> hasher_ = std::make_unique<Sha256>();
  Sidecar sidecar_;
  std::string restart_reason_;
  Clock::time_point last_emit_{};
};

void RemoveQuietly(const std::string& path) { ::unlink(path.c_str()); }

// A version of `name` that already holds `digest` (and is `version`, when one was asked for).
std::optional<Manifest> FindPresent(Registry& registry, const std::string& name, const std::string& digest,
                                    const std::optional<std::string>& version) {
  auto history = registry.History(name);
  if (!history.ok()) return std::nullopt;
  std::optional<Version> want;
  if (version) {
    auto v = ParseVersion(*version);
    if (!v.ok()) return std::nullopt;
    want = *v;
  }
  for (const ModelEntry& e : *history) {
    if (e.manifest.digest != digest) continue;
    auto v = ParseVersion(e.manifest.version);
    if (want && (!v.ok() || ComparePrecedence(*v, *want) != 0)) continue;
    return e.manifest;
  }
  return std::nullopt;
}

// Records a blob that is already in the store, unless the name already has it.
StatusOr<PullResult> RegisterStored(Registry& registry, const PullRequest& request,
                                    const ImportOptions& options, const BlobInfo& blob,
                                    const PullProgressFn& progress) {
  auto emit = [&](const char* status) {
    if (progress) progress({status, blob.digest, blob.size_bytes, blob.size_bytes});
  };
  if (auto present = FindPresent(registry, options.name, blob.digest, request.version)) {
    emit("already present");
    return PullResult{*present, true, 0};
  }
  emit("writing manifest");
  ASSIGN_OR_RETURN(Manifest m, registry.RegisterBlob(blob, options));
  emit("success");
  return PullResult{std::move(m), false, 0};
}

}  // namespace

StatusOr<std::string> NameFromUrl(std::string_view url) {
  ASSIGN_OR_RETURN(ParsedUrl parsed, ParseHttpUrl(url));
  std::string file = parsed.file_name;
  for (char& c : file) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (file.size() >= 5 && file.substr(file.size() - 5) == ".gguf") file.resize(file.size() - 5);
  std::string name;
  for (char c : file) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (name.empty() && !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) continue;
    name += ok ? c : '-';
  }
  if (name.size() > kMaxNameBytes) name.resize(kMaxNameBytes);
  if (name.empty() || !ValidateName(name).ok()) {
    return InvalidArgumentError("cannot derive a model name from the URL '" + std::string(url) +
                                "'; give one with --name");
  }
  return name;
}

StatusOr<uint64_t> ParseByteSize(std::string_view text) {
  auto bad = [&] {
    return InvalidArgumentError("not a size: '" + std::string(text) +
                                "' (bytes, or a whole number with K, M, G or T, e.g. 8G)");
  };
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 19) return bad();
  uint64_t value = std::stoull(std::string(text.substr(0, digits)));
  std::string suffix(text.substr(digits));
  for (char& c : suffix) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (suffix.size() > 1 && (suffix.substr(1) == "B" || suffix.substr(1) == "IB")) suffix.resize(1);
  int shift = 0;
  if (suffix == "" || suffix == "B") {
    shift = 0;
  } else if (suffix == "K") {
    shift = 10;
  } else if (suffix == "M") {
    shift = 20;
  } else if (suffix == "G") {
    shift = 30;
  } else if (suffix == "T") {
    shift = 40;
  } else {
    return bad();
  }
  if (value == 0 || value > (UINT64_MAX >> shift)) return bad();
  return value << shift;
}

StatusOr<PullResult> Pull(Registry& registry, const PullRequest& request, const PullProgressFn& progress) {
  RETURN_IF_ERROR(ParseHttpUrl(request.url).status());
  ImportOptions options;
  options.command = "pull";
  options.source = request.url;
  options.version = request.version;
  options.after_blob_stored = request.after_blob_stored;
  if (request.name.empty()) {
    ASSIGN_OR_RETURN(options.name, NameFromUrl(request.url));
  } else {
    RETURN_IF_ERROR(ValidateName(request.name));
    options.name = request.name;
  }
  if (request.version) {
    auto v = ParseVersion(*request.version);
    if (!v.ok()) return v.status();
  }
  if (request.expected_digest) RETURN_IF_ERROR(ValidateDigest(*request.expected_digest));
  if (request.max_bytes == 0) return InvalidArgumentError("the size limit must be at least 1 byte");
  if (request.max_attempts < 1) return InvalidArgumentError("max_attempts must be at least 1");

  // A version that exists already fails now, not after the download, unless it is this blob.
  if (request.version) {
    if (auto e = registry.Show(options.name + "@" + *request.version); e.ok()) {
      if (request.expected_digest && e->manifest.digest == *request.expected_digest) {
        if (progress) progress({"already present", e->manifest.digest, e->manifest.size_bytes, e->manifest.size_bytes});
        return PullResult{e->manifest, true, 0};
      }
      return FailedPreconditionError(e->manifest.name + "@" + e->manifest.version +
                                     " already exists; choose another --version");
    }
  }
  // The blob is here already (another name, an earlier pull): nothing to download.
  if (request.expected_digest && registry.blobs().Contains(*request.expected_digest)) {
    ASSIGN_OR_RETURN(std::string path, registry.blobs().PathFor(*request.expected_digest));
    ASSIGN_OR_RETURN(BlobInfo blob, HashFile(path));
    if (blob.digest == *request.expected_digest) {
      return RegisterStored(registry, request, options, blob, progress);
    }
  }

  std::string dir = registry.home() + "/downloads";
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoError("creating", dir, errno);
  Sha256 key_hash;
  key_hash.Update({reinterpret_cast<const uint8_t*>(request.url.data()), request.url.size()});
  std::string base = dir + "/" + key_hash.FinishDigest().substr(kDigestPrefix.size(), 32);
  std::string part_path = base + ".part";
  std::string sidecar_path = base + ".json";

  bool waited = false;
  auto on_wait = [&] {
    if (progress) progress({"waiting for another pull of this URL", request.expected_digest.value_or(""), 0, 0});
  };
  ASSIGN_OR_RETURN(auto lock, DownloadLock::Acquire(base + ".lock", request.lock_wait_s, on_wait, &waited));
  std::optional<Sidecar> previous = ReadSidecar(sidecar_path);
  if (waited && previous && previous->complete && previous->url == request.url &&
      registry.blobs().Contains(previous->digest) &&
      (!request.expected_digest || *request.expected_digest == previous->digest)) {
    // The pull we waited for stored it.
    return RegisterStored(registry, request, options, {previous->digest, previous->size_bytes}, progress);
  }

  Download download(request, part_path, sidecar_path, progress);
  RETURN_IF_ERROR(download.Open(previous));
  // Nothing half-written stays behind after a refusal that retrying cannot fix.
  auto discard = [&](Status s) {
    RemoveQuietly(part_path);
    RemoveQuietly(sidecar_path);
    lock->UnlinkOnRelease();
    return s;
  };
  // Two separate bounds: transfers (max_attempts) and restarts from zero (kMaxRestarts). A
  // restart does not use up an attempt, or a file that keeps changing would always run out of
  // attempts first (each restart follows a transfer that broke off) and never be named.
  int restarts = 0;
  Status last_error;
  for (int attempt = 1;; ++attempt) {
    if (download.complete()) break;  // a resumed file that was already whole
    if (attempt > request.max_attempts) {
      return last_error.Annotate("giving up after " + std::to_string(request.max_attempts) + " attempts");
    }
    FetchOptions fetch = download.NextFetch();
    if (fetch.range_from > 0) download.Emit("resuming at " + std::to_string(fetch.range_from) + " bytes", true);
    FetchResult r = Fetch(fetch, download);
    if (download.restart_requested()) {
      if (++restarts > kMaxRestarts) {
        return discard(DataLossError("'" + request.url + "' keeps changing while it downloads (" +
                                     download.restart_reason() + "); try again later"));
      }
      download.Emit("restarting: " + download.restart_reason(), true);
      RETURN_IF_ERROR(download.Reset());
      last_error = UnavailableError(download.restart_reason());
      --attempt;
      continue;
    }
    if (r.status.ok()) {
      if (!download.total() || download.complete()) break;
      // The connection closed cleanly but early; resume like a drop.
      r = {UnavailableError("'" + request.url + "': the connection closed after " +
                            std::to_string(download.written()) + " of " +
                            std::to_string(*download.total()) + " bytes"),
           FetchFailure::kTransient};
    }
    last_error = r.status;
    if (r.failure != FetchFailure::kTransient) {
      if (r.status.code() == StatusCode::kResourceExhausted || r.status.code() == StatusCode::kDataLoss) {
        return discard(r.status);
      }
      if (download.written() == 0) return discard(r.status);
      return r.status;  // the part file stays for a later resume
    }
    if (!download.resumable()) RETURN_IF_ERROR(download.Reset());  // no validator: cannot resume safely
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(200 * attempt, 2000)));
  }

  download.Emit("downloading", true);  // the last bytes, so a progress bar ends at 100%
  BlobInfo blob{download.FinishDigest(), download.written()};
  if (progress) progress({"verifying sha256 digest", blob.digest, blob.size_bytes, blob.size_bytes});
  if (request.expected_digest && *request.expected_digest != blob.digest) {
    return discard(DataLossError("the download of '" + request.url + "' does not match its digest: expected " +
                                 *request.expected_digest + ", got " + blob.digest + " (" +
                                 std::to_string(blob.size_bytes) +
                                 " bytes); it was deleted and nothing was registered"));
  }
  PullResult result;
  result.bytes_downloaded = download.downloaded();
  if (auto present = FindPresent(registry, options.name, blob.digest, request.version)) {
    (void)discard(OkStatus());
    if (progress) progress({"already present", blob.digest, blob.size_bytes, blob.size_bytes});
    result.manifest = *present;
    result.already_present = true;
    return result;
  }
  if (progress) progress({"writing manifest", blob.digest, blob.size_bytes, blob.size_bytes});
  auto added = registry.AdoptFile(part_path, blob, options);
  if (!added.ok()) {
    // Not a model: keeping it would only make the next pull "resume" a useless file.
    if (added.status().code() == StatusCode::kInvalidArgument) return discard(added.status());
    return added.status();
  }
  Sidecar done;
  done.url = request.url;
  done.complete = true;
  done.digest = blob.digest;
  done.size_bytes = blob.size_bytes;
  // Only a waiting pull reads this; failing to write it costs that pull a download.
  (void)WriteSidecar(sidecar_path, done);
  RemoveQuietly(part_path);
  lock->UnlinkOnRelease();
  if (progress) progress({"success", blob.digest, blob.size_bytes, blob.size_bytes});
  result.manifest = std::move(added).value();
  return result;
}

}  // namespace llmasos::registry
