// examples/http_server: an HTTP/1.1 server written as straight-line blocking
// code, one fiber per connection.
//
// Routes:
//   GET|HEAD /                 a small fixed body
//   GET|HEAD /static/<path>    a file under --root, read with bobbin::file;
//                              the kernel keeps the lookup inside --root
//                              (file::open_beneath: no "..", absolute paths
//                              or symlinks out; those get 403)
//   POST /echo                 the request body back (Content-Length or chunked)
//   GET|HEAD /sleep?ms=N       answers after N ms (0..10000): a slow backend
//                              for clients' tests and benchmarks
// Anything else: 404, or 405 with Allow for a known path and wrong method.
//
// Connection handling: keep-alive and pipelining (responses to a batch of
// pipelined requests go out in one write); strict, bounded parsing
// (examples/http/request_parser.h) where every malformed or oversized request
// gets its 4xx/5xx and the connection is closed; 60 s idle timeout between
// requests and 15 s (--request-timeout) from a request's first byte to its
// last (408), however slowly it arrives; each write of an answer gets as
// long, so a client that never reads is cut too.
//
// SIGINT/SIGTERM: stop accepting, close idle connections, let in-flight
// requests finish (up to 10 s), print the counters, exit 0.
//
// --stats prints the runtime's counters once a second on stderr.
//
// Run:  build/examples/http_server --port 8080 --carriers 2 --root ./www [--stats]
//       curl -v http://127.0.0.1:8080/static/index.html
#include <sys/stat.h>

#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "bobbin/bobbin.h"
#include "examples/common/server.h"
#include "examples/http/request_parser.h"
#include "examples/http/response.h"

namespace {

using namespace std::chrono_literals;

constexpr auto kIdleTimeout = 60s;
constexpr size_t kFileChunk = 64 * 1024;
constexpr std::string_view kHello = "Hello from bobbin\n";

struct server {
  bobbin::file root;
  http::request_limits limits;
  examples::connection_registry connections;
  // From a request's first byte to its last: the whole request, however
  // slowly it trickles in (a slowloris client), then 408. Each write of the
  // answer gets as long again, so a client that stops reading is cut too.
  std::chrono::milliseconds request_timeout = 15s;
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> client_errors{0};  // 4xx
  std::atomic<uint64_t> server_errors{0};  // 5xx
};

void count_status(server& srv, int status) {
  if (status >= 500) srv.server_errors.fetch_add(1, std::memory_order_relaxed);
  else if (status >= 400) srv.client_errors.fetch_add(1, std::memory_order_relaxed);
}

void append_error(server& srv, std::string& out, int status, bool head_only, bool keep_alive,
                  std::string_view extra_headers = {}) {
  count_status(srv, status);
  std::string body = std::string(http::reason_phrase(status)) + "\n";
  http::append_response(out, status, "text/plain; charset=utf-8", body, keep_alive, head_only, extra_headers);
}

// The path part of an origin-form or absolute-form target, without query.
std::string_view request_path(std::string_view target) {
  if (target.starts_with("http://") || target.starts_with("https://")) {
    size_t slash = target.find('/', target.find("//") + 2);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  return target.substr(0, target.find('?'));
}

// The value of `name` in the target's query string, or empty.
std::string_view query_param(std::string_view target, std::string_view name) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    std::string_view pair = rest.substr(0, rest.find('&'));
    rest = pair.size() < rest.size() ? rest.substr(pair.size() + 1) : std::string_view();
    if (pair.starts_with(name) && pair.size() > name.size() && pair[name.size()] == '=') {
      return pair.substr(name.size() + 1);
    }
  }
  return {};
}

// Serves a file under the root. Returns false if the connection must close
// (a write failed, or the file failed after its head was sent).
bool serve_static(server& srv, examples::connection& c, std::string_view rel_encoded, bool head_only,
                  bool keep_alive, std::string& out) {
  std::string rel;
  if (!http::percent_decode(rel_encoded, rel)) {
    append_error(srv, out, 400, head_only, keep_alive);
    return true;
  }
  if (rel.empty()) {
    append_error(srv, out, 404, head_only, keep_alive);
    return true;
  }
  auto f = bobbin::file::open_beneath(srv.root, rel, O_RDONLY);
  if (!f) {
    std::error_code e = f.error();
    int status = 500;
    if (e == std::errc::no_such_file_or_directory || e == std::errc::not_a_directory ||
        e == std::errc::filename_too_long) {
      status = 404;
    } else if (e == std::errc::cross_device_link || e == std::errc::too_many_symbolic_link_levels ||
               e == std::errc::permission_denied) {
      status = 403;  // the path tried to leave the root, or is not readable
    }
    append_error(srv, out, status, head_only, keep_alive);
    return true;
  }
  struct stat st{};
  if (::fstat(f->native_handle(), &st) != 0 || !S_ISREG(st.st_mode)) {
    append_error(srv, out, 404, head_only, keep_alive);
    return true;
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  http::append_head(out, 200, http::content_type_for(rel), size, keep_alive);
  if (head_only) return true;
  // Small files ride in the batch; large ones stream in chunks.
  if (size <= kFileChunk) {
    size_t at = out.size();
    out.resize(at + size);
    bobbin::io_result r = f->read_at(std::as_writable_bytes(std::span(out.data() + at, size)), 0);
    if (!r || r.bytes != size) {
      out.resize(at);  // the head is out but the body is not: close
      srv.server_errors.fetch_add(1, std::memory_order_relaxed);
      (void)examples::flush(c.stream, out, bobbin::deadline(srv.request_timeout));
      return false;
    }
    return true;
  }
  if (!examples::flush(c.stream, out, bobbin::deadline(srv.request_timeout))) return false;
  std::string chunk(kFileChunk, '\0');
  for (uint64_t off = 0; off < size;) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(kFileChunk, size - off));
    bobbin::io_result r = f->read_at(std::as_writable_bytes(std::span(chunk.data(), want)), off);
    if (!r || r.bytes == 0) {
      srv.server_errors.fetch_add(1, std::memory_order_relaxed);
      return false;  // the file shrank or failed mid-body: the client sees a short body
    }
    if (!c.stream.write_all(std::string_view(chunk.data(), r.bytes), bobbin::deadline(srv.request_timeout))) return false;
    off += r.bytes;
  }
  return true;
}

// Appends the response to `req` (or sends it, for large files). Returns
// false if the connection must close.
bool handle(server& srv, examples::connection& c, const http::request& req, bool keep_alive, std::string& out) {
  const std::string_view path = request_path(req.target);
  const bool get_or_head = req.method == "GET" || req.method == "HEAD";
  const bool head_only = req.method == "HEAD";
  if (path == "/") {
    if (!get_or_head) {
      append_error(srv, out, 405, false, keep_alive, "Allow: GET, HEAD\r\n");
      return true;
    }
    http::append_response(out, 200, "text/plain; charset=utf-8", kHello, keep_alive, head_only);
    return true;
  }
  if (path.starts_with("/static/")) {
    if (!get_or_head) {
      append_error(srv, out, 405, false, keep_alive, "Allow: GET, HEAD\r\n");
      return true;
    }
    return serve_static(srv, c, path.substr(8), head_only, keep_alive, out);
  }
  if (path == "/sleep") {
    // A slow backend for clients' tests and benchmarks: answers after ?ms=N
    // (0 to 10,000) milliseconds, during which the fiber is parked.
    if (!get_or_head) {
      append_error(srv, out, 405, false, keep_alive, "Allow: GET, HEAD\r\n");
      return true;
    }
    std::string_view ms_text = query_param(req.target, "ms");
    int ms = 0;
    auto [end, ec] = std::from_chars(ms_text.data(), ms_text.data() + ms_text.size(), ms);
    if (ms_text.empty() || ec != std::errc() || end != ms_text.data() + ms_text.size() || ms < 0 || ms > 10000) {
      append_error(srv, out, 400, head_only, keep_alive);
      return true;
    }
    bobbin::this_fiber::sleep_for(std::chrono::milliseconds(ms));
    http::append_response(out, 200, "text/plain; charset=utf-8", absl::StrCat("slept ", ms, " ms\n"), keep_alive,
                          head_only);
    return true;
  }
  if (path == "/echo") {
    if (req.method != "POST") {
      append_error(srv, out, 405, head_only, keep_alive, "Allow: POST\r\n");
      return true;
    }
    const std::string* type = req.header("content-type");
    http::append_response(out, 200, type ? std::string_view(*type) : "application/octet-stream", req.body,
                          keep_alive);
    return true;
  }
  append_error(srv, out, 404, head_only, keep_alive);
  return true;
}

bool expects_continue(const http::request& req) {
  // RFC 9110 section 10.1.1: an HTTP/1.0 client cannot take an interim
  // response, and the expectation must be ignored.
  if (req.version_minor == 0) return false;
  const std::string* e = req.header("expect");
  return e != nullptr && e->size() == 12 && strncasecmp(e->c_str(), "100-continue", 12) == 0;
}

void serve_connection(server& srv, bobbin::tcp_stream stream) {
  examples::connection conn(std::move(stream));
  examples::connection_registry::guard registered(srv.connections, conn);
  (void)conn.stream.set_nodelay(true);
  http::request_parser parser(srv.limits);
  examples::input_buffer in;
  std::string out;  // responses not yet written
  bool sent_continue = false;
  std::optional<bobbin::deadline> request_deadline;  // set while a request is partly read
  auto send_out = [&] { return examples::flush(conn.stream, out, bobbin::deadline(srv.request_timeout)); };
  for (;;) {
    http::parse_result r = parser.parse(in.unconsumed());
    if (r.state == http::parse_state::complete) {
      const http::request& req = parser.get();
      const bool keep_alive = req.keep_alive && !srv.connections.stopping();
      const bool ok = handle(srv, conn, req, keep_alive, out);
      srv.requests.fetch_add(1, std::memory_order_relaxed);
      in.consume(r.consumed);
      parser.reset();
      sent_continue = false;
      request_deadline.reset();  // the next request's time starts with its first byte
      if (!ok) break;
      if (!keep_alive) {
        (void)send_out();
        break;
      }
      if (out.size() >= kFileChunk && !send_out()) break;
      continue;
    }
    if (r.state == http::parse_state::error) {
      append_error(srv, out, r.error_status, false, /*keep_alive=*/false);
      (void)send_out();
      break;
    }
    // Needs more bytes: first send what the batch produced.
    if (!send_out()) break;
    if (parser.head_complete() && !sent_continue && expects_continue(parser.get())) {
      if (!conn.stream.write_all("HTTP/1.1 100 Continue\r\n\r\n", bobbin::deadline(srv.request_timeout))) break;
      sent_continue = true;
    }
    const bool idle = in.empty();
    if (idle) request_deadline.reset();
    else if (!request_deadline) request_deadline = bobbin::deadline(srv.request_timeout);
    const bobbin::deadline idle_deadline(kIdleTimeout);
    bobbin::io_result rr = srv.connections.read_more(conn, in, idle_deadline, idle ? idle_deadline : *request_deadline);
    if (!rr) {
      if (rr.error == std::errc::timed_out && !idle) {
        append_error(srv, out, 408, false, false);
        (void)send_out();
      }
      break;  // idle timeout, reset, or shut down by a stop
    }
    if (rr.bytes == 0) break;  // the client closed (mid-request: nothing to answer), or a stop
  }
}

}  // namespace

int main(int argc, char** argv) {
  int port = 8080;
  unsigned carriers = 0;
  std::string root = ".";
  bool stats = false;
  double request_timeout_s = 15;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--port" && i + 1 < argc) port = std::atoi(argv[++i]);
    else if (a == "--carriers" && i + 1 < argc) carriers = static_cast<unsigned>(std::atoi(argv[++i]));
    else if (a == "--root" && i + 1 < argc) root = argv[++i];
    else if (a == "--stats") stats = true;
    else if (a == "--request-timeout" && i + 1 < argc) request_timeout_s = std::atof(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--port N] [--carriers N] [--root DIR] [--request-timeout SECONDS] [--stats]\n",
                   argv[0]);
      return 2;
    }
  }
  examples::raise_fd_limit();

  if (!(request_timeout_s > 0)) {
    std::fprintf(stderr, "http_server: --request-timeout must be positive\n");
    return 2;
  }
  server srv;
  srv.request_timeout = std::chrono::milliseconds(static_cast<int64_t>(request_timeout_s * 1000));
  auto root_dir = bobbin::file::open(root, O_RDONLY | O_DIRECTORY);
  if (!root_dir) {
    std::fprintf(stderr, "http_server: --root %s: %s\n", root.c_str(), root_dir.error().message().c_str());
    return 1;
  }
  srv.root = std::move(*root_dir);
  auto listener = bobbin::tcp_listener::bind(bobbin::socket_address::loopback(static_cast<uint16_t>(port)));
  if (!listener.ok()) {
    std::fprintf(stderr, "http_server: %s\n", std::string(listener.status().ToString()).c_str());
    return 1;
  }
  // Before the runtime starts, so carrier threads inherit the blocked mask.
  examples::signal_thread signals([&] { srv.connections.request_stop(*listener); });

  bobbin::runtime_options options;
  options.carriers = carriers;
  auto rt = bobbin::runtime::start(options);
  if (!rt.ok()) {
    std::fprintf(stderr, "http_server: %s\n", std::string(rt.status().message()).c_str());
    signals.request_stop();
    return 1;
  }
  std::printf("listening on %s carriers %u root %s\n", listener->local_address().to_string().c_str(),
              (*rt)->carriers(), root.c_str());
  std::fflush(stdout);

  std::optional<examples::stats_printer> stats_lines;
  if (stats) {
    stats_lines.emplace(**rt, [&srv] {
      return absl::StrCat("accepted=", srv.connections.accepted(), " requests=", srv.requests.load());
    });
  }
  auto main_fiber = (*rt)->spawn([&] {
    std::function<void(bobbin::tcp_stream)> serve = [&srv](bobbin::tcp_stream s) {
      serve_connection(srv, std::move(s));
    };
    bobbin::scope connection_fibers;
    srv.connections.accept_loop(*listener, "http_server", serve, connection_fibers);
    if (!srv.connections.stop_and_drain(10s, &connection_fibers)) std::fprintf(stderr, "http_server: cut connections still busy after 10s\n");
    connection_fibers.join();
  });
  main_fiber.join();
  stats_lines.reset();
  std::printf("final: accepted=%llu refused=%llu requests=%llu 4xx=%llu 5xx=%llu rss_peak_kib=%ld\n",
              static_cast<unsigned long long>(srv.connections.accepted()),
              static_cast<unsigned long long>(srv.connections.refused()),
              static_cast<unsigned long long>(srv.requests.load()),
              static_cast<unsigned long long>(srv.client_errors.load()),
              static_cast<unsigned long long>(srv.server_errors.load()), examples::peak_rss_kib());
  return 0;
}
