#include "api/embedding.h"

#include <chrono>
#include <optional>
#include <utility>

#include "api/errors.h"

namespace llmasos::api {

StatusOr<std::vector<kernel::ProcessSpec>> EmbeddingProcesses(const manager::LoadedModel& model,
                                                              const ParsedEmbedding& request,
                                                              const auth::Caller* caller,
                                                              std::string* error_param) {
  // An embedding process holds its prompt and the one step that ends it.
  const size_t room = model.context_tokens > 1 ? model.context_tokens - 1 : 1;
  std::vector<kernel::ProcessSpec> specs;
  for (size_t i = 0; i < request.inputs.size(); ++i) {
    const std::string field = request.input_is_list ? "input[" + std::to_string(i) + "]" : "input";
    kernel::ProcessSpec spec;
    spec.kind = kernel::ProcessKind::kEmbed;
    spec.limits.max_tokens = 1;
    spec.priority = request.priority.value_or(0);
    ApplyCaller(caller, request.priority, spec);
    spec.prompt = model.tokenizer->Encode(request.inputs[i], /*add_special=*/true, /*parse_special=*/false);
    if (spec.prompt.empty()) {
      if (error_param != nullptr) *error_param = "input";
      return InvalidArgumentError(field + ": encodes to no tokens");
    }
    if (spec.prompt.size() > room) {
      if (!request.truncate) {
        if (error_param != nullptr) *error_param = "input";
        return InvalidArgumentError(field + ": is " + std::to_string(spec.prompt.size()) +
                                    " tokens; the context holds " + std::to_string(room));
      }
      spec.prompt.resize(room);
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

EmbeddingWriter::EmbeddingWriter(const std::vector<kernel::ProcessId>& ids) : vectors_(ids.size()) {
  for (size_t i = 0; i < ids.size(); ++i) index_[ids[i]] = i;
}

std::string EmbeddingWriter::OnEnd(const kernel::StreamEvent& e) {
  auto it = index_.find(e.id);
  if (it == index_.end()) return "";
  if (e.state != kernel::ProcessState::kFinished) {
    error_ = "the embedding ended early: " + EndDescription(e);
    return "";
  }
  vectors_[it->second] = e.embedding;
  prompt_tokens_ += e.accounting.num_prompt_tokens;
  return "";
}

namespace {

// The prompt tokens of all of `specs`.
int64_t PromptTokens(const std::vector<kernel::ProcessSpec>& specs) {
  int64_t n = 0;
  for (const kernel::ProcessSpec& spec : specs) n += static_cast<int64_t>(spec.prompt.size());
  return n;
}

// Submits the embedding processes into `channel`; their ids in input order.
StatusOr<std::vector<kernel::ProcessId>> StartEmbeddings(const manager::LoadedModel& model, kernel::Channel& channel,
                                                         std::vector<kernel::ProcessSpec> specs) {
  std::vector<kernel::ProcessId> ids;
  for (kernel::ProcessSpec& spec : specs) {
    ASSIGN_OR_RETURN(kernel::ProcessId id, model.engine->SubmitTo(channel, std::move(spec)));
    ids.push_back(id);
  }
  return ids;
}

}  // namespace

void ServeEmbeddings(Daemon& daemon, const ExchangePtr& ex, Endpoint endpoint,
                     const EmbeddingWriterFactory& make_writer) {
  std::string param;
  auto parsed = ParseEmbedding(endpoint, ex->request().body, &param);
  if (!parsed.ok()) {
    SendError(*ex, {.http_status = 400, .message = parsed.status().message(), .param = param});
    return;
  }
  std::optional<TimePoint> deadline;
  if (!ReadDeadlineOrAnswer(*ex, parsed->timeout, &deadline)) return;
  std::optional<manager::Duration> keep_alive;
  if (parsed->keep_alive) keep_alive = std::chrono::duration_cast<manager::Duration>(*parsed->keep_alive);
  std::optional<manager::Lease> lease = AcquireForRequest(daemon, *ex, parsed->model, keep_alive);
  if (!lease) return;
  const TimePoint leased_at = std::chrono::steady_clock::now();
  auto specs = EmbeddingProcesses(lease->model(), *parsed, ex->caller().get(), &param);
  if (!specs.ok()) {
    SendError(*ex, {.http_status = HttpStatusFor(specs.status().code()),
                    .message = ScrubPaths(specs.status().message()),
                    .param = param});
    return;
  }
  if (specs->empty()) {  // no input: the model is loaded, nothing to embed
    const ResponseWriter::Final body = make_writer(*parsed, {}, leased_at)->Finish();
    SendJson(*ex, body.body, body.http_status);
    return;
  }
  for (kernel::ProcessSpec& spec : *specs) {
    spec.limits.deadline = deadline;
    spec.adapter = lease->adapter();
  }
  auto pump = NewPump(ex, {.stream = false, .prompt_tokens = PromptTokens(*specs)});
  auto ids = StartEmbeddings(lease->model(), PumpChannel(*pump), std::move(specs).value());
  if (!ids.ok()) {
    AbortPump(pump);
    SendStatus(*ex, ids.status());
    return;
  }
  StartPump(pump, std::move(*lease), make_writer(*parsed, *ids, leased_at));
}

}  // namespace llmasos::api
