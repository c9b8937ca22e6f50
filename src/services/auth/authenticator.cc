#include "services/auth/authenticator.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include "util/logging.h"
#include "util/mutex.h"

namespace llmasos::auth {
namespace {

constexpr int64_t kWindowMs = 60000;  // the "per minute" of rpm and tpm
constexpr auto kRetryWriteAfter = std::chrono::seconds(1);

int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Whole seconds until `ms` from now, at least 1 (Retry-After is in seconds).
int64_t SecondsUntil(int64_t at_ms, int64_t now_ms) { return std::max<int64_t>(1, (at_ms - now_ms + 999) / 1000); }

}  // namespace

// Invariants: pending holds the usage charged but not yet committed; keys[id].unpersisted_tokens
// is the token part of pending[id] plus what the writer is committing now; keys[id].committed_tokens
// counts the tokens this ledger has committed, so a reader can tell whether a commit landed between
// its read of the store and its check; attempted_seq <= enqueued_seq.
struct Ledger {
  std::unique_ptr<KeyStore> store;
  AuthenticatorOptions options;
  // Once a key exists the daemon never serves without keys again: no need to ask the store.
  std::atomic<bool> keys_seen{false};

  struct KeyState {
    std::deque<int64_t> admitted_ms;                     // admissions within the window (rpm only)
    std::deque<std::pair<int64_t, int64_t>> tokens_ms;   // (time, tokens) within the window (tpm only)
    int64_t tokens_in_window = 0;
    int64_t in_flight = 0;
    int64_t unpersisted_tokens = 0;
    int64_t committed_tokens = 0;
  };

  Mutex mu;
  CondVar wake;     // the writer: something to write, or stop
  CondVar written;  // Flush: a batch was attempted
  std::map<std::string, KeyState> keys GUARDED_BY(mu);
  std::map<std::string, KeyUsage> pending GUARDED_BY(mu);
  std::vector<std::function<void()>> waiters GUARDED_BY(mu);
  uint64_t enqueued_seq GUARDED_BY(mu) = 0;
  uint64_t attempted_seq GUARDED_BY(mu) = 0;
  bool writer_running GUARDED_BY(mu) = false;
  bool stop GUARDED_BY(mu) = false;
  std::thread writer;

  int64_t Now() const { return options.now_ms ? options.now_ms() : SystemNowMs(); }

  void Record(const std::string& key_id, const KeyUsage& usage, std::function<void()> recorded) EXCLUDES(mu) {
    MutexLock lock(mu);
    KeyUsage& p = pending[key_id];
    p.requests += usage.requests;
    p.prompt_tokens += usage.prompt_tokens;
    p.generated_tokens += usage.generated_tokens;
    KeyState& k = keys[key_id];
    k.unpersisted_tokens += usage.tokens();
    if (usage.tokens() > 0) {
      k.tokens_ms.emplace_back(Now(), usage.tokens());
      k.tokens_in_window += usage.tokens();
    }
    if (recorded) waiters.push_back(std::move(recorded));
    ++enqueued_seq;
    if (writer_running) {
      wake.NotifyOne();
      return;
    }
    // The writer has stopped (shutdown): write now, on this thread.
    WriteBatch();
  }

  // Takes what is pending, writes it with `mu` released, runs the waiters (`mu` is held again
  // on return). Returns whether the write succeeded (on failure the usage goes back into pending).
  bool WriteBatch() REQUIRES(mu) {
    std::map<std::string, KeyUsage> batch;
    batch.swap(pending);
    std::vector<std::function<void()>> callbacks;
    callbacks.swap(waiters);
    const uint64_t seq = enqueued_seq;
    mu.Unlock();
    std::vector<KeyStore::UsageDelta> deltas;
    deltas.reserve(batch.size());
    for (const auto& [id, usage] : batch) deltas.push_back({id, usage});
    const Status s = store->AddUsage(deltas);
    if (!s.ok()) LOG(kError) << "recording usage of " << deltas.size() << " keys (retried): " << s.ToString();
    for (auto& cb : callbacks) cb();
    callbacks.clear();  // whatever they hold goes before the lock is taken again
    mu.Lock();
    for (const auto& [id, usage] : batch) {
      if (s.ok()) {
        keys[id].unpersisted_tokens -= usage.tokens();
        keys[id].committed_tokens += usage.tokens();
      } else {
        KeyUsage& p = pending[id];
        p.requests += usage.requests;
        p.prompt_tokens += usage.prompt_tokens;
        p.generated_tokens += usage.generated_tokens;
      }
    }
    attempted_seq = std::max(attempted_seq, seq);
    written.NotifyAll();
    return s.ok();
  }

  void WriterLoop() EXCLUDES(mu) {
    MutexLock lock(mu);
    for (;;) {
      wake.Wait(mu, [&]() REQUIRES(mu) { return stop || !pending.empty() || !waiters.empty(); });
      if (pending.empty() && waiters.empty()) break;  // stop, nothing left
      if (!WriteBatch() && !stop) wake.WaitFor(mu, kRetryWriteAfter, [&]() REQUIRES(mu) { return stop; });
      if (stop && !pending.empty()) {
        WriteBatch();  // one last try; what still fails is logged
        break;
      }
    }
    writer_running = false;
  }

  void Flush() EXCLUDES(mu) {
    MutexLock lock(mu);
    const uint64_t target = enqueued_seq;
    if (!writer_running) {
      if (!pending.empty() || !waiters.empty()) WriteBatch();
      return;
    }
    written.Wait(mu, [&]() REQUIRES(mu) { return attempted_seq >= target || !writer_running; });
  }

  // Drops window entries older than a minute.
  static void Prune(KeyState& k, int64_t now) {
    while (!k.admitted_ms.empty() && k.admitted_ms.front() <= now - kWindowMs) k.admitted_ms.pop_front();
    while (!k.tokens_ms.empty() && k.tokens_ms.front().first <= now - kWindowMs) {
      k.tokens_in_window -= k.tokens_ms.front().second;
      k.tokens_ms.pop_front();
    }
  }

  // Looks without inserting: `key_id` may be any presented id, known or not.
  int64_t CommittedTokens(const std::string& key_id) EXCLUDES(mu) {
    MutexLock lock(mu);
    const auto it = keys.find(key_id);
    return it == keys.end() ? 0 : it->second.committed_tokens;
  }

  // Checks the limits of `record` and, when they allow it, takes its place in them. `record` was
  // read from the store after CommittedTokens returned `committed_before`. A commit since then may
  // or may not be in `record.usage` (it moved out of unpersisted_tokens either way): then the check
  // returns nullopt for the caller to read again, or, when `last_try`, counts that commit twice
  // rather than not at all.
  std::optional<Decision> CheckLimits(const KeyRecord& record, int64_t committed_before, bool last_try)
      EXCLUDES(mu) {
    const KeyLimits& l = record.spec.limits;
    Decision d;
    MutexLock lock(mu);
    const int64_t now = Now();
    KeyState& k = keys[record.id];
    const int64_t committed_since = k.committed_tokens - committed_before;
    if (l.token_budget > 0 && committed_since > 0 && !last_try) return std::nullopt;
    Prune(k, now);
    if (l.token_budget > 0 &&
        record.usage.tokens() + committed_since + k.unpersisted_tokens >= l.token_budget) {
      d.outcome = Decision::Outcome::kQuotaExhausted;
      d.message = "this key's token budget of " + std::to_string(l.token_budget) + " tokens is spent";
      return d;
    }
    d.outcome = Decision::Outcome::kLimited;
    if (l.concurrent > 0 && k.in_flight >= l.concurrent) {
      d.message = "this key has " + std::to_string(k.in_flight) + " requests in flight; its limit is " +
                  std::to_string(l.concurrent);
      d.retry_after_seconds = 1;
      return d;
    }
    if (l.requests_per_minute > 0 && static_cast<int64_t>(k.admitted_ms.size()) >= l.requests_per_minute) {
      // The request passes once all but rpm - 1 of the admissions in the window have left it.
      const size_t idx = k.admitted_ms.size() - static_cast<size_t>(l.requests_per_minute);
      d.message = "this key's limit of " + std::to_string(l.requests_per_minute) + " requests per minute is reached";
      d.retry_after_seconds = SecondsUntil(k.admitted_ms[idx] + kWindowMs, now);
      return d;
    }
    if (l.tokens_per_minute > 0 && k.tokens_in_window >= l.tokens_per_minute) {
      // The request passes once the tokens in the window fall below the limit.
      int64_t left = k.tokens_in_window;
      int64_t at = now;
      for (const auto& [t, n] : k.tokens_ms) {
        left -= n;
        at = t + kWindowMs;
        if (left < l.tokens_per_minute) break;
      }
      d.message = "this key's limit of " + std::to_string(l.tokens_per_minute) + " tokens per minute is reached";
      d.retry_after_seconds = SecondsUntil(at, now);
      return d;
    }
    if (l.requests_per_minute > 0) k.admitted_ms.push_back(now);
    ++k.in_flight;
    d.outcome = Decision::Outcome::kAdmitted;
    d.message.clear();
    return d;
  }

  void EndRequest(const std::string& key_id) EXCLUDES(mu) {
    MutexLock lock(mu);
    --keys[key_id].in_flight;
  }
};

int32_t Caller::Priority(std::optional<int32_t> requested) const {
  return std::min(requested.value_or(default_priority_), max_priority_);
}

void Caller::Charge(int64_t prompt_tokens, int64_t generated_tokens, std::function<void()> recorded) {
  if (ledger_ == nullptr) {
    if (recorded) recorded();
    return;
  }
  KeyUsage usage{.requests = counted_ ? 0 : 1, .prompt_tokens = prompt_tokens, .generated_tokens = generated_tokens};
  counted_ = true;
  ledger_->Record(key_id_, usage, std::move(recorded));
}

Caller::~Caller() {
  if (ledger_ == nullptr) return;
  if (!counted_) ledger_->Record(key_id_, KeyUsage{.requests = 1}, nullptr);
  ledger_->EndRequest(key_id_);
}

std::unique_ptr<Authenticator> Authenticator::Create(std::unique_ptr<KeyStore> store, AuthenticatorOptions options) {
  auto ledger = std::make_shared<Ledger>();
  ledger->store = std::move(store);
  ledger->options = std::move(options);
  {
    MutexLock lock(ledger->mu);  // the writer thread reads it
    ledger->writer_running = true;
  }
  ledger->writer = std::thread([l = ledger.get()] { l->WriterLoop(); });
  return std::unique_ptr<Authenticator>(new Authenticator(std::move(ledger)));
}

Authenticator::~Authenticator() {
  {
    MutexLock lock(ledger_->mu);
    ledger_->stop = true;
  }
  ledger_->wake.NotifyOne();
  ledger_->writer.join();
}

void Authenticator::Flush() { ledger_->Flush(); }

KeyStore& Authenticator::store() { return *ledger_->store; }

Decision Authenticator::Admit(std::string_view presented, Scope needed) {
  Decision d;
  if (ledger_->options.open_without_keys && !ledger_->keys_seen.load()) {
    StatusOr<bool> any = ledger_->store->AnyKeys();
    if (!any.ok()) {
      d.outcome = Decision::Outcome::kError;
      d.message = "the key store cannot be read: " + any.status().message();
      return d;
    }
    if (!*any) {
      d.outcome = Decision::Outcome::kAdmitted;
      d.caller = std::shared_ptr<Caller>(new Caller());
      d.caller->scopes_ = static_cast<uint32_t>(Scope::kInfer) | static_cast<uint32_t>(Scope::kModels) |
                          static_cast<uint32_t>(Scope::kAdmin);
      return d;
    }
    ledger_->keys_seen.store(true);
  }
  d.outcome = Decision::Outcome::kUnauthenticated;
  d.message = std::string(kInvalidKeyMessage);
  if (presented.empty()) return d;
  const std::optional<ParsedKey> id = ParseKey(presented);
  if (!id.has_value()) return d;
  std::optional<KeyRecord> record;
  // Usage committed while the store is read is counted once, not missed (CheckLimits); a writer
  // that commits inside every read is given three tries.
  constexpr int kTries = 3;
  for (int attempt = 1;; ++attempt) {
    const int64_t committed_before = ledger_->CommittedTokens(id->id);
    StatusOr<std::optional<KeyRecord>> found = ledger_->store->Find(*id, presented);
    if (!found.ok()) {
      d.outcome = Decision::Outcome::kError;
      d.message = "the key store cannot be read: " + found.status().message();
      return d;
    }
    const int64_t now_s = ledger_->Now() / 1000;
    if (!found->has_value() || !(*found)->ActiveAt(now_s)) return d;
    record = std::move(**found);
    if (!HasScope(record->spec.scopes, needed)) {
      d.outcome = Decision::Outcome::kForbidden;
      d.message = "this key (" + record->id + ") lacks the '" + std::string(ScopeName(needed)) +
                  "' scope this route needs (it has: " + ScopesToString(record->spec.scopes) + ")";
      return d;
    }
    std::optional<Decision> checked = ledger_->CheckLimits(*record, committed_before, attempt == kTries);
    if (checked.has_value()) {
      d = std::move(*checked);
      break;
    }
  }
  if (d.outcome != Decision::Outcome::kAdmitted) return d;
  d.caller = std::shared_ptr<Caller>(new Caller());
  d.caller->ledger_ = ledger_;
  d.caller->key_id_ = record->id;
  d.caller->tenant_ = record->spec.tenant;
  d.caller->scopes_ = record->spec.scopes;
  d.caller->default_priority_ = record->spec.default_priority;
  d.caller->max_priority_ = record->spec.max_priority;
  return d;
}

}  // namespace llmasos::auth
