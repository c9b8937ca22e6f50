#include "kernel/engine_thread.h"

#include <utility>

namespace llmasos::kernel {

// ---- Channel ---------------------------------------------------------------------------------

Channel::Channel() : state_(std::make_shared<State>()) {}

Channel::~Channel() { state_->dropped.store(true, std::memory_order_release); }

void Channel::State::Push(StreamEvent event) {
  {
    MutexLock lock(mu);
    if (event.kind == StreamEvent::Kind::kEnd) --num_open;
    // Nobody will read a dropped channel's events; keeping them would only hold memory.
    if (!dropped.load(std::memory_order_acquire)) events.push_back(std::move(event));
  }
  cv.NotifyAll();
  if (notify && !dropped.load(std::memory_order_acquire)) notify();
}

void Channel::SetNotifier(std::function<void()> notify) {
  MutexLock lock(state_->mu);
  CHECK_EQ(state_->num_open, 0u) << "Channel::SetNotifier after a submission";
  state_->notify = std::move(notify);
}

StatusOr<StreamEvent> Channel::Next(std::chrono::milliseconds timeout) {
  State& st = *state_;
  MutexLock lock(st.mu);
  const bool ready = st.cv.WaitFor(st.mu, timeout, [&]() REQUIRES(st.mu) { return !st.events.empty() || st.num_open == 0; });
  if (!st.events.empty()) {
    StreamEvent event = std::move(st.events.front());
    st.events.pop_front();
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
      new EngineThread(std::move(engine), clock, std::max<size_t>(options.history_steps, 1),
                       options.max_live));
}

EngineThread::EngineThread(std::unique_ptr<Engine> engine, const Clock* clock, size_t history_steps,
                           size_t max_live)
    : engine_(std::move(engine)),
      clock_(clock),
      history_steps_(history_steps),
      max_live_(max_live) {
  engine_->SetOutputCallback([this](ProcessId id, const TokenOutput& out) { OnOutput(id, out); });
  engine_->SetPlanCallback([this](const StepPlan& plan) { OnPlan(plan); });
  // What an idle engine reports until its first loop iteration publishes (the thread is not
  // running yet, so the engine may be read here).
  stats_.policy = engine_->scheduler().policy().name();
  stats_.scheduling = engine_->scheduling();
  stats_.kv = engine_->kv().Stats();
  stats_.scheduler = engine_->scheduler().stats();
  scheduling_ = stats_.scheduling;
  thread_ = std::thread([this] { Loop(); });
}

EngineThread::~EngineThread() { Shutdown(); }

StatusOr<EngineThread::Submission> EngineThread::Submit(ProcessSpec spec, std::vector<std::string> stop) {
  auto channel = std::make_unique<Channel>();
  for (std::string& s : stop) spec.stop.push_back(std::move(s));
  ASSIGN_OR_RETURN(std::vector<ProcessId> ids, Enqueue(channel->state_, std::move(spec), 1));
  return Submission{ids[0], std::move(channel)};
}

StatusOr<ProcessId> EngineThread::SubmitTo(Channel& channel, ProcessSpec spec, std::vector<std::string> stop) {
  for (std::string& s : stop) spec.stop.push_back(std::move(s));
  ASSIGN_OR_RETURN(std::vector<ProcessId> ids, Enqueue(channel.state_, std::move(spec), 1));
  return ids[0];
}

StatusOr<std::vector<ProcessId>> EngineThread::SubmitGroupTo(Channel& channel, ProcessSpec spec, size_t n) {
  return Enqueue(channel.state_, std::move(spec), n);
}

StatusOr<std::vector<ProcessId>> EngineThread::Enqueue(const std::shared_ptr<Channel::State>& channel,
                                                       ProcessSpec spec, size_t n) {
  const TimePoint now = clock_->Now();
  RETURN_IF_ERROR(Engine::ValidateGroup(spec, n));
  RETURN_IF_ERROR(engine_->Validate(spec, now));
  // Counted open before the engine thread can see the processes, so each end event always
  // finds the count it closes.
  {
    MutexLock lock(channel->mu);
    channel->num_open += n;
  }
  std::vector<ProcessId> ids;
  size_t num_live = 0;  // when refused for max_live
  {
    MutexLock lock(mu_);
    num_live = stats_.num_submitted - stats_.num_ended;
    if (max_live_ > 0 && num_live + n > max_live_) {
      // Refused below, with the channel's count given back.
    } else if (!stopping_) {
      // Minted under mu_, so the inbox holds ids in increasing order.
      for (size_t i = 0; i < n; ++i) ids.push_back(engine_->NewProcessId());
      last_id_ = ids.back();
      const int32_t priority = spec.priority;
      inbox_.push_back(Queued{ids, now, std::move(spec), channel});
      stats_.num_submitted += n;
      // Under mu_, after the push: the loop takes the inbox (and clears the flag) under mu_
      // too, so an interrupt always has its arrival in the plan that follows it.
      engine_->InterruptFor(priority);
    }
  }
  if (ids.empty()) {
    {
      MutexLock lock(channel->mu);
      channel->num_open -= n;
    }
    if (max_live_ > 0 && num_live + n > max_live_) {
      return UnavailableError("the model's queue is full (" + std::to_string(num_live) + " processes, at most " +
                              std::to_string(max_live_) + "); retry later");
    }
    return FailedPreconditionError("the engine thread is shut down");
  }
  cv_.NotifyOne();
  return ids;
}

Status EngineThread::Cancel(ProcessId id, EndReason reason, std::string message) {
  if (reason == EndReason::kNone || TerminalStateOf(reason) == ProcessState::kFinished) {
    return InvalidArgumentError("a process cannot be cancelled with reason " + std::string(EndReasonName(reason)));
  }
  {
    MutexLock lock(mu_);
    if (id == 0 || id > last_id_) return NotFoundError("no process " + std::to_string(id));
    if (stopping_) return FailedPreconditionError("the engine thread is shut down");
    cancels_.push_back(CancelRequest{id, reason, std::move(message)});
  }
  cv_.NotifyOne();
  return OkStatus();
}

Status EngineThread::Renice(ProcessId id, int32_t priority) {
  {
    MutexLock lock(mu_);
    if (id == 0 || id > last_id_) return NotFoundError("no process " + std::to_string(id));
    if (stopping_) return FailedPreconditionError("the engine thread is shut down");
    renices_.push_back(ReniceRequest{id, priority});
  }
  cv_.NotifyOne();
  return OkStatus();
}

StatusOr<SchedulingSettings> EngineThread::UpdateScheduling(const SchedulingUpdate& update) {
  SchedulingSettings merged;
  {
    MutexLock lock(mu_);
    if (stopping_) return FailedPreconditionError("the engine thread is shut down");
    merged = update.AppliedTo(scheduling_);
    RETURN_IF_ERROR(ValidateSchedulingSettings(merged));
    scheduling_ = merged;
    scheduling_changed_ = true;
  }
  cv_.NotifyOne();
  return merged;
}

SchedulingSettings EngineThread::Scheduling() const {
  MutexLock lock(mu_);
  return scheduling_;
}

void EngineThread::Shutdown() {
  std::call_once(joined_, [this] {
    {
      MutexLock lock(mu_);
      stopping_ = true;
    }
    cv_.NotifyOne();
    thread_.join();
  });
}

void EngineThread::SetEventBus(EventBus* bus, uint64_t instance, std::string model) {
  {
    MutexLock lock(mu_);
    new_events_ = EventTarget{bus, instance, std::move(model)};
  }
  cv_.NotifyOne();
}

EngineThreadStats EngineThread::Stats() const {
  MutexLock lock(mu_);
  EngineThreadStats s = stats_;
  s.recent.assign(recent_.begin(), recent_.end());
  return s;
}

std::vector<ProcessSnapshot> EngineThread::Processes() const {
  MutexLock lock(mu_);
  return table_;
}

// ---- EngineThread: the engine thread ----------------------------------------------------------

void EngineThread::Loop() {
  for (;;) {
    std::vector<Queued> queued;
    std::vector<CancelRequest> cancels;
    std::vector<ReniceRequest> renices;
    std::optional<SchedulingSettings> scheduling;
    std::optional<EventTarget> new_events;
    bool stopping = false;
    {
      const bool has_work = engine_->HasWork();
      MutexLock lock(mu_);
      cv_.Wait(mu_, [&]() REQUIRES(mu_) {
        return has_work || stopping_ || !inbox_.empty() || !cancels_.empty() || !renices_.empty() ||
               scheduling_changed_ || new_events_.has_value();
      });
      engine_->ClearInterrupt();  // the arrivals it was for are taken now
      queued.swap(inbox_);
      cancels.swap(cancels_);
      renices.swap(renices_);
      if (scheduling_changed_) scheduling = scheduling_;
      scheduling_changed_ = false;
      new_events.swap(new_events_);
      stopping = stopping_;
    }
    if (new_events) events_ = std::move(*new_events);
    Admit(queued);
    if (scheduling) {
      // UpdateScheduling validated them; a failure here would be a bug.
      Status st = engine_->Configure(*scheduling);
      CHECK(st.ok()) << st.ToString();
      MutexLock lock(mu_);
      stats_.scheduling = std::move(*scheduling);
    }
    // An ended process keeps the priority it ended with.
    for (const ReniceRequest& r : renices) {
      if (!engine_->Renice(r.id, r.priority).ok() || events_.bus == nullptr) continue;
      // A group member still waiting for its leader is not in the scheduler yet: no event.
      if (const Process* p = engine_->scheduler().Find(r.id)) Emit(EventKind::kReniced, *p);
    }
    // A process may have ended meanwhile: then there is nothing to cancel.
    bool cancelled = false;
    for (CancelRequest& c : cancels) cancelled |= engine_->End(c.id, c.reason, std::move(c.message)).ok();
    for (const auto& [id, channel] : streams_) {
      if (channel->dropped.load(std::memory_order_acquire)) {
        cancelled |= engine_->Cancel(id, "channel dropped").ok();
      }
    }
    if (cancelled && !stopping) {  // their end events go out now, not after the next step
      Publish(std::nullopt);
      DeliverEnded();
    }
    if (stopping) {
      EndAll(EndReason::kShutdown, "");
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
      // The engine ended the processes of that step with kError; the others go on.
      {
        MutexLock lock(mu_);
        if (stats_.error.ok()) stats_.error = step.status();
      }
      Publish(std::nullopt);
      DeliverEnded();
      continue;
    }
    Publish(*step);
    DeliverEnded();
  }
}

void EngineThread::Admit(std::vector<Queued>& queued) {
  for (Queued& q : queued) {
    Status st = engine_->SubmitValidated(std::move(q.spec), q.ids, q.submitted_at);
    if (!st.ok()) {  // Validate passed and ids are in order: a bug, reported on the stream
      {
        MutexLock lock(mu_);
        stats_.num_ended += q.ids.size();
      }
      for (ProcessId id : q.ids) {
        StreamEvent end;
        end.kind = StreamEvent::Kind::kEnd;
        end.id = id;
        end.state = ProcessState::kFailed;
        end.reason = EndReason::kError;
        end.message = st.ToString();
        q.channel->Push(std::move(end));
      }
      continue;
    }
    for (ProcessId id : q.ids) streams_.emplace(id, q.channel);
  }
}

void EngineThread::OnOutput(ProcessId id, const TokenOutput& out) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  StreamEvent event;
  event.id = id;
  event.token = out.token;
  event.text = out.text;
  event.logprobs = out.logprobs;
  it->second->Push(std::move(event));
}

void EngineThread::DeliverEnded() {
  std::vector<EndedProcess> ended = engine_->TakeEnded();
  if (ended.empty()) return;
  {
    // Counted before the events go out, so a consumer that saw an end sees it counted.
    MutexLock lock(mu_);
    stats_.num_ended += ended.size();
  }
  for (EndedProcess& e : ended) {
    const Process& p = *e.process;
    swapped_out_.erase(p.id());
    if (events_.bus != nullptr) {
      Emit(p.end_reason() == EndReason::kKilled ? EventKind::kKilled : EventKind::kFinished, p,
           std::string(EndReasonName(p.end_reason())));
    }
    auto it = streams_.find(p.id());
    if (it == streams_.end()) continue;
    StreamEvent end;
    end.kind = StreamEvent::Kind::kEnd;
    end.id = p.id();
    end.text = std::move(e.text);
    end.state = p.state();
    end.reason = p.end_reason();
    end.message = p.end_message();
    end.accounting = p.accounting();
    end.embedding = std::move(e.embedding);
    it->second->Push(std::move(end));
    streams_.erase(it);
  }
}

void EngineThread::OnPlan(const StepPlan& plan) {
  for (const Preemption& pr : plan.preempted) {
    if (pr.mode == PreemptMode::kSwap) swapped_out_.insert(pr.id);
    if (events_.bus == nullptr) continue;
    const Process* p = engine_->scheduler().Find(pr.id);
    if (p == nullptr) continue;
    Emit(EventKind::kPreempted, *p, std::string(PreemptModeName(pr.mode)));
    if (pr.mode == PreemptMode::kSwap) Emit(EventKind::kSwapped, *p, "", "out");
  }
  for (ProcessId id : plan.admitted) {
    const bool swapped_in = swapped_out_.erase(id) > 0;
    if (events_.bus == nullptr) continue;
    const Process* p = engine_->scheduler().Find(id);
    if (p == nullptr) continue;
    Emit(EventKind::kAdmitted, *p, p->accounting().num_preemptions > 0 ? "resume" : "");
    if (swapped_in) Emit(EventKind::kSwapped, *p, "", "in");
  }
}

void EngineThread::Emit(EventKind kind, const Process& p, std::string reason, std::string direction) {
  Event e;
  e.kind = kind;
  e.instance = events_.instance;
  e.pid = p.id();
  e.model = events_.model;
  e.tenant = p.tenant();
  e.reason = std::move(reason);
  e.direction = std::move(direction);
  if (kind == EventKind::kReniced) e.priority = p.priority();
  events_.bus->Publish(std::move(e));
}

void EngineThread::EndAll(EndReason reason, const std::string& message) {
  for (const Process* p : engine_->scheduler().LiveProcesses()) (void)engine_->End(p->id(), reason, message);
}

void EngineThread::Publish(const std::optional<StepReport>& step) {
  const KvStats kv = engine_->kv().Stats();
  const SchedulerStats sched = engine_->scheduler().stats();
  const size_t num_live = sched.num_queued + sched.num_running;
  std::vector<ProcessSnapshot> table = engine_->ProcessTable(clock_->Now());
  const std::string_view policy = engine_->scheduler().policy().name();
  MutexLock lock(mu_);
  stats_.kv = kv;
  stats_.scheduler = sched;
  stats_.num_live = num_live;
  if (stats_.policy != policy) stats_.policy = policy;
  table_.swap(table);
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
