// Training data: JSONL files of chat conversations or prompt/completion pairs, turned into
// token sequences whose loss falls only on what the assistant says, packed into rows of at
// most max_len tokens, with a held-out split for evaluation.
//
// One JSON object per line (blank lines are skipped):
//   {"messages": [{"role": "system"|"user"|"assistant"|..., "content": "..."}, ...]}
//   {"prompt": "...", "completion": "..."}   (a user turn and the assistant's reply)
// Every assistant turn is a target: its reply and the end-of-turn marker the template writes
// after it, i.e. the tokens between the conversation rendered up to that turn with a
// generation prompt and the conversation rendered through it.
//
// Thread safety: functions of their arguments.
#ifndef LLMASOS_MODEL_TRAIN_DATASET_H_
#define LLMASOS_MODEL_TRAIN_DATASET_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/chat/chat_template.h"
#include "model/train/train_graph.h"
#include "util/status.h"

namespace llmasos::train {

// Renders and encodes a conversation as the model's chat template and tokenizer do
// (chat::EncodeConversation), ending with a generation prompt when asked.
using ConversationEncoder = std::function<StatusOr<std::vector<int32_t>>(
    std::span<const chat::Message> messages, bool add_generation_prompt)>;

struct DataStats {
  size_t num_lines = 0;       // non-blank lines
  size_t num_truncated = 0;   // examples cut to max_len tokens
  size_t num_tokens = 0;      // tokens over all examples (after truncation)
  size_t num_target_tokens = 0;
};

// Parses a whole JSONL text into one TrainSequence per line, each cut to max_len tokens.
// InvalidArgument naming the line (1-based) and the field for malformed JSON, a missing or
// mistyped field, an empty conversation, a conversation without an assistant turn, or one
// whose targets all fall beyond max_len.
StatusOr<std::vector<TrainSequence>> ParseJsonl(std::string_view text,
                                                const ConversationEncoder& encode, size_t max_len,
                                                DataStats* stats);

// Splits examples into training and held-out sets: a fraction eval_fraction of them (at least
// one when there are two or more and the fraction is positive), chosen by seed.
void SplitHeldOut(std::vector<TrainSequence> all, float eval_fraction, uint64_t seed,
                  std::vector<TrainSequence>* train, std::vector<TrainSequence>* eval);

// Packs sequences, in a seed-shuffled order, into rows of at most max_len tokens: each row is
// the indices of the sequences it holds (a first-fit over the shuffled order).
std::vector<std::vector<size_t>> PackRows(const std::vector<TrainSequence>& seqs, size_t max_len,
                                          uint64_t seed);

}  // namespace llmasos::train

#endif  // LLMASOS_MODEL_TRAIN_DATASET_H_
