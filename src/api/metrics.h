// The daemon's metrics, served at GET /metrics in the Prometheus text format (prometheus.h).
//
// Accumulated from each finished request's RequestRecord (HttpServerOptions::on_request_end):
//   llmasos_http_requests_total{route,method,status,model,tenant}
//   llmasos_prompt_tokens_total, llmasos_generation_tokens_total,
//   llmasos_prefix_cached_prompt_tokens_total, llmasos_preemptions_total,
//   llmasos_processes_ended_total{...,reason}                          {model,tenant}
//   histograms llmasos_time_to_first_token_seconds, llmasos_inter_token_latency_seconds,
//   llmasos_e2e_request_latency_seconds, llmasos_queue_time_seconds       {model,tenant}
// Read from the loaded instances and the manager at scrape time (per model):
//   llmasos_engine_generated_tokens_total (counted at each step, since the model loaded),
//   llmasos_processes{state=running|queued|preempted|swapped}, llmasos_kv_blocks{state},
//   llmasos_kv_cache_usage_ratio, llmasos_kv_block_utilisation_ratio,
//   llmasos_prefix_cache_hit_rate, llmasos_prefix_cache_{queried,hit}_tokens_total,
//   llmasos_model_loads_total, llmasos_model_load_failures_total, llmasos_model_unloads_total,
//   llmasos_model_loaded; plus what cluster routers read, under vLLM's names and meanings:
//   vllm:num_requests_waiting, vllm:num_requests_running, vllm:kv_cache_usage_perc (0..1),
//   vllm:cache_config_info{block_size,num_gpu_blocks} (value 1).
// "model" is "name@version"; the vllm: gauges carry it as model_name, as vLLM does.
//
// Thread safety: every method may be called from any thread.
#ifndef LLMASOS_API_METRICS_H_
#define LLMASOS_API_METRICS_H_

#include <string>

#include "api/http.h"
#include "api/prometheus.h"
#include "services/manager/model_manager.h"

namespace llmasos::api {

class DaemonMetrics {
 public:
  DaemonMetrics();

  // Counts a finished request and what its processes did.
  void OnRequestEnd(const RequestRecord& record);
  // The whole exposition: the accumulated families, then the instances' gauges (read from
  // `manager` now).
  std::string Render(manager::ModelManager& manager) const;

  // For tests.
  const prom::Counter& requests() const { return requests_; }

 private:
  prom::Counter requests_;
  prom::Counter prompt_tokens_;
  prom::Counter generation_tokens_;
  prom::Counter cached_prompt_tokens_;
  prom::Counter preemptions_;
  prom::Counter processes_ended_;
  prom::Histogram ttft_;
  prom::Histogram inter_token_;
  prom::Histogram e2e_;
  prom::Histogram queue_;
};

}  // namespace llmasos::api

#endif  // LLMASOS_API_METRICS_H_
