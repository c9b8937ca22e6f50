#include "api/os_request.h"

#include <charconv>

#include "api/json_body.h"
#include "api/json_fields.h"
#include "api/request.h"
#include "kernel/policy.h"
#include "util/utf8.h"

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

// Fails naming the first key of `body` that is not in `known` (nor in `extra`), as
// `prefix` + key.
Status RejectUnknownFields(const Context& ctx, const nlohmann::json& body, std::initializer_list<std::string_view> known,
                           std::string_view prefix = "", std::initializer_list<std::string_view> extra = {}) {
  for (const auto& [key, value] : body.items()) {
    bool ok = false;
    for (std::string_view k : known) ok |= key == k;
    for (std::string_view k : extra) ok |= key == k;
    if (!ok) return ctx.Fail(std::string(prefix) + SanitizeUtf8(key.substr(0, 64)), "is not a field of this request");
  }
  return OkStatus();
}

// The object at `key` of `f` (an error unless it is one), with its unknown fields rejected;
// nullptr when it is not given.
StatusOr<const nlohmann::json*> SubObject(Fields& f, std::string_view key, std::initializer_list<std::string_view> known) {
  const nlohmann::json* obj = nullptr;
  RETURN_IF_ERROR(f.Object(key, &obj));
  if (obj != nullptr) RETURN_IF_ERROR(RejectUnknownFields(f.ctx(), *obj, known, f.Path(key) + "."));
  return obj;
}

// A number at `key` in (0, hi] (open_lo) or [0, hi].
Status ReadBounded(Fields& f, std::string_view key, double hi, bool open_lo, std::optional<double>* out) {
  const nlohmann::json* v = f.Find(key);
  if (v == nullptr) return OkStatus();
  double d = 0;
  RETURN_IF_ERROR(json_fields::ReadNumber(f.ctx(), *v, f.Path(key), 0, hi, &d));
  if (open_lo && d <= 0) return f.Fail(key, "must be > 0");
  *out = d;
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
      return fail(SanitizeUtf8(name.substr(0, 64)), "unknown (expected state, tenant or model)");
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

StatusOr<kernel::EventKindMask> ParseEventsQuery(const std::vector<std::pair<std::string, std::string>>& query,
                                                 std::string* error_param) {
  auto fail = [&](const std::string& name, const std::string& what) {
    if (error_param != nullptr) *error_param = name;
    return InvalidArgumentError("query parameter " + name + ": " + what);
  };
  std::optional<kernel::EventKindMask> kinds;
  for (const auto& [name, value] : query) {
    if (name != "kinds") return fail(SanitizeUtf8(name.substr(0, 64)), "unknown (expected kinds)");
    if (kinds) return fail(name, "given twice");
    if (value.empty()) return fail(name, "must not be empty");
    kinds = 0;
    std::string_view rest = value;
    while (true) {
      const size_t comma = rest.find(',');
      StatusOr<kernel::EventKind> kind = kernel::ParseEventKind(rest.substr(0, comma));
      if (!kind.ok()) return fail(name, kind.status().message());
      *kinds |= kernel::EventKindBit(*kind);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return kinds.value_or(kernel::kAllEventKinds);
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

nlohmann::json SchedulingSettingsJson(const kernel::SchedulingSettings& s) {
  const kernel::PolicyOptions& p = s.policy_options;
  nlohmann::json weights = nlohmann::json::object();
  for (const auto& [tenant, weight] : p.fair.tenant_weights) weights[tenant] = weight;
  const kernel::PreemptionOptions& o = s.preemption;
  return {{"policy", s.policy},
          {"fair", {{"weights", weights}, {"default_weight", p.fair.default_weight}}},
          {"rr", {{"slice_tokens", p.rr.slice_tokens}}},
          {"sjf", {{"aging_tokens_per_second", p.sjf.aging_tokens_per_second}}},
          {"priority", {{"aging_per_second", p.priority.aging_per_second}}},
          {"preemption",
           {{"waiting_may_preempt", o.waiting_may_preempt},
            {"min_tokens_before_preempt", o.min_tokens_before_preempt},
            {"mode", kernel::PreemptChoiceName(o.mode)},
            {"swap_seconds_per_byte", o.costs.swap_seconds_per_byte},
            {"recompute_seconds_per_token", o.costs.recompute_seconds_per_token}}}};
}

StatusOr<kernel::SchedulingUpdate> ParseSchedulingUpdate(const nlohmann::json& j, std::string* error_param,
                                                         std::initializer_list<std::string_view> extra) {
  std::vector<std::string> ignored;
  const Context ctx{error_param, &ignored};
  if (!j.is_object()) return ctx.Fail("scheduler", "must be an object, got " + Show(j));
  RETURN_IF_ERROR(RejectUnknownFields(ctx, j, {"policy", "fair", "rr", "sjf", "priority", "preemption"}, "", extra));
  Fields f(j, "", ctx);
  kernel::SchedulingUpdate u;
  std::string policy;
  bool has_policy = false;
  RETURN_IF_ERROR(f.String("policy", 32, &policy, &has_policy));
  if (has_policy) {
    if (auto p = kernel::NewPolicyByName(policy); !p.ok()) return f.Fail("policy", p.status().message());
    u.policy = policy;
  }

  ASSIGN_OR_RETURN(const nlohmann::json* fair, SubObject(f, "fair", {"weights", "default_weight"}));
  if (fair != nullptr) {
    Fields ff(*fair, "fair.", ctx);
    const nlohmann::json* weights = nullptr;
    RETURN_IF_ERROR(ff.Object("weights", &weights));
    if (weights != nullptr) {
      if (weights->size() > kernel::kMaxFairTenants) {
        return ff.Fail("weights", "at most " + std::to_string(kernel::kMaxFairTenants) + " tenants");
      }
      Fields wf(*weights, "fair.weights.", ctx);
      auto& table = u.fair_weights.emplace();
      for (const auto& [tenant, value] : weights->items()) {
        if (tenant.empty() || tenant.size() > kernel::kMaxTenantBytes) {
          return ff.Fail("weights", "a tenant name must be 1.." + std::to_string(kernel::kMaxTenantBytes) + " bytes");
        }
        std::optional<double> w;
        RETURN_IF_ERROR(ReadBounded(wf, tenant, kernel::kMaxFairWeight, true, &w));
        if (!w) return wf.Fail(tenant, "must be a number, got null");
        table[tenant] = *w;
      }
    }
    RETURN_IF_ERROR(ReadBounded(ff, "default_weight", kernel::kMaxFairWeight, true, &u.fair_default_weight));
  }
  ASSIGN_OR_RETURN(const nlohmann::json* rr, SubObject(f, "rr", {"slice_tokens"}));
  if (rr != nullptr) {
    Fields rf(*rr, "rr.", ctx);
    RETURN_IF_ERROR(rf.Int("slice_tokens", 1, kernel::kMaxSliceTokens, &u.rr_slice_tokens));
  }
  ASSIGN_OR_RETURN(const nlohmann::json* sjf, SubObject(f, "sjf", {"aging_tokens_per_second"}));
  if (sjf != nullptr) {
    Fields sf(*sjf, "sjf.", ctx);
    RETURN_IF_ERROR(ReadBounded(sf, "aging_tokens_per_second", kernel::kMaxSjfAging, true, &u.sjf_aging_tokens_per_second));
  }
  ASSIGN_OR_RETURN(const nlohmann::json* prio, SubObject(f, "priority", {"aging_per_second"}));
  if (prio != nullptr) {
    Fields pf(*prio, "priority.", ctx);
    RETURN_IF_ERROR(ReadBounded(pf, "aging_per_second", kernel::kMaxPriorityAging, false, &u.priority_aging_per_second));
  }
  ASSIGN_OR_RETURN(const nlohmann::json* pre,
                   SubObject(f, "preemption", {"waiting_may_preempt", "min_tokens_before_preempt", "mode",
                                               "swap_seconds_per_byte", "recompute_seconds_per_token"}));
  if (pre != nullptr) {
    Fields pf(*pre, "preemption.", ctx);
    if (pf.Has("waiting_may_preempt")) {
      bool b = false;
      RETURN_IF_ERROR(pf.Bool("waiting_may_preempt", &b));
      u.waiting_may_preempt = b;
    }
    RETURN_IF_ERROR(pf.Int("min_tokens_before_preempt", 0, kernel::kMaxMinTokensBeforePreempt,
                           &u.min_tokens_before_preempt));
    std::string mode;
    bool has_mode = false;
    RETURN_IF_ERROR(pf.String("mode", 16, &mode, &has_mode));
    if (has_mode) {
      u.preempt_mode = kernel::ParsePreemptChoice(mode);
      if (!u.preempt_mode) return pf.Fail("mode", "must be auto, swap or recompute, got " + Show(nlohmann::json(mode)));
    }
    RETURN_IF_ERROR(ReadBounded(pf, "swap_seconds_per_byte", 1, false, &u.swap_seconds_per_byte));
    RETURN_IF_ERROR(ReadBounded(pf, "recompute_seconds_per_token", 60, false, &u.recompute_seconds_per_token));
  }
  return u;
}

StatusOr<SchedulerUpdate> ParseSchedulerUpdate(std::string_view body, std::string* error_param) {
  ASSIGN_OR_RETURN(nlohmann::json j, ParseJsonObject(body));
  std::vector<std::string> ignored;
  const Context ctx{error_param, &ignored};
  SchedulerUpdate u;
  ASSIGN_OR_RETURN(u.update, ParseSchedulingUpdate(j, error_param, {"instance"}));
  Fields f(j, "", ctx);
  RETURN_IF_ERROR(f.Int("instance", 1, INT64_MAX, &u.instance));
  if (u.update.empty()) {
    return f.Fail("policy", "nothing to change: give policy, fair, rr, sjf, priority or preemption");
  }
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
