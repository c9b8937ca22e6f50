#include "api/batch_job.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>

#include "api/batch_file.h"

namespace llmasos::api {
namespace {

using nlohmann::json;

constexpr size_t kMaxPathBytes = 4096;

struct BatchJobSpec {
  std::string model;
  std::string input;
  std::string output;
  json options = json::object();
  int64_t parallel = kDefaultBatchJobParallel;
};

// The spec's fields, each checked; errors "FIELD: ..." with *bad_field set.
StatusOr<BatchJobSpec> ParseSpec(const json& body, std::string* bad_field) {
  auto fail = [&](const std::string& field, const std::string& what) {
    return jobs::SpecFieldError(bad_field, field, what);
  };
  if (!body.is_object()) return InvalidArgumentError("a job's spec must be a JSON object");
  BatchJobSpec s;
  for (auto it = body.begin(); it != body.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "kind") continue;
    if (key == "model" || key == "input" || key == "output") {
      if (!v.is_string() || v.get_ref<const std::string&>().empty()) return fail(key, "must be a non-empty string");
      const std::string& text = v.get_ref<const std::string&>();
      if (text.size() > kMaxPathBytes) return fail(key, "is longer than " + std::to_string(kMaxPathBytes) + " bytes");
      if (text.find('\0') != std::string::npos) return fail(key, "holds a NUL byte");
      (key == "model" ? s.model : key == "input" ? s.input : s.output) = text;
    } else if (key == "options") {
      if (!v.is_object()) return fail(key, "must be a JSON object");
      s.options = v;
    } else if (key == "parallel") {
      if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > kMaxBatchJobParallel) {
        return fail(key, "must be a whole number in [1, " + std::to_string(kMaxBatchJobParallel) + "]");
      }
      s.parallel = v.get<int64_t>();
    } else {
      return fail(key.substr(0, 64), "unknown field (a batch job has model, input, output, options, parallel)");
    }
  }
  for (const char* key : {"model", "input", "output"}) {
    if (!body.contains(key)) return fail(key, "is required");
  }
  for (const std::string* path : {&s.input, &s.output}) {
    const char* key = path == &s.input ? "input" : "output";
    if (!std::filesystem::path(*path).is_absolute()) return fail(key, "must be an absolute path on the daemon's machine");
  }
  return s;
}

class BatchJobKind : public jobs::JobKind {
 public:
  BatchJobKind(manager::ModelManager* models, registry::Registry* registry) : models_(models), registry_(registry) {}
  std::string_view name() const override { return "batch"; }

  Status Validate(const json& body, std::string* bad_field) override {
    ASSIGN_OR_RETURN(BatchJobSpec spec, ParseSpec(body, bad_field));
    auto fail = [&](const std::string& field, const std::string& what) {
      return jobs::SpecFieldError(bad_field, field, what);
    };
    std::error_code ec;
    if (!std::filesystem::is_regular_file(spec.input, ec)) return fail("input", "no file '" + spec.input + "'");
    const std::filesystem::path out(spec.output);
    if (std::filesystem::is_directory(out, ec)) return fail("output", "'" + spec.output + "' is a directory");
    if (!std::filesystem::is_directory(out.parent_path(), ec)) {
      return fail("output", "no directory '" + out.parent_path().string() + "'");
    }
    if (std::filesystem::equivalent(spec.input, out, ec)) return fail("output", "is the input file");
    BatchInputOptions scratch;
    RETURN_IF_ERROR(ApplyBatchDefaults(spec.options, &scratch, bad_field));
    // "base+adapter[:scale]" names an adapter: both must be in the registry.
    StatusOr<manager::AdapterSpec> refs = manager::ParseAdapterSpec(spec.model);
    if (!refs.ok()) return fail("model", refs.status().message());
    if (auto resolved = registry_->Resolve(refs->base); !resolved.ok()) {
      return fail("model", resolved.status().message());
    }
    if (!refs->adapter.empty()) {
      if (auto resolved = registry_->Resolve(refs->adapter); !resolved.ok()) {
        return fail("model", "adapter: " + resolved.status().message());
      }
    }
    return OkStatus();
  }

  StatusOr<jobs::JobOutcome> Run(const jobs::JobRecord& job, jobs::JobControl& control) override {
    ASSIGN_OR_RETURN(BatchJobSpec spec, ParseSpec(json::parse(job.spec, nullptr, false), nullptr));
    manager::AcquireOptions acquire;
    acquire.max_wait = std::chrono::minutes(10);
    auto lease = models_->Acquire(spec.model, acquire);
    if (!lease.ok()) return lease.status().Annotate("loading '" + spec.model + "'");
    const manager::LoadedModel& m = lease->model();
    if (m.engine == nullptr || m.tokenizer == nullptr) {
      return FailedPreconditionError("'" + spec.model + "' has no engine in this daemon");
    }
    // `llmasos batch`'s defaults: the CLI's sampling with its seed and 256 tokens.
    BatchInputOptions in;
    in.defaults.sampling.seed = sampling::kDefaultSeed;
    in.defaults.max_tokens = kDefaultBatchMaxTokens;
    in.defaults.context_tokens = m.context_tokens;
    in.defaults.vocab_size = m.tokenizer->vocab_size();
    if (m.chat_template) {
      in.chat_template = &*m.chat_template;
    } else {
      in.chat_template_error = m.chat_template_error.message();
    }
    RETURN_IF_ERROR(ApplyBatchDefaults(spec.options, &in, nullptr));

    ASSIGN_OR_RETURN(std::set<std::string> done, ReadBatchResultIds(spec.output));
    const std::string input_name = std::filesystem::path(spec.input).filename().string();
    ASSIGN_OR_RETURN(BatchInput input, ReadBatchInput(spec.input, input_name, *m.tokenizer, in, done));
    // The adapter the model reference named, if any, for every line (as the HTTP routes do).
    for (BatchLine& line : input.todo) line.spec.adapter = lease->adapter();
    if (!input.ignored_fields.empty()) {
      std::string names;
      for (const std::string& n : input.ignored_fields) names += (names.empty() ? "" : ", ") + n;
      control.Log("ignored fields (not part of the line format): " + names);
    }
    const size_t total = input.num_prompts;
    control.Log("batch: " + std::to_string(total) + " prompts, " + std::to_string(input.num_done) +
                " already answered, " + std::to_string(input.todo.size()) + " to run, " +
                std::to_string(spec.parallel) + " at a time");
    const auto t0 = std::chrono::steady_clock::now();
    auto progress = [&](size_t written, size_t tokens) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const size_t answered = input.num_done + written;
      jobs::JobProgress p;
      p.step = static_cast<int64_t>(answered);
      p.total_steps = static_cast<int64_t>(total);
      p.epoch = 0;
      p.tokens_per_second = secs > 0 ? static_cast<double>(tokens) / secs : 0.0;
      p.seconds_left = written > 0 ? secs / static_cast<double>(written) * static_cast<double>(total - answered) : -1.0;
      control.SetProgress(p);
    };
    progress(0, 0);

    FILE* out = std::fopen(spec.output.c_str(), "ab");
    if (out == nullptr) return IoError("cannot open the output '" + spec.output + "' for appending");
    BatchRunOptions ro;
    ro.max_in_flight = static_cast<size_t>(spec.parallel);
    ro.priority = static_cast<int32_t>(-kMaxPriority);  // interactive requests first
    ro.should_stop = [&] { return control.StopRequested(); };
    ro.on_result = progress;
    auto run = RunBatch(*m.engine, input.todo, out, ro);
    if (std::fclose(out) != 0 && run.ok()) return IoError("closing the output '" + spec.output + "' failed");
    if (!run.ok()) return run.status();

    jobs::JobOutcome outcome;
    const size_t answered = input.num_done + run->num_written;
    if (run->stopped) {
      outcome.stopped_at = std::to_string(answered) + " of " + std::to_string(total) + " prompts";
      return outcome;
    }
    outcome.completed = true;
    outcome.result = {{"output", spec.output}, {"prompts", total}, {"answered_this_run", run->num_written},
                      {"completion_tokens_this_run", run->num_tokens}};
    outcome.summary = "succeeded: " + std::to_string(total) + " prompts answered (" +
                      std::to_string(run->num_written) + " in this run)";
    return outcome;
  }

 private:
  manager::ModelManager* const models_;
  registry::Registry* const registry_;
};

}  // namespace

std::unique_ptr<jobs::JobKind> NewBatchJobKind(manager::ModelManager* models, registry::Registry* registry) {
  return std::make_unique<BatchJobKind>(models, registry);
}

}  // namespace llmasos::api
