// What the embedding routes share, whichever API they speak (/v1/embeddings, /api/embed,
// /api/embeddings): one process per input on the model's engine, and one sequence from the
// request body to the pump; each API supplies only the writer of its response body.
//
// Thread safety: ServeEmbeddings runs on a worker thread like any handler; the writer runs on
// the connection's executor (see generation.h's pump).
#ifndef LLMASOS_API_EMBEDDING_H_
#define LLMASOS_API_EMBEDDING_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "api/daemon.h"
#include "api/generation.h"
#include "api/request.h"

namespace llmasos::api {

// One embedding process per input of `request`: each input encoded (BOS as the tokenizer
// says), cut to fit the context when request.truncate, else an input longer than the context
// is InvalidArgument naming it with both numbers (*error_param: "input"). The caller as for
// PrepareProcess (its tenant; the request's priority clamped to its maximum).
StatusOr<std::vector<kernel::ProcessSpec>> EmbeddingProcesses(const manager::LoadedModel& model,
                                                              const ParsedEmbedding& request,
                                                              const auth::Caller* caller,
                                                              std::string* error_param);

// What both APIs' embedding responses share: each process's vector, in input order, from its
// end event. The subclass writes the body in Finish.
class EmbeddingWriter : public ResponseWriter {
 public:
  explicit EmbeddingWriter(const std::vector<kernel::ProcessId>& ids);
  std::string OnToken(const kernel::StreamEvent&) override { return ""; }
  std::string OnEnd(const kernel::StreamEvent& event) override;

 protected:
  std::vector<std::vector<float>> vectors_;  // [inputs][embd]
  int64_t prompt_tokens_ = 0;
  std::string error_;  // set when an embedding ended other than finished

 private:
  std::map<kernel::ProcessId, size_t> index_;
};

// The API's response writer for a request whose processes are `ids` (input order; empty for
// a request without input), made once the model's lease was taken at `leased_at`.
using EmbeddingWriterFactory = std::function<std::unique_ptr<EmbeddingWriter>(
    const ParsedEmbedding& request, const std::vector<kernel::ProcessId>& ids, TimePoint leased_at)>;

// The whole route once the API has chosen its endpoint: parses the body (400 naming the
// field), reads the request's deadline (the `timeout` field or its header), leases the model
// (AcquireForRequest's answers), makes the processes as the exchange's caller, starts them and
// pumps their vectors into the writer `make_writer` returns, charging their prompt tokens to
// the caller. A request without input (Ollama's way of loading a model) is answered with the
// writer's body for no vectors, running nothing.
void ServeEmbeddings(Daemon& daemon, const ExchangePtr& exchange, Endpoint endpoint,
                     const EmbeddingWriterFactory& make_writer);

}  // namespace llmasos::api

#endif  // LLMASOS_API_EMBEDDING_H_
