#include "examples/http/request_parser.h"

#include <cctype>
#include <cstring>

namespace http {
namespace {

bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return c != 0 && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!is_tchar(c)) return false;
  }
  return true;
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls f(token) for each element of a comma-separated list, skipping empty
// elements as RFC 9110 section 5.6.1 allows.
template <class F>
void for_each_list_element(std::string_view v, F&& f) {
  while (!v.empty()) {
    size_t comma = v.find(',');
    std::string_view item = trim_ows(v.substr(0, comma));
    if (!item.empty()) f(item);
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
}

}  // namespace

const std::string* request::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return &value;
  }
  return nullptr;
}

void request_parser::reset() {
  req_.method.clear();
  req_.target.clear();
  req_.version_minor = 1;
  req_.headers.clear();
  req_.body.clear();
  req_.keep_alive = true;
  scanned_ = 0;
  lead_ = 0;
  head_size_ = 0;
  content_length_ = 0;
  chunked_ = false;
  chunk_at_ = 0;
  trailers_at_ = 0;
  in_trailers_ = false;
}

parse_result request_parser::fail(int status, const char* reason) {
  parse_result r;
  r.state = parse_state::error;
  r.error_status = status;
  r.error_reason = reason;
  return r;
}

parse_result request_parser::parse(std::string_view in) {
  if (head_size_ == 0) {
    // RFC 9112 section 2.2: ignore empty lines before the request line.
    while (scanned_ == lead_ && in.size() >= lead_ + 2 && in[lead_] == '\r' && in[lead_ + 1] == '\n') {
      lead_ += 2;
      scanned_ = lead_;
      if (lead_ > limits_.max_head_bytes) return fail(400, "too many empty lines before the request");
    }
    size_t end = 0;
    for (size_t i = scanned_; i < in.size(); i++) {
      if (in[i] != '\n') continue;
      if (i == lead_ || in[i - 1] != '\r') return fail(400, "bare LF in the request head");
      if (!saw_request_line_end_ && i - lead_ - 1 > limits_.max_request_line) return fail(414, "request line too long");
      saw_request_line_end_ = true;
      if (i >= lead_ + 3 && in[i - 2] == '\n' && in[i - 3] == '\r') {
        end = i + 1;
        break;
      }
    }
    if (end == 0) {
      // A lone CR where the request line would start may be the first half
      // of one more empty line: leave it to the skip above, or the verdict
      // would depend on where the bytes were split (found by
      // tests/fuzz/http_request_fuzzer).
      scanned_ = in.size() == lead_ + 1 && in[lead_] == '\r' ? lead_ : in.size();
      if (!saw_request_line_end_ && in.size() - lead_ > limits_.max_request_line + 1) {
        return fail(414, "request line too long");
      }
      if (in.size() - lead_ > limits_.max_head_bytes) return fail(431, "request head too large");
      return {};
    }
    if (end - lead_ > limits_.max_head_bytes) return fail(431, "request head too large");
    parse_result head = parse_head(in.substr(lead_, end - lead_));
    if (head.state == parse_state::error) return head;
    head_size_ = end;
    chunk_at_ = end;
  }
  if (chunked_) return parse_chunked(in);
  if (in.size() - head_size_ < content_length_) return {};
  req_.body.assign(in.substr(head_size_, content_length_));
  parse_result r;
  r.state = parse_state::complete;
  r.consumed = head_size_ + content_length_;
  return r;
}

// Every step below commits only a whole element (a size line, a chunk's
// data with its CRLF, a trailer line), so a verdict never depends on where
// the bytes were split; resuming starts at chunk_at_.
parse_result request_parser::parse_chunked(std::string_view in) {
  for (;;) {
    const size_t lf = in.find('\n', chunk_at_);
    if (in_trailers_) {
      // trailer-section = *( field-line CRLF ), then the final CRLF.
      const size_t reach = lf == std::string_view::npos ? in.size() : lf + 1;
      if (reach - trailers_at_ > limits_.max_head_bytes) return fail(431, "chunked trailers too large");
      if (lf == std::string_view::npos) return {};
      if (lf == chunk_at_ || in[lf - 1] != '\r') return fail(400, "bare LF in the chunked trailers");
      std::string_view line = in.substr(chunk_at_, lf - 1 - chunk_at_);
      chunk_at_ = lf + 1;
      if (line.empty()) {
        parse_result r;
        r.state = parse_state::complete;
        r.consumed = chunk_at_;
        return r;
      }
      const size_t colon = line.find(':');
      if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) return fail(400, "malformed trailer field");
      for (unsigned char c : line.substr(colon + 1)) {
        if ((c < 0x20 && c != '\t') || c == 0x7f) return fail(400, "control character in a trailer field");
      }
      continue;
    }
    // chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
    if (lf == std::string_view::npos) {
      if (in.size() - chunk_at_ > limits_.max_chunk_line + 1) return fail(400, "chunk size line too long");
      return {};
    }
    if (lf - chunk_at_ > limits_.max_chunk_line + 1) return fail(400, "chunk size line too long");
    if (lf == chunk_at_ || in[lf - 1] != '\r') return fail(400, "bare LF in a chunk size line");
    std::string_view line = in.substr(chunk_at_, lf - 1 - chunk_at_);
    size_t digits = 0;
    size_t size = 0;
    bool too_large = false;
    while (digits < line.size() && std::isxdigit(static_cast<unsigned char>(line[digits]))) {
      const char c = lower(line[digits]);
      const size_t v = c <= '9' ? static_cast<size_t>(c - '0') : static_cast<size_t>(c - 'a' + 10);
      if (size > (limits_.max_body >> 4)) too_large = true;  // no overflow: stop growing
      if (!too_large) size = size * 16 + v;
      digits++;
    }
    if (digits == 0) return fail(400, "malformed chunk size");
    std::string_view ext = line.substr(digits);
    for (unsigned char c : ext) {
      if ((c < 0x20 && c != '\t') || c == 0x7f) return fail(400, "control character in a chunk extension");
    }
    if (!ext.empty()) {
      std::string_view rest = trim_ows(ext);
      if (rest.empty() || rest.front() != ';') return fail(400, "malformed chunk size");
    }
    if (too_large || req_.body.size() + size > limits_.max_body) return fail(413, "request body too large");
    if (size == 0) {
      chunk_at_ = lf + 1;
      trailers_at_ = chunk_at_;
      in_trailers_ = true;
      continue;
    }
    const size_t data = lf + 1;
    if (in.size() < data + size + 2) return {};
    if (in[data + size] != '\r' || in[data + size + 1] != '\n') return fail(400, "chunk data not followed by CRLF");
    req_.body.append(in.substr(data, size));
    chunk_at_ = data + size + 2;
    // Many tiny chunks with long extensions would let the buffered wire
    // bytes grow far past max_body: bound them too.
    if (chunk_at_ - head_size_ > 2 * limits_.max_body + limits_.max_chunk_line) {
      return fail(413, "chunked request body too large on the wire");
    }
  }
}

parse_result request_parser::parse_head(std::string_view head) {
  // head ends with CRLF CRLF and holds no bare LF (checked by the scan).
  size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  if (line.size() > limits_.max_request_line) return fail(414, "request line too long");

  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return fail(400, "malformed request line");
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method)) return fail(400, "malformed method");
  if (target.empty()) return fail(400, "empty request target");
  for (unsigned char c : target) {
    if (c <= 0x20 || c >= 0x7f) return fail(400, "invalid character in the request target");
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' || version[5] < '0' ||
      version[5] > '9' || version[7] < '0' || version[7] > '9') {
    return fail(400, "malformed HTTP version");
  }
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) return fail(505, "HTTP version not supported");
  req_.method.assign(method);
  req_.target.assign(target);
  req_.version_minor = version[7] - '0';

  int hosts = 0;
  bool has_length = false;
  bool has_transfer_encoding = false;
  bool close_requested = false;
  bool keep_alive_requested = false;
  size_t pos = eol + 2;
  for (;;) {
    size_t next = head.find("\r\n", pos);
    std::string_view field = head.substr(pos, next - pos);
    pos = next + 2;
    if (field.empty()) break;  // the blank line that ends the head
    if (field.front() == ' ' || field.front() == '\t') return fail(400, "obsolete header line folding");
    if (req_.headers.size() >= limits_.max_headers) return fail(431, "too many header fields");
    size_t colon = field.find(':');
    if (colon == std::string_view::npos) return fail(400, "header line without a colon");
    std::string_view name = field.substr(0, colon);
    if (!is_token(name)) return fail(400, "malformed header name");
    std::string_view value = trim_ows(field.substr(colon + 1));
    for (unsigned char c : value) {
      if ((c < 0x20 && c != '\t') || c == 0x7f) return fail(400, "control character in a header value");
    }
    std::string lname(name);
    for (char& c : lname) c = lower(c);

    if (lname == "host") {
      hosts++;
    } else if (lname == "content-length") {
      if (value.empty() || value.size() > 18) {
        if (!value.empty() && value.find_first_not_of("0123456789") == std::string_view::npos) {
          return fail(413, "request body too large");
        }
        return fail(400, "malformed Content-Length");
      }
      size_t n = 0;
      for (char c : value) {
        if (c < '0' || c > '9') return fail(400, "malformed Content-Length");
        n = n * 10 + static_cast<size_t>(c - '0');
      }
      if (has_length && n != content_length_) return fail(400, "conflicting Content-Length fields");
      has_length = true;
      content_length_ = n;
    } else if (lname == "transfer-encoding") {
      has_transfer_encoding = true;
    } else if (lname == "connection") {
      for_each_list_element(value, [&](std::string_view t) {
        if (iequals(t, "close")) close_requested = true;
        if (iequals(t, "keep-alive")) keep_alive_requested = true;
      });
    }
    req_.headers.emplace_back(std::move(lname), std::string(value));
  }

  if (req_.version_minor == 1 && hosts != 1) return fail(400, "HTTP/1.1 needs exactly one Host field");
  if (hosts > 1) return fail(400, "more than one Host field");
  if (has_transfer_encoding) {
    if (has_length) return fail(400, "both Transfer-Encoding and Content-Length");
    if (req_.version_minor == 0) return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
    // Only "chunked", once: a coding list ending in chunked would need the
    // other codings undone, which the example does not do.
    int codings = 0;
    bool only_chunked = true;
    for (const auto& [name, v] : req_.headers) {
      if (name != "transfer-encoding") continue;
      for_each_list_element(v, [&](std::string_view t) {
        codings++;
        if (!iequals(t, "chunked")) only_chunked = false;
      });
    }
    if (codings != 1 || !only_chunked) return fail(501, "transfer coding not implemented (only chunked)");
    chunked_ = true;
  }
  if (content_length_ > limits_.max_body) return fail(413, "request body too large");
  req_.keep_alive = !close_requested && (req_.version_minor == 1 || keep_alive_requested);
  return {};
}

}  // namespace http
