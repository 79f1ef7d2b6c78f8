// examples/http/response.h
//
// Writing HTTP/1.1 responses into a connection's output buffer. Responses
// are appended, not sent: the server flushes once per batch of pipelined
// requests, so a pipeline of N requests costs one write, not N.
#ifndef BOBBIN_EXAMPLES_HTTP_RESPONSE_H_
#define BOBBIN_EXAMPLES_HTTP_RESPONSE_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace http {

const char* reason_phrase(int status);

// The Content-Type for a file name, by extension; application/octet-stream
// when unknown.
std::string_view content_type_for(std::string_view path);

// Appends a status line and the standard fields (Date, Server,
// Content-Length, Connection: keep-alive or close). `extra_headers` is
// inserted verbatim and must end each field with CRLF.
void append_head(std::string& out, int status, std::string_view content_type, uint64_t content_length,
                 bool keep_alive, std::string_view extra_headers = {});

// A complete response with a small body (or none, for HEAD).
void append_response(std::string& out, int status, std::string_view content_type, std::string_view body,
                     bool keep_alive, bool head_only = false, std::string_view extra_headers = {});

// Decodes %XX escapes in a path. False on a malformed escape or a decoded
// NUL, which no file name may contain.
bool percent_decode(std::string_view in, std::string& out);

}  // namespace http

#endif  // BOBBIN_EXAMPLES_HTTP_RESPONSE_H_
