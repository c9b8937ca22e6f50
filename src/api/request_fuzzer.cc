// Feeds arbitrary request bodies through the request parser, for every endpoint, and a parsed
// generation request through ToProcessSpec, checking what each promises: no crash or undefined
// behaviour (ASan/UBSan), errors that are InvalidArgument, valid UTF-8 and start with the field
// path they report, and specs the kernel's own validation accepts. Every body also goes
// through the PUT /os/scheduler parser: an update it accepts must give settings the kernel
// accepts whatever they are applied to (the daemon merges it into each instance's settings
// and relies on that).
//
// Input: one byte picks the endpoint (and the prompt length for ToProcessSpec); the rest is
// the body.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "api/os_request.h"
#include "api/request.h"
#include "util/logging.h"
#include "util/utf8.h"

namespace {

using llmasos::Status;
using llmasos::StatusCode;
using namespace llmasos::api;

constexpr Endpoint kEndpoints[] = {
    Endpoint::kCompletions,    Endpoint::kChatCompletions, Endpoint::kEmbeddings,       Endpoint::kOllamaGenerate,
    Endpoint::kOllamaChat,     Endpoint::kOllamaEmbed,     Endpoint::kOllamaEmbeddings, Endpoint::kBatchLine,
};

void CheckError(const Status& s, const std::string& param) {
  CHECK(s.code() == StatusCode::kInvalidArgument) << s.ToString();
  CHECK(llmasos::IsValidUtf8(s.message())) << "error message is not UTF-8";
  if (!param.empty()) CHECK(s.message().rfind(param + ": ", 0) == 0) << param << " / " << s.message();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Endpoint endpoint = kEndpoints[data[0] % 8];
  const size_t prompt_tokens = 1 + data[0] / 8;  // 1..32
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string param;
  if (auto sched = ParseSchedulerUpdate(body, &param); !sched.ok()) {
    CheckError(sched.status(), param);
  } else {
    llmasos::kernel::SchedulingSettings odd;  // not the defaults: every field moved
    odd.policy = "fair";
    odd.policy_options.rr.slice_tokens = llmasos::kernel::kMaxSliceTokens;
    odd.policy_options.fair.tenant_weights = {{"t", llmasos::kernel::kMaxFairWeight}};
    odd.preemption.waiting_may_preempt = false;
    odd.preemption.mode = llmasos::kernel::PreemptChoice::kSwap;
    for (const auto& base : {llmasos::kernel::SchedulingSettings{}, odd}) {
      const Status st = llmasos::kernel::ValidateSchedulingSettings(sched->update.AppliedTo(base));
      CHECK(st.ok()) << st.ToString();
    }
  }
  param.clear();
  if (IsEmbedding(endpoint)) {
    auto r = ParseEmbedding(endpoint, body, &param);
    if (!r.ok()) {
      CheckError(r.status(), param);
      return 0;
    }
    CHECK(!r->model.empty());
    CHECK(r->inputs.size() <= kMaxEmbeddingInputs);
    return 0;
  }
  auto r = ParseGeneration(endpoint, body, &param);
  if (!r.ok()) {
    CheckError(r.status(), param);
    return 0;
  }
  CHECK(r->n >= 1 && r->n <= kMaxChoices);
  CHECK(r->stop.size() <= kMaxStopStrings);
  if (r->load_only) return 0;
  SpecDefaults d;
  d.context_tokens = 32;
  d.vocab_size = 64;
  d.max_tokens = 16;
  std::vector<llmasos::sampling::TokenId> prompt(prompt_tokens, 1);
  auto spec = ToProcessSpec(*r, prompt, d, &param);
  if (!spec.ok()) {
    CheckError(spec.status(), param);
    return 0;
  }
  CHECK(spec->limits.max_tokens >= 1);
  CHECK(spec->prompt.size() + static_cast<size_t>(spec->limits.max_tokens) <= d.context_tokens);
  const Status valid = llmasos::kernel::Process::Validate(*spec, llmasos::TimePoint{});
  CHECK(valid.ok()) << valid.ToString();
  return 0;
}
