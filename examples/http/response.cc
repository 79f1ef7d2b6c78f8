#include "examples/http/response.h"

#include <charconv>
#include <ctime>

namespace http {

const char* reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string_view content_type_for(std::string_view path) {
  size_t dot = path.rfind('.');
  size_t slash = path.rfind('/');
  if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash)) {
    return "application/octet-stream";
  }
  std::string ext(path.substr(dot + 1));
  for (char& c : ext) c = static_cast<char>((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
  static constexpr std::pair<std::string_view, std::string_view> kTypes[] = {
      {"html", "text/html; charset=utf-8"}, {"htm", "text/html; charset=utf-8"},
      {"txt", "text/plain; charset=utf-8"}, {"css", "text/css; charset=utf-8"},
      {"js", "text/javascript; charset=utf-8"}, {"json", "application/json"},
      {"xml", "application/xml"}, {"svg", "image/svg+xml"},
      {"png", "image/png"}, {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"}, {"gif", "image/gif"},
      {"webp", "image/webp"}, {"ico", "image/x-icon"},
      {"wasm", "application/wasm"}, {"pdf", "application/pdf"},
  };
  for (const auto& [e, type] : kTypes) {
    if (ext == e) return type;
  }
  return "application/octet-stream";
}

namespace {

// The IMF-fixdate for now, formatted once per second per carrier thread.
// Safe as thread_local: this function never parks, so the fiber cannot
// migrate between reading the cache and using it.
std::string_view http_date() {
  thread_local time_t cached_second = 0;
  thread_local char cached[40];
  time_t now = time(nullptr);
  if (now != cached_second) {
    tm t{};
    gmtime_r(&now, &t);
    strftime(cached, sizeof cached, "%a, %d %b %Y %H:%M:%S GMT", &t);
    cached_second = now;
  }
  return cached;
}

}  // namespace

void append_head(std::string& out, int status, std::string_view content_type, uint64_t content_length,
                 bool keep_alive, std::string_view extra_headers) {
  char num[24];
  out += "HTTP/1.1 ";
  out.append(num, std::to_chars(num, num + sizeof num, status).ptr);
  out += ' ';
  out += reason_phrase(status);
  out += "\r\nServer: bobbin-example\r\nDate: ";
  out += http_date();
  out += "\r\nContent-Length: ";
  out.append(num, std::to_chars(num, num + sizeof num, content_length).ptr);
  out += "\r\n";
  if (!content_type.empty()) {
    out += "Content-Type: ";
    out += content_type;
    out += "\r\n";
  }
  // keep-alive is said explicitly: an HTTP/1.0 client (ApacheBench -k, for
  // one) keeps the connection only if the response says so (RFC 9112 9.3).
  out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  out += extra_headers;
  out += "\r\n";
}

void append_response(std::string& out, int status, std::string_view content_type, std::string_view body,
                     bool keep_alive, bool head_only, std::string_view extra_headers) {
  append_head(out, status, content_type, body.size(), keep_alive, extra_headers);
  if (!head_only) out += body;
}

bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < in.size(); i++) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = hex(in[i + 1]);
      int lo = hex(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (c == '\0') return false;
    out += c;
  }
  return true;
}

}  // namespace http
