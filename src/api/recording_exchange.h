// A test Exchange that keeps what a handler answered (Respond only; streams are dropped).
// For the API layer's unit tests.
#ifndef LLMASOS_API_RECORDING_EXCHANGE_H_
#define LLMASOS_API_RECORDING_EXCHANGE_H_

#include <chrono>
#include <functional>
#include <string>
#include <utility>

#include "api/http.h"

namespace llmasos::api {

class RecordingExchange : public Exchange {
 public:
  RecordingExchange(std::string method, std::string path, HeaderList headers = {}) {
    request_.method = std::move(method);
    request_.path = std::move(path);
    request_.headers = std::move(headers);
  }
  const HttpRequest& request() const override { return request_; }
  RequestRecord& record() override { return record_; }
  void Respond(int status, std::string content_type, std::string body, HeaderList headers) override {
    status_ = status;
    content_type_ = std::move(content_type);
    body_ = std::move(body);
    headers_ = std::move(headers);
  }
  void StartStream(int, std::string, HeaderList) override {}
  void Write(std::string, std::function<void(bool)>) override {}
  void EndStream() override {}
  bool ClientGone() override { return false; }
  void RunAfter(std::chrono::milliseconds, std::function<void()>) override {}
  void Offload(std::function<void()>) override {}
  Waker MakeWaker() override { return [](std::function<void()>) {}; }

  // The value of the first response header named `name` (exact case); "" if none.
  std::string ResponseHeader(const std::string& name) const {
    for (const auto& [k, v] : headers_) {
      if (k == name) return v;
    }
    return "";
  }

  HttpRequest request_;
  RequestRecord record_;
  int status_ = 0;
  std::string content_type_, body_;
  HeaderList headers_;
};

}  // namespace llmasos::api

#endif  // LLMASOS_API_RECORDING_EXCHANGE_H_
