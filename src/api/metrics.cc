#include "api/metrics.h"

#include <chrono>
#include <map>
#include <set>

namespace llmasos::api {
namespace {

// Seconds; the first token and queue waits range from a cached prompt on an idle engine to
// minutes behind a long line.
const std::vector<double> kWaitBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
const std::vector<double> kTokenBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
const std::vector<double> kRequestBounds = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};

std::string Label(const registry::Manifest& m) { return m.name + "@" + m.version; }

// A client may send any method token: the label keeps HTTP's own and folds the rest, so no
// client can make series without end.
std::string MethodLabel(const std::string& method) {
  for (const char* known : {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
    if (method == known) return method;
  }
  return "other";
}

}  // namespace

DaemonMetrics::DaemonMetrics()
    : requests_("llmasos_http_requests", "HTTP requests by route, method and status",
                {"route", "method", "status", "model", "tenant"}),
      prompt_tokens_("llmasos_prompt_tokens", "prompt tokens of ended processes", {"model", "tenant"}),
      generation_tokens_("llmasos_generation_tokens", "generated tokens of ended processes", {"model", "tenant"}),
      cached_prompt_tokens_("llmasos_prefix_cached_prompt_tokens",
                            "prompt tokens whose KV came from the prefix cache", {"model", "tenant"}),
      preemptions_("llmasos_preemptions", "times ended processes were preempted", {"model", "tenant"}),
      processes_ended_("llmasos_processes_ended", "processes ended, by how they ended",
                       {"model", "tenant", "reason"}),
      ttft_("llmasos_time_to_first_token_seconds", "from submission to the first generated token",
            {"model", "tenant"}, kWaitBounds),
      inter_token_("llmasos_inter_token_latency_seconds",
                   "time between generated tokens (each process's mean gap, once per gap)", {"model", "tenant"},
                   kTokenBounds),
      e2e_("llmasos_e2e_request_latency_seconds", "from the request read to its response complete",
           {"model", "tenant"}, kRequestBounds),
      queue_("llmasos_queue_time_seconds", "time a process waited queued or preempted", {"model", "tenant"},
             kWaitBounds) {}

void DaemonMetrics::OnRequestEnd(const RequestRecord& r) {
  const std::string route = r.route.empty() ? "none" : r.route;
  requests_.Add({route, MethodLabel(r.method), std::to_string(r.status), r.model, r.tenant});
  if (r.processes.empty()) return;
  const std::vector<std::string> who = {r.model, r.tenant};
  for (const ProcessRecord& p : r.processes) {
    prompt_tokens_.Add(who, static_cast<double>(p.prompt_tokens));
    generation_tokens_.Add(who, static_cast<double>(p.generated_tokens));
    cached_prompt_tokens_.Add(who, static_cast<double>(p.cached_prompt_tokens));
    preemptions_.Add(who, static_cast<double>(p.preemptions));
    processes_ended_.Add({r.model, r.tenant, p.end_reason});
    if (p.ttft_seconds) ttft_.Observe(who, *p.ttft_seconds);
    // The kernel keeps the first and last token times, not each gap: the mean gap stands for
    // each of the generated - 1 gaps, so _sum and _count are exact and buckets smoothed.
    if (p.generated_tokens >= 2) {
      const uint64_t gaps = static_cast<uint64_t>(p.generated_tokens - 1);
      inter_token_.Observe(who, p.decode_seconds / static_cast<double>(gaps), gaps);
    }
    queue_.Observe(who, p.queue_seconds);
  }
  e2e_.Observe(who, r.seconds);
}

std::string DaemonMetrics::Render(manager::ModelManager& manager) const {
  std::string out;
  requests_.Write(&out);
  prompt_tokens_.Write(&out);
  generation_tokens_.Write(&out);
  cached_prompt_tokens_.Write(&out);
  preemptions_.Write(&out);
  processes_ended_.Write(&out);
  ttft_.Write(&out);
  inter_token_.Write(&out);
  e2e_.Write(&out);
  queue_.Write(&out);

  struct Instance {
    std::string model;
    kernel::EngineThreadStats stats;
    std::set<std::string> running_adapters, waiting_adapters;  // LoraWeights::name
  };
  std::vector<Instance> instances;
  manager.ForEachLoaded([&](uint64_t, const registry::Manifest& m, const manager::LoadedModel& loaded) {
    if (loaded.engine == nullptr) return;
    Instance i{Label(m), loaded.engine->Stats(), {}, {}};
    for (const kernel::ProcessSnapshot& p : loaded.engine->Processes()) {
      if (p.adapter.empty()) continue;
      (p.state == kernel::ProcessState::kRunning ? i.running_adapters : i.waiting_adapters).insert(p.adapter);
    }
    instances.push_back(std::move(i));
  });

  using prom::WriteFamily;
  using prom::WriteSample;
  WriteFamily(&out, "llmasos_processes", "gauge",
              "live processes by state (preempted: waiting to resume; swapped: of those, KV in swap)");
  for (const Instance& i : instances) {
    const kernel::SchedulerStats& s = i.stats.scheduler;
    WriteSample(&out, "llmasos_processes", {{"model", i.model}, {"state", "running"}}, s.num_running);
    WriteSample(&out, "llmasos_processes", {{"model", i.model}, {"state", "queued"}}, s.num_queued);
    WriteSample(&out, "llmasos_processes", {{"model", i.model}, {"state", "preempted"}}, s.num_preempted);
    WriteSample(&out, "llmasos_processes", {{"model", i.model}, {"state", "swapped"}}, s.num_swapped);
  }
  // Counted at each step, not at a process's end: what throughput charts read (the console,
  // `llmasos top`). Per instance, so it starts again at 0 when a model is loaded again.
  WriteFamily(&out, "llmasos_engine_generated_tokens_total", "counter",
              "tokens generated by the model's engine, counted at each step, since the model loaded");
  for (const Instance& i : instances) {
    WriteSample(&out, "llmasos_engine_generated_tokens_total", {{"model", i.model}},
                static_cast<double>(i.stats.num_sampled));
  }
  WriteFamily(&out, "llmasos_engine_interrupted_steps_total", "counter",
              "steps abandoned at a layer boundary for a higher-priority arrival (priority policy), "
              "since the model loaded");
  for (const Instance& i : instances) {
    WriteSample(&out, "llmasos_engine_interrupted_steps_total", {{"model", i.model}},
                static_cast<double>(i.stats.scheduler.num_abandoned_steps));
  }
  WriteFamily(&out, "llmasos_kv_blocks", "gauge", "KV pool blocks by state (swapped: in swap space)");
  for (const Instance& i : instances) {
    const kernel::KvStats& kv = i.stats.kv;
    WriteSample(&out, "llmasos_kv_blocks", {{"model", i.model}, {"state", "used"}}, kv.used_blocks);
    WriteSample(&out, "llmasos_kv_blocks", {{"model", i.model}, {"state", "cached"}}, kv.cached_blocks);
    WriteSample(&out, "llmasos_kv_blocks", {{"model", i.model}, {"state", "free"}}, kv.free_blocks);
    WriteSample(&out, "llmasos_kv_blocks", {{"model", i.model}, {"state", "swapped"}}, kv.swapped_blocks);
  }
  WriteFamily(&out, "llmasos_kv_window_dropped_blocks_total", "counter",
              "KV blocks given back to the pool because they left their layers' attention window, "
              "since the model loaded");
  for (const Instance& i : instances) {
    WriteSample(&out, "llmasos_kv_window_dropped_blocks_total", {{"model", i.model}},
                static_cast<double>(i.stats.kv.dropped_blocks));
  }
  auto usage = [](const kernel::KvStats& kv) {
    return kv.total_blocks == 0 ? 0.0 : static_cast<double>(kv.used_blocks) / static_cast<double>(kv.total_blocks);
  };
  WriteFamily(&out, "llmasos_kv_cache_usage_ratio", "gauge", "used KV blocks / all KV blocks");
  for (const Instance& i : instances) {
    WriteSample(&out, "llmasos_kv_cache_usage_ratio", {{"model", i.model}}, usage(i.stats.kv));
  }
  WriteFamily(&out, "llmasos_kv_block_utilisation_ratio", "gauge",
              "tokens stored in used KV blocks / their capacity (internal fragmentation)");
  for (const Instance& i : instances) {
    WriteSample(&out, "llmasos_kv_block_utilisation_ratio", {{"model", i.model}}, i.stats.kv.utilisation);
  }
  WriteFamily(&out, "llmasos_prefix_cache_hit_rate", "gauge",
              "prompt tokens found in the prefix cache / prompt tokens looked up, since the model loaded");
  for (const Instance& i : instances) {
    WriteSample(&out, "llmasos_prefix_cache_hit_rate", {{"model", i.model}}, i.stats.kv.prefix_hit_rate);
  }
  WriteFamily(&out, "llmasos_prefix_cache_queried_tokens_total", "counter",
              "prompt tokens looked up in the prefix cache since the model loaded");
  for (const Instance& i : instances) {
    WriteSample(&out, "llmasos_prefix_cache_queried_tokens_total", {{"model", i.model}},
                static_cast<double>(i.stats.kv.prefix_queried_tokens));
  }
  WriteFamily(&out, "llmasos_prefix_cache_hit_tokens_total", "counter",
              "prompt tokens found in the prefix cache since the model loaded");
  for (const Instance& i : instances) {
    WriteSample(&out, "llmasos_prefix_cache_hit_tokens_total", {{"model", i.model}},
                static_cast<double>(i.stats.kv.prefix_hit_tokens));
  }

  const std::map<std::string, manager::LoadCounts> loads = manager.LoadCounters();
  WriteFamily(&out, "llmasos_model_loads_total", "counter", "model loads that succeeded");
  for (const auto& [model, c] : loads) WriteSample(&out, "llmasos_model_loads_total", {{"model", model}}, c.loads);
  WriteFamily(&out, "llmasos_model_load_failures_total", "counter", "model loads that failed");
  for (const auto& [model, c] : loads) {
    WriteSample(&out, "llmasos_model_load_failures_total", {{"model", model}}, c.failed_loads);
  }
  WriteFamily(&out, "llmasos_model_unloads_total", "counter", "model unloads");
  for (const auto& [model, c] : loads) WriteSample(&out, "llmasos_model_unloads_total", {{"model", model}}, c.unloads);
  WriteFamily(&out, "llmasos_model_loaded", "gauge", "1 for each model instance loaded now");
  for (const Instance& i : instances) WriteSample(&out, "llmasos_model_loaded", {{"model", i.model}}, 1);

  // vLLM's names and meanings, for cluster routers (the Gateway API Inference Extension's
  // endpoint picker, llm-d, the vLLM and SGLang routers).
  WriteFamily(&out, "vllm:num_requests_waiting", "gauge", "requests waiting to be scheduled");
  for (const Instance& i : instances) {
    WriteSample(&out, "vllm:num_requests_waiting", {{"model_name", i.model}}, i.stats.scheduler.num_queued);
  }
  WriteFamily(&out, "vllm:num_requests_running", "gauge", "requests being processed");
  for (const Instance& i : instances) {
    WriteSample(&out, "vllm:num_requests_running", {{"model_name", i.model}}, i.stats.scheduler.num_running);
  }
  WriteFamily(&out, "vllm:kv_cache_usage_perc", "gauge", "KV-cache usage: 1 means 100 percent");
  for (const Instance& i : instances) {
    WriteSample(&out, "vllm:kv_cache_usage_perc", {{"model_name", i.model}}, usage(i.stats.kv));
  }
  WriteFamily(&out, "vllm:cache_config_info", "gauge", "information of the KV cache configuration");
  for (const Instance& i : instances) {
    WriteSample(&out, "vllm:cache_config_info",
                {{"block_size", std::to_string(i.stats.kv.block_tokens)},
                 {"num_gpu_blocks", std::to_string(i.stats.kv.total_blocks)},
                 {"model_name", i.model}},
                1);
  }
  // vLLM's LoRA gauge: the adapters with running and with waiting requests as comma-separated
  // names, the most adapters one batch may hold, and as its value the time of the update
  // (Unix seconds), by which a router picks the latest sample. model_name is ours (as on the
  // gauges above): one daemon serves several base models.
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto join = [](const std::set<std::string>& names) {
    std::string out;
    for (const std::string& n : names) out += (out.empty() ? "" : ",") + n;
    return out;
  };
  WriteFamily(&out, "vllm:lora_requests_info", "gauge", "Running stats on lora requests.");
  for (const Instance& i : instances) {
    WriteSample(&out, "vllm:lora_requests_info",
                {{"running_lora_adapters", join(i.running_adapters)},
                 {"max_lora", std::to_string(manager.options().max_adapters)},
                 {"waiting_lora_adapters", join(i.waiting_adapters)},
                 {"model_name", i.model}},
                now);
  }
  return out;
}

}  // namespace llmasos::api
