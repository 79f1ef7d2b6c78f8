// libFuzzer harness for the example HTTP server's request parser
// (examples/http/request_parser.h), run by scripts/fuzz with ASan and UBSan.
//
// Besides not crashing, the parser must not depend on how the bytes arrive:
// the server calls parse() on everything unconsumed each time more arrives,
// so the input is parsed twice, once whole and once in pieces whose sizes
// the input's first bytes choose, and both must give the same sequence of
// requests (method, target, version, headers, body, keep-alive) and the
// same final error.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "examples/http/request_parser.h"

namespace {

std::string describe(const http::request& r, size_t consumed) {
  std::string s = r.method + ' ' + r.target + " 1." + std::to_string(r.version_minor) + (r.keep_alive ? " ka" : " close");
  for (const auto& [k, v] : r.headers) s += '\n' + k + ": " + v;
  s += "\n\n" + r.body + "\n#" + std::to_string(consumed);
  return s;
}

void check(bool ok) {
  if (!ok) std::abort();
}

// Parses `data` as a connection would, `step(i)` more bytes arriving each
// time; returns one line per request and the error that ended it, if any.
template <class Step>
std::vector<std::string> run(std::string_view data, Step step) {
  std::vector<std::string> out;
  http::request_limits limits;
  limits.max_body = 64 * 1024;  // keep executions fast; the logic is the same
  http::request_parser parser(limits);
  size_t begin = 0;  // first unconsumed byte
  size_t end = 0;    // bytes arrived
  for (int turn = 0;; turn++) {
    std::string_view in = data.substr(begin, end - begin);
    http::parse_result r = parser.parse(in);
    if (r.state == http::parse_state::complete) {
      check(r.consumed > 0 && r.consumed <= in.size());
      out.push_back(describe(parser.get(), r.consumed));
      begin += r.consumed;
      parser.reset();
      continue;
    }
    if (r.state == http::parse_state::error) {
      check(r.error_status >= 400 && r.error_status <= 599);
      out.push_back("error " + std::to_string(r.error_status));
      return out;
    }
    if (end == data.size()) return out;  // the peer sent nothing more
    end = std::min(data.size(), end + step(turn));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1) return 0;
  // The first byte seeds the piece sizes; the rest is what the peer sends.
  const uint8_t seed = bytes[0];
  std::string_view data(reinterpret_cast<const char*>(bytes) + 1, size - 1);
  auto whole = run(data, [&](int) { return data.size(); });
  auto pieces = run(data, [&](int turn) { return static_cast<size_t>(1 + (seed + turn * 7) % 13); });
  check(whole == pieces);
  return 0;
}
