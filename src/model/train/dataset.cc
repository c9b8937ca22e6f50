#include "model/train/dataset.h"

#include <algorithm>
#include <numeric>

#include <nlohmann/json.hpp>

#include "model/train/lora.h"

namespace llmasos::train {
namespace {

using nlohmann::json;

Status LineError(size_t line, const std::string& what) {
  return InvalidArgumentError("data line " + std::to_string(line) + ": " + what);
}

StatusOr<std::string> StringField(const json& obj, const std::string& key, size_t line,
                                  const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) return LineError(line, "missing field '" + where + key + "'");
  if (!it->is_string()) return LineError(line, "field '" + where + key + "' must be a string");
  return it->get<std::string>();
}

StatusOr<std::vector<chat::Message>> MessagesOf(const json& j, size_t line) {
  std::vector<chat::Message> messages;
  if (j.contains("messages")) {
    const json& list = j["messages"];
    if (!list.is_array()) return LineError(line, "field 'messages' must be an array");
    if (list.empty()) return LineError(line, "field 'messages' is empty");
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string where = "messages[" + std::to_string(i) + "].";
      if (!list[i].is_object()) return LineError(line, "field 'messages[" + std::to_string(i) + "]' must be an object");
      chat::Message m;
      ASSIGN_OR_RETURN(m.role, StringField(list[i], "role", line, where));
      ASSIGN_OR_RETURN(m.content, StringField(list[i], "content", line, where));
      if (m.role.empty()) return LineError(line, "field '" + where + "role' is empty");
      messages.push_back(std::move(m));
    }
  } else if (j.contains("prompt") || j.contains("completion")) {
    chat::Message user{"user", ""}, assistant{"assistant", ""};
    ASSIGN_OR_RETURN(user.content, StringField(j, "prompt", line, ""));
    ASSIGN_OR_RETURN(assistant.content, StringField(j, "completion", line, ""));
    messages = {std::move(user), std::move(assistant)};
  } else {
    return LineError(line, "needs a 'messages' array or 'prompt' and 'completion' strings");
  }
  bool any_assistant = false;
  for (const chat::Message& m : messages) any_assistant |= m.role == "assistant";
  if (!any_assistant) return LineError(line, "the conversation has no assistant turn to learn from");
  return messages;
}

size_t CommonPrefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

}  // namespace

StatusOr<std::vector<TrainSequence>> ParseJsonl(std::string_view text,
                                                const ConversationEncoder& encode, size_t max_len,
                                                DataStats* stats) {
  std::vector<TrainSequence> out;
  DataStats st;
  size_t line = 0;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    std::string_view raw = text.substr(begin, end - begin);
    begin = end + 1;
    ++line;
    if (raw.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    ++st.num_lines;
    json j = json::parse(raw, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return LineError(line, "not valid JSON");
    if (!j.is_object()) return LineError(line, "must be a JSON object");
    ASSIGN_OR_RETURN(std::vector<chat::Message> messages, MessagesOf(j, line));
    auto full = encode(messages, false);
    if (!full.ok()) return LineError(line, full.status().message());
    TrainSequence seq;
    seq.source_line = line;
    seq.tokens = std::move(full).value();
    seq.is_target.assign(seq.tokens.size(), 0);
    // Each assistant turn: the tokens after the prompt that leads to it, up to the end of the
    // conversation rendered through it. Common prefixes rather than lengths, in case the
    // tokenizer merges across a turn boundary differently in the shorter rendering.
    for (size_t k = 0; k < messages.size(); ++k) {
      if (messages[k].role != "assistant") continue;
      std::span<const chat::Message> before(messages.data(), k), through(messages.data(), k + 1);
      std::vector<int32_t> prompt, upto;
      if (k > 0) {
        auto p = encode(before, true);
        if (!p.ok()) return LineError(line, p.status().message());
        prompt = std::move(p).value();
      }
      auto u = encode(through, false);
      if (!u.ok()) return LineError(line, u.status().message());
      upto = std::move(u).value();
      const size_t from = std::max<size_t>(1, CommonPrefix(prompt, seq.tokens));
      const size_t to = CommonPrefix(upto, seq.tokens);
      for (size_t i = from; i < to; ++i) seq.is_target[i] = 1;
    }
    if (seq.tokens.size() > max_len) {
      seq.tokens.resize(max_len);
      seq.is_target.resize(max_len);
      ++st.num_truncated;
    }
    const size_t targets = std::accumulate(seq.is_target.begin() + 1, seq.is_target.end(), size_t{0});
    if (targets == 0) {
      return LineError(line, "no assistant token falls within the first " + std::to_string(max_len) +
                                 " tokens (raise --max-len)");
    }
    st.num_tokens += seq.tokens.size();
    st.num_target_tokens += targets;
    out.push_back(std::move(seq));
  }
  if (out.empty()) return InvalidArgumentError("the data has no examples");
  if (stats != nullptr) *stats = st;
  return out;
}

void SplitHeldOut(std::vector<TrainSequence> all, float eval_fraction, uint64_t seed,
                  std::vector<TrainSequence>* train, std::vector<TrainSequence>* eval) {
  train->clear();
  eval->clear();
  size_t num_eval = static_cast<size_t>(eval_fraction * static_cast<float>(all.size()));
  if (eval_fraction > 0.0f && num_eval == 0 && all.size() >= 2) num_eval = 1;
  num_eval = std::min(num_eval, all.size() - 1);
  std::vector<std::pair<float, size_t>> order(all.size());
  for (size_t i = 0; i < all.size(); ++i) order[i] = {HashUniform(seed, 0x5E1, i, 0), i};
  std::sort(order.begin(), order.end());
  std::vector<uint8_t> held(all.size(), 0);
  for (size_t i = 0; i < num_eval; ++i) held[order[i].second] = 1;
  for (size_t i = 0; i < all.size(); ++i) (held[i] ? eval : train)->push_back(std::move(all[i]));
}

std::vector<std::vector<size_t>> PackRows(const std::vector<TrainSequence>& seqs, size_t max_len,
                                          uint64_t seed) {
  std::vector<std::pair<float, size_t>> order(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) order[i] = {HashUniform(seed, 0xBA7C, i, 0), i};
  std::sort(order.begin(), order.end());
  std::vector<std::vector<size_t>> rows;
  std::vector<size_t> used;  // tokens per row
  for (const auto& [key, idx] : order) {
    const size_t len = seqs[idx].tokens.size();
    size_t r = 0;
    while (r < rows.size() && used[r] + len > max_len) ++r;
    if (r == rows.size()) {
      rows.emplace_back();
      used.push_back(0);
    }
    rows[r].push_back(idx);
    used[r] += len;
  }
  return rows;
}

}  // namespace llmasos::train
