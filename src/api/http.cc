#include "api/http.h"

#include <charconv>

namespace llmasos::api {

std::string_view HttpRequest::PathParam(std::string_view name) const {
  for (const auto& [k, v] : path_params) {
    if (k == name) return v;
  }
  return {};
}

StatusOr<std::string> PercentDecode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      unsigned byte = 0;
      const char* digits = text.data() + i + 1;
      // Unsigned: from_chars takes no sign, so a full parse means two hex digits.
      if (i + 2 >= text.size() || std::from_chars(digits, digits + 2, byte, 16).ptr != digits + 2) {
        return InvalidArgumentError("a '%' escape needs two hex digits");
      }
      out.push_back(static_cast<char>(byte));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

StatusOr<HeaderList> ParseQuery(std::string_view query) {
  HeaderList out;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    auto name = PercentDecode(pair.substr(0, eq), true);
    if (!name.ok()) return InvalidArgumentError("query: " + name.status().message());
    std::string value;
    if (eq != std::string_view::npos) {
      auto v = PercentDecode(pair.substr(eq + 1), true);
      if (!v.ok()) return InvalidArgumentError("query parameter \"" + *name + "\": " + v.status().message());
      value = std::move(v).value();
    }
    out.emplace_back(std::move(name).value(), std::move(value));
  }
  return out;
}

void PushStream::Open() {
  exchange_->RunAfter(std::chrono::milliseconds(0), [self = shared_from_this()] {
    self->started_ = true;
    self->Probe();
    self->Drain();
  });
}

void PushStream::Drain() {
  if (!started_ || closed_ || writing_) return;
  std::string out;
  if (Collect(&out) || out.empty()) return;  // ended, or nothing yet (the source calls again)
  writing_ = true;
  exchange_->Write(std::move(out), [self = shared_from_this()](bool ok) {
    self->writing_ = false;
    if (!ok) {
      self->OnClientGone(/*seen_by_probe=*/false);
      return;
    }
    self->Drain();
  });
}

void PushStream::Probe() {
  if (closed_) return;
  if (exchange_->ClientGone()) {
    OnClientGone(/*seen_by_probe=*/true);
    return;
  }
  if (!KeepOpen()) return;
  exchange_->RunAfter(probe_interval_, [self = shared_from_this()] { self->Probe(); });
}

}  // namespace llmasos::api
