#include "kernel/engine_thread.h"

#include <utility>

namespace llmasos::kernel {

// ---- Channel ---------------------------------------------------------------------------------

Channel::Channel() : state_(std::make_shared<State>()) {}

Channel::~Channel() { state_->dropped.store(true, std::memory_order_release); }

void Channel::State::Push(StreamEvent event) {
  {
    std::lock_guard<std::mutex> lock(mu);
    if (event.kind == StreamEvent::Kind::kEnd) --num_open;
    // Nobody will read a dropped channel's events; keeping them would only hold memory.
    if (!dropped.load(std::memory_order_acquire)) events.push_back(std::move(event));
  }
  cv.notify_all();
}

StatusOr<StreamEvent> Channel::Next(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(state_->mu);
  const bool ready =
      state_->cv.wait_for(lock, timeout, [&] { return !state_->events.empty() || state_->num_open == 0; });
  if (!state_->events.empty()) {
    StreamEvent event = std::move(state_->events.front());
    state_->events.pop_front();
    return event;
  }
  if (ready) return OutOfRangeError("channel closed: every process in it has ended");
  return UnavailableError("no event within " + std::to_string(timeout.count()) + " ms");
}

// ---- EngineThread: the callers' side ----------------------------------------------------------

StatusOr<std::unique_ptr<EngineThread>> EngineThread::Start(const arch::Model& model,
                                                            const tokenizer::Tokenizer& tokenizer,
                                                            ThreadPool& pool, const EngineThreadOptions& options,
                                                            const Clock* clock) {
  ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(model, tokenizer, pool, options.engine, clock));
  return std::unique_ptr<EngineThread>(
      new EngineThread(std::move(engine), tokenizer, clock, std::max<size_t>(options.history_steps, 1)));
}

EngineThread::EngineThread(std::unique_ptr<Engine> engine, const tokenizer::Tokenizer& tokenizer,
                           const Clock* clock, size_t history_steps)
    : engine_(std::move(engine)), tokenizer_(tokenizer), clock_(clock), history_steps_(history_steps) {
  engine_->SetTokenCallback([this](ProcessId id, TokenId token) { OnToken(id, token); });
  thread_ = std::thread([this] { Loop(); });
}

EngineThread::~EngineThread() { Shutdown(); }

StatusOr<EngineThread::Submission> EngineThread::Submit(ProcessSpec spec, std::vector<std::string> stop) {
  auto channel = std::make_unique<Channel>();
  ASSIGN_OR_RETURN(ProcessId id, Enqueue(channel->state_, std::move(spec), std::move(stop)));
  return Submission{id, std::move(channel)};
}

StatusOr<ProcessId> EngineThread::SubmitTo(Channel& channel, ProcessSpec spec, std::vector<std::string> stop) {
  return Enqueue(channel.state_, std::move(spec), std::move(stop));
}

StatusOr<ProcessId> EngineThread::Enqueue(const std::shared_ptr<Channel::State>& channel, ProcessSpec spec,
                                          std::vector<std::string> stop) {
  const TimePoint now = clock_->Now();
  RETURN_IF_ERROR(engine_->Validate(spec, now));
  // Counted open before the engine thread can see the process, so its end event always
  // finds the count it closes.
  {
    std::lock_guard<std::mutex> lock(channel->mu);
    ++channel->num_open;
  }
  ProcessId id = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      id = next_id_++;
      inbox_.push_back(Queued{id, now, std::move(spec), std::move(stop), channel});
      ++stats_.num_submitted;
    }
  }
  if (id == 0) {
    std::lock_guard<std::mutex> lock(channel->mu);
    --channel->num_open;
    return FailedPreconditionError("the engine thread is shut down");
  }
  cv_.notify_one();
  return id;
}

Status EngineThread::Cancel(ProcessId id, std::string reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (id == 0 || id >= next_id_) return NotFoundError("no process " + std::to_string(id));
    if (stopping_) return FailedPreconditionError("the engine thread is shut down");
    cancels_.emplace_back(id, std::move(reason));
  }
  cv_.notify_one();
  return OkStatus();
}

Status EngineThread::SetPolicy(std::string_view name) {
  RETURN_IF_ERROR(NewPolicyByName(name).status());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return FailedPreconditionError("the engine thread is shut down");
    policy_ = std::string(name);
  }
  cv_.notify_one();
  return OkStatus();
}

void EngineThread::Shutdown() {
  std::call_once(joined_, [this] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    thread_.join();
  });
}

EngineThreadStats EngineThread::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineThreadStats s = stats_;
  s.recent.assign(recent_.begin(), recent_.end());
  return s;
}

// ---- EngineThread: the engine thread ----------------------------------------------------------

void EngineThread::Loop() {
  for (;;) {
    std::vector<Queued> queued;
    std::vector<std::pair<ProcessId, std::string>> cancels;
    std::optional<std::string> policy;
    bool stopping = false;
    {
      const bool has_work = engine_->HasWork();
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return has_work || stopping_ || !inbox_.empty() || !cancels_.empty() || policy_.has_value();
      });
      queued.swap(inbox_);
      cancels.swap(cancels_);
      policy.swap(policy_);
      stopping = stopping_;
    }
    Admit(queued);
    // SetPolicy checked the name; a failure here would be a bug in NewPolicyByName.
    if (policy) CHECK(engine_->SetPolicy(*policy).ok());
    // A process may have ended meanwhile: then there is nothing to cancel.
    bool cancelled = false;
    for (auto& [id, reason] : cancels) cancelled |= engine_->Cancel(id, std::move(reason)).ok();
    for (const auto& [id, stream] : streams_) {
      if (stream.channel->dropped.load(std::memory_order_acquire)) {
        cancelled |= engine_->Cancel(id, "channel dropped").ok();
      }
    }
    if (cancelled && !stopping) {  // their end events go out now, not after the next step
      Publish(std::nullopt);
      DeliverEnded();
    }
    if (stopping) {
      CancelAll("shutdown");
      Publish(std::nullopt);
      DeliverEnded();
      return;
    }
    if (!engine_->HasWork()) {
      Publish(std::nullopt);
      DeliverEnded();
      continue;
    }
    StatusOr<StepReport> step = engine_->Step();
    if (!step.ok()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stats_.error.ok()) stats_.error = step.status();
      }
      to_finish_.clear();
      CancelAll("engine step failed: " + step.status().ToString());
      Publish(std::nullopt);
      DeliverEnded();
      continue;
    }
    for (ProcessId id : to_finish_) {
      const Process* p = engine_->scheduler().Find(id);
      // It may have ended in the step anyway (max_tokens, an end-of-generation token).
      if (p != nullptr && p->state() == ProcessState::kRunning) CHECK(engine_->Finish(id, "stop").ok());
    }
    to_finish_.clear();
    Publish(*step);
    DeliverEnded();
  }
}

void EngineThread::Admit(std::vector<Queued>& queued) {
  for (Queued& q : queued) {
    StatusOr<ProcessId> id = engine_->SubmitAs(std::move(q.spec), q.id, q.submitted_at);
    if (!id.ok()) {  // Validate passed, so only a change of the checks' inputs can land here
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.num_ended;
      }
      StreamEvent end;
      end.kind = StreamEvent::Kind::kEnd;
      end.id = q.id;
      end.state = ProcessState::kFailed;
      end.reason = id.status().ToString();
      q.channel->Push(std::move(end));
      continue;
    }
    Stream s;
    s.channel = std::move(q.channel);
    s.decoder = std::make_unique<tokenizer::IncrementalDecoder>(tokenizer_);
    s.stops = std::make_unique<sampling::StopMatcher>(std::move(q.stop));
    streams_.emplace(q.id, std::move(s));
  }
}

void EngineThread::OnToken(ProcessId id, TokenId token) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  Stream& s = it->second;
  StreamEvent event;
  event.id = id;
  event.token = token;
  if (!s.stops->stopped() && !tokenizer_.IsEog(token)) {
    event.text = s.stops->Push(s.decoder->Push(token));
    if (s.stops->stopped()) to_finish_.push_back(id);
  }
  s.channel->Push(std::move(event));
}

void EngineThread::DeliverEnded() {
  std::vector<std::unique_ptr<Process>> ended = engine_->TakeEnded();
  if (ended.empty()) return;
  {
    // Counted before the events go out, so a consumer that saw an end sees it counted.
    std::lock_guard<std::mutex> lock(mu_);
    stats_.num_ended += ended.size();
  }
  for (const auto& p : ended) {
    auto it = streams_.find(p->id());
    if (it == streams_.end()) continue;
    Stream& s = it->second;
    StreamEvent end;
    end.kind = StreamEvent::Kind::kEnd;
    end.id = p->id();
    end.stop_string = s.stops->stopped();
    if (!end.stop_string) end.text = s.stops->Push(s.decoder->Flush()) + s.stops->Flush();
    end.state = p->state();
    end.reason = p->reason();
    end.accounting = p->accounting();
    s.channel->Push(std::move(end));
    streams_.erase(it);
  }
}

void EngineThread::CancelAll(const std::string& reason) {
  for (const Process* p : engine_->scheduler().LiveProcesses()) (void)engine_->Cancel(p->id(), reason);
}

void EngineThread::Publish(const std::optional<StepReport>& step) {
  const KvStats kv = engine_->kv().Stats();
  const SchedulerStats sched = engine_->scheduler().stats();
  const size_t num_live = sched.num_queued + sched.num_running;
  std::lock_guard<std::mutex> lock(mu_);
  stats_.kv = kv;
  stats_.num_live = num_live;
  if (!step || step->num_tokens == 0) return;
  ++stats_.num_steps;
  stats_.num_tokens += step->num_tokens;
  stats_.num_sampled += step->num_sampled;
  stats_.step_seconds += step->seconds;
  StepTiming t;
  t.step_idx = stats_.num_steps;
  t.step = *step;
  t.num_live = num_live;
  t.kv_used_blocks = kv.used_blocks;
  t.kv_stored_tokens = kv.stored_tokens;
  t.kv_utilisation = kv.utilisation;
  recent_.push_back(t);
  while (recent_.size() > history_steps_) recent_.pop_front();
}

}  // namespace llmasos::kernel
