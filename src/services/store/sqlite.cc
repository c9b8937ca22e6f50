#include "services/store/sqlite.h"

#include <sqlite3.h>

namespace llmasos::store {

StatusOr<std::unique_ptr<Database>> Database::Open(const std::string& path, Durability durability) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  std::unique_ptr<Database> db(new Database(raw, path));
  if (rc != SQLITE_OK) return db->Error("opening the database");
  sqlite3_busy_timeout(raw, 10000);
  RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode=WAL"));
  RETURN_IF_ERROR(db->Exec("PRAGMA foreign_keys=ON"));
  RETURN_IF_ERROR(db->Exec(durability == Durability::kFull ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
  return db;
}

Database::~Database() { sqlite3_close(db_); }

Status Database::Error(const std::string& what) const {
  const char* msg = db_ == nullptr ? "out of memory" : sqlite3_errmsg(db_);
  const int code = db_ == nullptr ? SQLITE_NOMEM : sqlite3_errcode(db_);
  std::string m = what + " in '" + path_ + "': " + msg;
  if (code == SQLITE_FULL) return ResourceExhaustedError(m);
  if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) return DataLossError(m);
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED) return UnavailableError(m);
  return IoError(m);
}

Status Database::Exec(const char* sql) {
  if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return Error(std::string("running '") + std::string(sql).substr(0, 40) + "'");
  }
  return OkStatus();
}

Status Database::Begin() { return Exec("BEGIN IMMEDIATE"); }
Status Database::Commit() { return Exec("COMMIT"); }
void Database::Rollback() { sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr); }

Status Database::Migrate(std::string_view component, std::span<const char* const> migrations) {
  const std::string name(component);
  const auto target = static_cast<int64_t>(migrations.size());
  RETURN_IF_ERROR(Begin());
  auto fail = [&](Status s) {
    Rollback();
    return s;
  };
  if (Status s = Exec("CREATE TABLE IF NOT EXISTS schema_versions(component TEXT PRIMARY KEY, version INTEGER NOT NULL)");
      !s.ok()) {
    return fail(s);
  }
  int64_t current = 0;
  {
    Stmt q(*this, "SELECT version FROM schema_versions WHERE component = ?");
    q.Bind(1, name);
    const int rc = q.Step();
    if (rc == SQLITE_ROW) {
      current = q.Int(0);
    } else if (rc != SQLITE_DONE) {
      return fail(Error("reading the schema version"));
    }
  }
  if (current > target) {
    return fail(FailedPreconditionError("'" + path_ + "' holds " + name + " schema version " + std::to_string(current) +
                                        ", newer than this build understands (" + std::to_string(target) +
                                        "); use a newer llmasos"));
  }
  for (int64_t v = current; v < target; ++v) {
    if (Status s = Exec(migrations[static_cast<size_t>(v)]); !s.ok()) return fail(s.Annotate("migrating the " + name));
  }
  if (current != target) {
    Stmt up(*this, "INSERT OR REPLACE INTO schema_versions(component, version) VALUES(?, ?)");
    up.Bind(1, name).Bind(2, target);
    if (Status s = up.Run("recording the schema version"); !s.ok()) return fail(s);
  }
  return Commit();
}

Stmt::Stmt(const Database& db, const char* sql) : db_(db) {
  if (sqlite3_prepare_v2(db.handle(), sql, -1, &stmt_, nullptr) != SQLITE_OK) {
    sqlite3_finalize(stmt_);
    stmt_ = nullptr;
  }
}

Stmt::~Stmt() { sqlite3_finalize(stmt_); }

Stmt& Stmt::Bind(int idx, std::string_view text) {
  // An empty view may have no data pointer, which SQLite would bind as NULL: bind '' instead.
  const char* data = text.data() == nullptr ? "" : text.data();
  if (stmt_ != nullptr) sqlite3_bind_text(stmt_, idx, data, static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}

Stmt& Stmt::Bind(int idx, int64_t value) {
  if (stmt_ != nullptr) sqlite3_bind_int64(stmt_, idx, value);
  return *this;
}

Stmt& Stmt::BindNull(int idx) {
  if (stmt_ != nullptr) sqlite3_bind_null(stmt_, idx);
  return *this;
}

Stmt& Stmt::BindDouble(int idx, double value) {
  if (stmt_ != nullptr) sqlite3_bind_double(stmt_, idx, value);
  return *this;
}

int Stmt::Step() { return stmt_ == nullptr ? SQLITE_ERROR : sqlite3_step(stmt_); }

Status Stmt::Run(const std::string& what) {
  if (Step() != SQLITE_DONE) return db_.Error(what);
  return OkStatus();
}

std::string Stmt::Text(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  return p == nullptr ? std::string()
                      : std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
}

int64_t Stmt::Int(int col) const { return sqlite3_column_int64(stmt_, col); }

double Stmt::Double(int col) const { return sqlite3_column_double(stmt_, col); }

bool Stmt::IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

}  // namespace llmasos::store
