#include "examples/redis/resp_parser.h"

#include <charconv>

namespace redis {
namespace {

// Parses a RESP length ("123"); false unless the whole field is a number
// written as Redis's string2ll accepts it: an optional '-', then no leading
// zero ("0" itself aside). Leading zeros would otherwise let a length line
// grow past the 32 bytes after which an unfinished one is refused, so that
// the verdict depended on how the bytes arrived (found by
// tests/fuzz/resp_fuzzer).
bool parse_length(std::string_view s, int64_t& out) {
  if (s.empty()) return false;
  const size_t first_digit = s[0] == '-' ? 1 : 0;
  if (first_digit == s.size()) return false;
  if (s[first_digit] == '0' && s.size() != 1) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

bool split_inline(std::string_view line, std::vector<std::string>& out) {
  out.clear();
  size_t i = 0;
  while (true) {
    while (i < line.size() && is_blank(line[i])) i++;
    if (i == line.size()) return true;
    std::string word;
    if (line[i] == '"') {
      i++;
      for (;;) {
        if (i == line.size()) return false;
        char c = line[i];
        if (c == '\\' && i + 1 < line.size()) {
          char n = line[i + 1];
          if (n == 'x' && i + 3 < line.size() && hex_value(line[i + 2]) >= 0 && hex_value(line[i + 3]) >= 0) {
            word += static_cast<char>(hex_value(line[i + 2]) * 16 + hex_value(line[i + 3]));
            i += 4;
            continue;
          }
          switch (n) {
            case 'n': word += '\n'; break;
            case 'r': word += '\r'; break;
            case 't': word += '\t'; break;
            case 'b': word += '\b'; break;
            case 'a': word += '\a'; break;
            default: word += n; break;
          }
          i += 2;
          continue;
        }
        if (c == '"') {
          i++;
          // A closing quote must be followed by a blank or the end.
          if (i < line.size() && !is_blank(line[i])) return false;
          break;
        }
        word += c;
        i++;
      }
    } else if (line[i] == '\'') {
      i++;
      for (;;) {
        if (i == line.size()) return false;
        if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '\'') {
          word += '\'';
          i += 2;
          continue;
        }
        if (line[i] == '\'') {
          i++;
          if (i < line.size() && !is_blank(line[i])) return false;
          break;
        }
        word += line[i++];
      }
    } else {
      while (i < line.size() && !is_blank(line[i])) word += line[i++];
    }
    out.push_back(std::move(word));
  }
}

void command_parser::reset() {
  args_.clear();
  pos_ = 0;
  expected_args_ = -1;
}

parse_result command_parser::fail(std::string message) {
  parse_result r;
  r.state = parse_state::error;
  // The text becomes a one-line error reply, and may quote the offending
  // byte: a CR or LF there would end the reply early (Redis turns them into
  // spaces too). Found by tests/fuzz/resp_fuzzer.
  for (char& c : message) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  r.error = std::move(message);
  return r;
}

parse_result command_parser::parse_inline(std::string_view in) {
  size_t nl = in.find('\n');
  if (nl == std::string_view::npos) {
    if (in.size() > limits_.max_inline) return fail("ERR Protocol error: too big inline request");
    return {};
  }
  if (nl > limits_.max_inline) return fail("ERR Protocol error: too big inline request");
  std::string_view line = in.substr(0, nl);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (!split_inline(line, args_)) return fail("ERR Protocol error: unbalanced quotes in request");
  parse_result r;
  r.state = parse_state::complete;
  r.consumed = nl + 1;
  return r;
}

parse_result command_parser::parse(std::string_view in) {
  if (in.empty()) return {};
  if (expected_args_ < 0 && in[0] != '*') return parse_inline(in);

  if (expected_args_ < 0) {
    size_t eol = in.find("\r\n");
    if (eol == std::string_view::npos) {
      if (in.size() > 32) return fail("ERR Protocol error: invalid multibulk length");
      return {};
    }
    int64_t n = 0;
    if (!parse_length(in.substr(1, eol - 1), n) || n > static_cast<int64_t>(limits_.max_args)) {
      return fail("ERR Protocol error: invalid multibulk length");
    }
    pos_ = eol + 2;
    if (n <= 0) {  // "*0" and "*-1": an empty command, ignored
      parse_result r;
      r.state = parse_state::complete;
      r.consumed = pos_;
      return r;
    }
    expected_args_ = n;
    // Not reserving n up front: a client announcing a million arguments
    // must send them before it costs a million slots.
  }
  while (static_cast<int64_t>(args_.size()) < expected_args_) {
    std::string_view rest = in.substr(pos_);
    if (rest.empty()) return {};
    if (rest[0] != '$') {
      return fail(std::string("ERR Protocol error: expected '$', got '") + rest[0] + "'");
    }
    size_t eol = rest.find("\r\n");
    if (eol == std::string_view::npos) {
      if (rest.size() > 32) return fail("ERR Protocol error: invalid bulk length");
      return {};
    }
    int64_t len = 0;
    if (!parse_length(rest.substr(1, eol - 1), len) || len < 0 || static_cast<uint64_t>(len) > limits_.max_bulk) {
      return fail("ERR Protocol error: invalid bulk length");
    }
    const size_t need = eol + 2 + static_cast<size_t>(len) + 2;
    if (rest.size() < need) return {};
    if (rest[need - 2] != '\r' || rest[need - 1] != '\n') return fail("ERR Protocol error: invalid bulk format");
    args_.emplace_back(rest.substr(eol + 2, static_cast<size_t>(len)));
    pos_ += need;
  }
  parse_result r;
  r.state = parse_state::complete;
  r.consumed = pos_;
  return r;
}

}  // namespace redis
