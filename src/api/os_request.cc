#include "api/os_request.h"

#include <charconv>

#include "api/json_body.h"
#include "api/json_fields.h"
#include "api/request.h"
#include "kernel/policy.h"

namespace llmasos::api {

namespace {

using json_fields::Context;
using json_fields::Fields;
using json_fields::Show;

constexpr size_t kMaxFilterBytes = 256;

// A positive decimal integer that fits in uint64, all of `text`.
std::optional<uint64_t> ParsePositive(std::string_view text) {
  uint64_t v = 0;
  if (text.empty() || text.front() == '+') return std::nullopt;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || v == 0) return std::nullopt;
  return v;
}

// Fails naming the first key of `body` that is not in `known`.
Status RejectUnknownFields(const Context& ctx, const nlohmann::json& body, std::initializer_list<std::string_view> known) {
  for (const auto& [key, value] : body.items()) {
    bool ok = false;
    for (std::string_view k : known) ok |= key == k;
    if (!ok) return ctx.Fail(key, "is not a field of this request");
  }
  return OkStatus();
}

}  // namespace

std::string FormatProcessId(GlobalProcessId id) {
  return std::to_string(id.instance) + "-" + std::to_string(id.pid);
}

StatusOr<GlobalProcessId> ParseProcessId(std::string_view text) {
  const size_t dash = text.find('-');
  std::optional<uint64_t> instance, pid;
  if (dash != std::string_view::npos) {
    instance = ParsePositive(text.substr(0, dash));
    pid = ParsePositive(text.substr(dash + 1));
  }
  if (!instance || !pid) {
    return InvalidArgumentError("process id " + Show(nlohmann::json(std::string(text.substr(0, 64)))) +
                                " is not INSTANCE-PID (two positive integers, e.g. 1-42)");
  }
  return GlobalProcessId{*instance, *pid};
}

bool ProcessFilter::Matches(kernel::ProcessState s, std::string_view t, std::string_view name,
                            std::string_view version) const {
  if (state && *state != s) return false;
  if (tenant && *tenant != t) return false;
  if (model) {
    const size_t at = model->find('@');
    if (at == std::string::npos) return *model == name;
    return std::string_view(*model).substr(0, at) == name && std::string_view(*model).substr(at + 1) == version;
  }
  return true;
}

StatusOr<ProcessFilter> ParseProcessFilter(const std::vector<std::pair<std::string, std::string>>& query,
                                           std::string* error_param) {
  ProcessFilter f;
  auto fail = [&](const std::string& name, const std::string& what) {
    if (error_param != nullptr) *error_param = name;
    return InvalidArgumentError("query parameter " + name + ": " + what);
  };
  for (const auto& [name, value] : query) {
    std::optional<std::string>* slot = nullptr;
    if (name == "tenant") slot = &f.tenant;
    if (name == "model") slot = &f.model;
    if (name != "state" && slot == nullptr) {
      return fail(name.substr(0, 64), "unknown (expected state, tenant or model)");
    }
    const bool repeated = name == "state" ? f.state.has_value() : slot->has_value();
    if (repeated) return fail(name, "given twice");
    if (value.empty()) return fail(name, "must not be empty");
    if (value.size() > kMaxFilterBytes) return fail(name, "longer than " + std::to_string(kMaxFilterBytes) + " bytes");
    if (slot != nullptr) {
      *slot = value;
      continue;
    }
    for (kernel::ProcessState s : {kernel::ProcessState::kQueued, kernel::ProcessState::kRunning,
                                   kernel::ProcessState::kPreempted}) {
      if (value == kernel::ProcessStateName(s)) f.state = s;
    }
    if (!f.state) {
      return fail(name, "must be queued, running or preempted, got " + Show(nlohmann::json(value)));
    }
  }
  return f;
}

StatusOr<int32_t> ParseRenice(std::string_view body, std::string* error_param) {
  ASSIGN_OR_RETURN(nlohmann::json j, ParseJsonObject(body));
  std::vector<std::string> ignored;
  const Context ctx{error_param, &ignored};
  RETURN_IF_ERROR(RejectUnknownFields(ctx, j, {"priority"}));
  Fields f(j, "", ctx);
  std::optional<int32_t> priority;
  RETURN_IF_ERROR(f.Int("priority", -kMaxPriority, kMaxPriority, &priority));
  if (!priority) return f.Fail("priority", "is required");
  return *priority;
}

StatusOr<SchedulerUpdate> ParseSchedulerUpdate(std::string_view body, std::string* error_param) {
  ASSIGN_OR_RETURN(nlohmann::json j, ParseJsonObject(body));
  std::vector<std::string> ignored;
  const Context ctx{error_param, &ignored};
  RETURN_IF_ERROR(RejectUnknownFields(ctx, j, {"instance", "policy"}));
  Fields f(j, "", ctx);
  SchedulerUpdate u;
  RETURN_IF_ERROR(f.Int("instance", 1, INT64_MAX, &u.instance));
  bool has_policy = false;
  RETURN_IF_ERROR(f.String("policy", 32, &u.policy, &has_policy));
  if (!has_policy) return f.Fail("policy", "is required");
  if (auto p = kernel::NewPolicyByName(u.policy); !p.ok()) return f.Fail("policy", p.status().message());
  return u;
}

StatusOr<ModelActionRequest> ParseModelAction(ModelAction action, std::string_view body, std::string* error_param) {
  ASSIGN_OR_RETURN(nlohmann::json j, ParseJsonObject(body));
  std::vector<std::string> ignored;
  const Context ctx{error_param, &ignored};
  switch (action) {
    case ModelAction::kLoad: RETURN_IF_ERROR(RejectUnknownFields(ctx, j, {"model", "keep_alive"})); break;
    case ModelAction::kUnload: RETURN_IF_ERROR(RejectUnknownFields(ctx, j, {"model", "unpin"})); break;
    default: RETURN_IF_ERROR(RejectUnknownFields(ctx, j, {"model"})); break;
  }
  Fields f(j, "", ctx);
  ModelActionRequest r;
  bool has_model = false;
  RETURN_IF_ERROR(f.String("model", 256, &r.model, &has_model));
  if (!has_model || r.model.empty()) return f.Fail("model", "is required");
  if (const nlohmann::json* ka = f.Find("keep_alive")) RETURN_IF_ERROR(json_fields::ReadKeepAlive(ctx, *ka, &r.keep_alive));
  RETURN_IF_ERROR(f.Bool("unpin", &r.unpin));
  return r;
}

}  // namespace llmasos::api
