// libFuzzer harness for the example Redis server's command parser
// (examples/redis/resp_parser.h), run by scripts/fuzz with ASan and UBSan.
//
// As for HTTP: no crash, and the same commands (or the same protocol
// error) whether the bytes arrive at once or in pieces the input's first
// byte chooses, since the server re-parses everything unconsumed as more
// arrives.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "examples/redis/resp_parser.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

template <class Step>
std::vector<std::string> run(std::string_view data, Step step) {
  std::vector<std::string> out;
  redis::parser_limits limits;
  limits.max_bulk = 64 * 1024;  // keep executions fast
  limits.max_args = 4096;
  redis::command_parser parser(limits);
  size_t begin = 0, end = 0;
  for (int turn = 0;; turn++) {
    std::string_view in = data.substr(begin, end - begin);
    redis::parse_result r = parser.parse(in);
    if (r.state == redis::parse_state::complete) {
      check(r.consumed > 0 && r.consumed <= in.size());
      std::string line = "#" + std::to_string(r.consumed);
      for (const std::string& a : parser.args()) line += " [" + a + "]";
      out.push_back(line);
      begin += r.consumed;
      parser.reset();
      continue;
    }
    if (r.state == redis::parse_state::error) {
      check(!r.error.empty() && r.error.find('\n') == std::string::npos && r.error.find('\r') == std::string::npos);
      out.push_back("error " + r.error);
      return out;
    }
    if (end == data.size()) return out;
    end = std::min(data.size(), end + step(turn));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1) return 0;
  const uint8_t seed = bytes[0];
  std::string_view data(reinterpret_cast<const char*>(bytes) + 1, size - 1);
  auto whole = run(data, [&](int) { return data.size(); });
  auto pieces = run(data, [&](int turn) { return static_cast<size_t>(1 + (seed + turn * 5) % 11); });
  check(whole == pieces);
  return 0;
}
