#include "api/batch_file.h"

#include <unistd.h>

#include <fstream>
#include <iterator>
#include <map>
#include <thread>

#include "api/json_body.h"
#include "model/chat/conversation.h"

namespace llmasos::api {

StatusOr<BatchInput> ReadBatchInput(const std::string& path, const std::string& display_name,
                                    const tokenizer::Tokenizer& tok, const BatchInputOptions& options,
                                    const std::set<std::string>& done) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot open prompts file '" + display_name + "'");
  BatchInput input;
  std::set<std::string> ids;
  std::string line;
  for (size_t line_no = 1; std::getline(in, line); ++line_no) {
    const std::string where = display_name + ":" + std::to_string(line_no);
    if (line.size() > kMaxBatchLineBytes) return InvalidArgumentError(where + ": line longer than 1 MiB");
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (input.num_prompts >= kMaxBatchPrompts) return InvalidArgumentError(where + ": more than 2^20 prompts");
    auto j = ParseJsonObject(line);
    if (!j.ok()) return j.status().Annotate(where);
    BatchLine b;
    b.line_no = line_no;
    b.id = std::to_string(line_no);
    if (auto it = j->find("id"); it != j->end()) {
      if (!it->is_string()) return InvalidArgumentError(where + ": id: must be a string");
      b.id = it->get<std::string>();
    }
    if (!ids.insert(b.id).second) return InvalidArgumentError(where + ": id '" + b.id + "' repeats");
    ++input.num_prompts;
    if (done.count(b.id)) {
      ++input.num_done;
      continue;
    }
    auto request = ParseGenerationJson(Endpoint::kBatchLine, *j);
    if (!request.ok()) return request.status().Annotate(where);
    input.ignored_fields.insert(request->ignored_fields.begin(), request->ignored_fields.end());
    std::vector<sampling::TokenId> prompt;
    if (request->use_chat_template) {
      if (options.chat_template == nullptr) {
        return InvalidArgumentError(where + ": the model has no chat template (" + options.chat_template_error +
                                    "); give \"raw\": true for a plain completion");
      }
      auto encoded = chat::EncodeConversation(tok, *options.chat_template, request->messages, true);
      if (!encoded.ok()) return encoded.status().Annotate(where);
      prompt = *std::move(encoded);
    } else {
      prompt = tok.Encode(request->prompt, true, false);
    }
    b.prompt_tokens = prompt.size();
    auto spec = ToProcessSpec(*request, std::move(prompt), options.defaults);
    if (!spec.ok()) return spec.status().Annotate(where);
    b.spec = *std::move(spec);
    b.stop = options.stop;
    b.stop.insert(b.stop.end(), request->stop.begin(), request->stop.end());
    if (options.chat_template != nullptr) {
      for (std::string& e : options.chat_template->EndOfTurnStrings()) b.stop.push_back(std::move(e));
    }
    input.todo.push_back(std::move(b));
  }
  if (in.bad()) return IoError("reading '" + display_name + "' failed");
  return input;
}

StatusOr<std::set<std::string>> ReadBatchResultIds(const std::string& path) {
  std::set<std::string> done;
  std::ifstream in(path, std::ios::binary);
  if (!in) return done;  // no output yet
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t keep = 0, pos = 0;
  while (pos < content.size()) {
    size_t nl = content.find('\n', pos);
    if (nl == std::string::npos) break;  // an unterminated last line: dropped below
    auto j = nlohmann::json::parse(content.substr(pos, nl - pos), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("id") || !j["id"].is_string()) {
      return DataLossError("output file '" + path + "' line at byte " + std::to_string(pos) +
                           " is not a result line; refusing to append to it");
    }
    done.insert(j["id"].get<std::string>());
    pos = nl + 1;
    keep = pos;
  }
  if (keep < content.size() && truncate(path.c_str(), static_cast<off_t>(keep)) != 0) {
    return IoError("cannot trim the cut-short last line of '" + path + "'");
  }
  return done;
}

Status ApplyBatchDefaults(const nlohmann::json& object, BatchInputOptions* options, std::string* bad_field) {
  ASSIGN_OR_RETURN(ParsedGeneration r, ParseBatchOptions(object, bad_field));
  ApplySamplingFields(r, options->defaults.context_tokens, &options->defaults.sampling);
  if (r.max_tokens) options->defaults.max_tokens = *r.max_tokens;
  options->stop.insert(options->stop.end(), r.stop.begin(), r.stop.end());
  return OkStatus();
}

namespace {

// A submitted line: its result so far.
struct Running {
  const BatchLine* line;
  std::string text;
};

}  // namespace

StatusOr<BatchRunResult> RunBatch(kernel::EngineThread& engine, const std::vector<BatchLine>& lines, FILE* out,
                                  const BatchRunOptions& options) {
  CHECK(options.max_in_flight >= 1);
  BatchRunResult result;
  Status write_error;
  auto write_result = [&](const nlohmann::json& j) {
    const std::string text = j.dump() + "\n";
    // One write per line: a crash cuts at most this one, which ReadBatchResultIds drops.
    if (std::fwrite(text.data(), 1, text.size(), out) != text.size() || std::fflush(out) != 0) {
      write_error = IoError("writing a result line failed");
      return;
    }
    ++result.num_written;
    if (options.on_result) options.on_result(result.num_written, result.num_tokens);
  };
  // Every process streams into one channel; its events name the process. Leaving this
  // function drops the channel, which cancels whatever is still in flight.
  kernel::Channel channel;
  std::map<kernel::ProcessId, Running> running;
  size_t next = 0;
  bool engine_full = false;
  while (next < lines.size() || !running.empty()) {
    if (options.should_stop && options.should_stop()) {
      result.stopped = true;
      return result;
    }
    engine_full = false;
    while (next < lines.size() && running.size() < options.max_in_flight && !engine_full) {
      const BatchLine& line = lines[next];
      kernel::ProcessSpec spec = line.spec;
      if (options.priority) spec.priority = *options.priority;
      auto id = engine.SubmitTo(channel, std::move(spec), line.stop);
      if (!id.ok() && id.status().code() == StatusCode::kUnavailable) {
        engine_full = true;  // at its admission bound: try again after the next event
        break;
      }
      ++next;
      if (!id.ok()) {
        write_result({{"id", line.id}, {"text", ""}, {"finish_reason", "error"}, {"prompt_tokens", line.prompt_tokens},
                      {"completion_tokens", 0}, {"error", id.status().ToString()}});
        if (!write_error.ok()) return write_error;
        continue;
      }
      running.emplace(*id, Running{&line, ""});
    }
    if (running.empty()) {
      if (engine_full) std::this_thread::sleep_for(options.poll);
      continue;
    }
    // A bounded wait, so a stop request is noticed while a long step runs.
    StatusOr<kernel::StreamEvent> event = channel.Next(options.poll);
    if (!event.ok()) {
      if (event.status().code() == StatusCode::kUnavailable) continue;
      return event.status();
    }
    auto it = running.find(event->id);
    if (it == running.end()) continue;
    Running& r = it->second;
    r.text += event->text;
    if (event->kind == kernel::StreamEvent::Kind::kToken) {
      ++result.num_tokens;
    } else {
      if (event->reason == kernel::EndReason::kShutdown) {
        // The engine stopped (its model unloaded, the program ends): the line is not done.
        return UnavailableError("the model's engine stopped during the batch");
      }
      if (event->state != kernel::ProcessState::kFinished) {
        // A failed step: no result line, as for a crash, so a rerun tries the line again.
        if (Status engine_error = engine.Stats().error; !engine_error.ok()) return engine_error;
      }
      // Ended by the scheduler at max_tokens: "length"; by an end-of-generation token or a
      // stop string: "stop".
      const bool length = event->reason == kernel::EndReason::kLength;
      nlohmann::json j = {{"id", r.line->id}, {"text", r.text}, {"finish_reason", length ? "length" : "stop"},
                          {"prompt_tokens", r.line->prompt_tokens},
                          {"completion_tokens", event->accounting.num_generated_tokens}};
      if (event->state == kernel::ProcessState::kFailed || event->state == kernel::ProcessState::kCancelled) {
        j["finish_reason"] = "error";
        j["error"] = event->message.empty() ? std::string(kernel::EndReasonName(event->reason)) : event->message;
      }
      running.erase(it);
      write_result(j);
      if (!write_error.ok()) return write_error;
    }
    if (options.on_event) options.on_event(result.num_written, result.num_tokens);
  }
  return result;
}

}  // namespace llmasos::api
