// SQLite as the services use it for $LLMASOS_HOME/state.db: one connection opened in WAL mode,
// prepared statements that finalize themselves, errors mapped to Status codes, and schema
// migrations kept per component in `schema_versions`, so the registry, the key store and later
// services migrate their own tables independently. A database written by a newer build (a
// component version higher than this one knows) is refused.
//
// Thread safety: a Database is one connection and is not thread-safe; its owner serializes
// calls. Several connections (threads or processes) may open the same file: SQLite's locks
// and the busy timeout serialize their writes.
#ifndef LLMASOS_SERVICES_STORE_SQLITE_H_
#define LLMASOS_SERVICES_STORE_SQLITE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "util/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace llmasos::store {

// How hard a commit waits for the disk. kFull survives power loss; kNormal (in WAL mode)
// survives the process being killed at any point, and loses at most the last commits on a
// power failure, for commits that cost no fsync.
enum class Durability { kFull, kNormal };

class Database {
 public:
  // Opens `path`, creating it when missing, in WAL mode with foreign keys on and a 10 s busy
  // timeout. kIoError (or kDataLoss for a file that is not a database) naming the path.
  static StatusOr<std::unique_ptr<Database>> Open(const std::string& path, Durability durability = Durability::kFull);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

  Status Exec(const char* sql);
  // BEGIN IMMEDIATE / COMMIT / ROLLBACK.
  Status Begin();
  Status Commit();
  void Rollback();

  // The connection's last error as a Status: kResourceExhausted (disk full), kDataLoss
  // (corrupt), kUnavailable (busy), else kIoError; the message names `what` and the file.
  Status Error(const std::string& what) const;

  // Brings `component`'s tables to version migrations.size(), running migrations[v] to go
  // from version v to v + 1, all in one transaction. kFailedPrecondition when the file holds a
  // newer version of the component than this build knows.
  Status Migrate(std::string_view component, std::span<const char* const> migrations);

 private:
  Database(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
};

// One prepared statement, finalized on scope exit. Parameters are numbered from 1, columns
// from 0. A statement that failed to prepare (ok() false) steps to SQLITE_ERROR.
class Stmt {
 public:
  Stmt(const Database& db, const char* sql);
  ~Stmt();
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  bool ok() const { return stmt_ != nullptr; }
  Stmt& Bind(int idx, std::string_view text);
  Stmt& Bind(int idx, int64_t value);
  Stmt& BindNull(int idx);
  Stmt& BindDouble(int idx, double value);
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step();
  // Step() for a statement that returns no rows: OK on SQLITE_DONE, else db.Error(what).
  Status Run(const std::string& what);

  std::string Text(int col) const;
  int64_t Int(int col) const;
  double Double(int col) const;
  bool IsNull(int col) const;

 private:
  const Database& db_;
  sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace llmasos::store

#endif  // LLMASOS_SERVICES_STORE_SQLITE_H_
