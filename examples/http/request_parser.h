// examples/http/request_parser.h
//
// A strict, bounded HTTP/1.1 request parser for the example server.
//
// The server reads into one connection buffer and calls parse() on what it
// has; the parser never copies more than one request's head and body, and
// every dimension is capped by request_limits, so a hostile client costs at
// most the limits' worth of memory per connection.
//
//   request_parser p(limits);
//   for (;;) {
//     parse_result r = p.parse(buffered);     // buffered: bytes not yet consumed
//     if (r.state == parse_state::need_more) { read more; continue; }
//     if (r.state == parse_state::error) { reply r.error_status; close; }
//     handle(p.request()); drop r.consumed bytes; p.reset();
//   }
//
// Resumable: after need_more, call parse() again with the same bytes plus
// the new ones; the scan for the end of the head resumes where it stopped,
// so feeding a request byte by byte costs O(n), not O(n^2).
//
// What it rejects (RFC 9112): a malformed request line or header line (400),
// obsolete line folding (400), a bare LF (400), a missing or repeated Host on
// HTTP/1.1 (400), a non-numeric or conflicting Content-Length (400), both
// Content-Length and Transfer-Encoding (400), Transfer-Encoding on HTTP/1.0
// (400, RFC 9112 section 6.1), a transfer coding other than a lone
// "chunked" (501), a request line longer than max_request_line (414), a head
// larger than max_head_bytes or with more than max_headers fields (431), a
// body larger than max_body (413), and versions other than HTTP/1.0 and
// HTTP/1.1 (505). Every error closes the connection: after a framing error
// the server cannot know where the next request starts.
//
// Chunked request bodies (RFC 9112 section 7.1) are decoded into
// request::body: chunk extensions are skipped; trailer fields are checked
// for framing and dropped, as section 7.1.2 allows. A chunk-size line longer
// than max_chunk_line, a malformed size, or data not followed by CRLF is a
// 400; a decoded body over max_body a 413, decided as soon as a chunk's size
// says so, and so are chunks whose framing alone takes the wire bytes past
// twice max_body (tiny chunks with long extensions); trailers over
// max_head_bytes a 431.
#ifndef BOBBIN_EXAMPLES_HTTP_REQUEST_PARSER_H_
#define BOBBIN_EXAMPLES_HTTP_REQUEST_PARSER_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace http {

struct request_limits {
  size_t max_request_line = 8 * 1024;
  size_t max_head_bytes = 16 * 1024;  // request line + all header lines
  size_t max_headers = 64;
  size_t max_body = 1024 * 1024;
  size_t max_chunk_line = 1024;  // chunk size plus extensions
};

struct request {
  std::string method;
  std::string target;
  int version_minor = 1;  // HTTP/1.<minor>
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  bool keep_alive = true;  // after this request, per version and Connection

  // The first field named `lower_name`, or nullptr.
  const std::string* header(std::string_view lower_name) const;
};

enum class parse_state { need_more, complete, error };

struct parse_result {
  parse_state state = parse_state::need_more;
  size_t consumed = 0;     // complete: bytes of the input this request used
  int error_status = 0;    // error: the status code to answer with
  const char* error_reason = "";  // error: a short human-readable cause
};

class request_parser {
 public:
  explicit request_parser(request_limits limits = {}) : limits_(limits) {}

  parse_result parse(std::string_view in);
  // True once the head is parsed and only the body is missing (the server
  // then answers "Expect: 100-continue").
  bool head_complete() const { return head_size_ != 0; }
  // The request parse() completed; valid until reset().
  const request& get() const { return req_; }
  request& get() { return req_; }
  // Ready for the next request on the same connection.
  void reset();

 private:
  parse_result fail(int status, const char* reason);
  parse_result parse_head(std::string_view head);
  // Decodes chunks from in[chunk_at_]; complete once the last chunk and
  // the trailers are in.
  parse_result parse_chunked(std::string_view in);

  request_limits limits_;
  request req_;
  size_t lead_ = 0;         // empty lines skipped before the request line
  size_t scanned_ = 0;      // bytes already searched for the end of the head
  bool saw_request_line_end_ = false;
  size_t head_size_ = 0;    // 0 until the head has been parsed
  size_t content_length_ = 0;
  bool chunked_ = false;
  size_t chunk_at_ = 0;     // chunked: the first byte not yet decoded
  bool in_trailers_ = false;  // chunked: the last chunk is in
  size_t trailers_at_ = 0;    // chunked: where the trailer section starts
};

}  // namespace http

#endif  // BOBBIN_EXAMPLES_HTTP_REQUEST_PARSER_H_
