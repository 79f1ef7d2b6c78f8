// examples/redis/resp_parser.h
//
// Reads client commands in RESP2, the way a Redis server does: a multibulk
// array of bulk strings ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") or, when the first
// byte is not '*', an inline command ("GET k\r\n", what `nc` or telnet send;
// words split on blanks, with "double" and 'single' quoted words).
//
//   command_parser p;
//   parse_result r = p.parse(buffered);   // unconsumed bytes, re-offered
//   if (r.state == parse_state::complete) run(p.args()), drop r.consumed;
//   if (r.state == parse_state::error) reply "-" + r.error, close;
//
// Resumable (need_more keeps the progress made so far) and bounded: at most
// max_args arguments, each at most max_bulk bytes, an inline line at most
// max_inline bytes. Beyond them, or on malformed framing, parse() fails with
// Redis's own "ERR Protocol error: ..." wording; the server then closes that
// connection, as Redis does.
#ifndef BOBBIN_EXAMPLES_REDIS_RESP_PARSER_H_
#define BOBBIN_EXAMPLES_REDIS_RESP_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace redis {

struct parser_limits {
  size_t max_args = 1024 * 1024;
  size_t max_bulk = 64 * 1024 * 1024;
  size_t max_inline = 64 * 1024;
};

enum class parse_state { need_more, complete, error };

struct parse_result {
  parse_state state = parse_state::need_more;
  size_t consumed = 0;  // complete: bytes this command used (an empty inline line too)
  std::string error;    // error: the reply text, without the leading '-'
};

class command_parser {
 public:
  explicit command_parser(parser_limits limits = {}) : limits_(limits) {}

  parse_result parse(std::string_view in);
  // The command parse() completed (empty for a blank inline line, which the
  // server ignores, as Redis does). Valid until reset().
  std::vector<std::string>& args() { return args_; }
  void reset();

 private:
  parse_result fail(std::string message);
  parse_result parse_inline(std::string_view in);

  parser_limits limits_;
  std::vector<std::string> args_;
  // Multibulk progress, so that need_more does not start over.
  size_t pos_ = 0;              // bytes of `in` already consumed into args_
  int64_t expected_args_ = -1;  // from the "*N" line, once read
};

// Splits an inline command line; false on unbalanced quotes.
bool split_inline(std::string_view line, std::vector<std::string>& out);

}  // namespace redis

#endif  // BOBBIN_EXAMPLES_REDIS_RESP_PARSER_H_
