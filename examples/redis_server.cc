// examples/redis_server: a Redis-compatible (RESP2) in-memory server written
// as plain blocking code, one fiber per client.
//
// Each client fiber reads, parses every complete command in what it read,
// appends the replies, and writes them in one go before reading again: a
// pipeline of N commands costs one read and one write, in straight-line code.
// A protocol error (bad multibulk or bulk length, unbalanced quotes, an
// oversized request) gets Redis's error reply and closes that connection
// only. Commands, error wording and the shared store: examples/redis/.
// Expired keys also go away without being read: a background fiber reaps
// them ten times a second.
//
// --timeout S closes a client idle for S seconds, or one that has read none
// of its replies for S seconds (default 0: never, as Redis).
//
// Run:  build/examples/redis_server --port 6380 --carriers 2 [--timeout S]
//       redis-cli -p 6380 set k v ; redis-benchmark -p 6380 -t set,get -P 16
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "bobbin/bobbin.h"
#include "examples/common/server.h"
#include "examples/redis/commands.h"
#include "examples/redis/resp_parser.h"
#include "examples/redis/store.h"

namespace {

using namespace std::chrono_literals;

constexpr size_t kFlushAt = 64 * 1024;  // flush mid-batch past this much output

struct server {
  redis::store db;
  examples::connection_registry connections;
  // --timeout, as Redis's `timeout` (0: never): a client that sends nothing
  // for this long is closed, and so is one whose replies make no progress
  // for this long (it does not read them). A client that does not read
  // costs no memory meanwhile: its fiber stops reading while its write
  // waits, so the input and output buffers stay bounded either way.
  std::chrono::milliseconds timeout{0};
  bobbin::deadline deadline() const { return timeout.count() == 0 ? bobbin::deadline() : bobbin::deadline(timeout); }
  std::atomic<uint64_t> commands{0};
  std::atomic<uint64_t> protocol_errors{0};
  std::atomic<uint64_t> expired_reaped{0};
};

void serve_client(server& srv, bobbin::tcp_stream stream) {
  examples::connection conn(std::move(stream));
  examples::connection_registry::guard registered(srv.connections, conn);
  (void)conn.stream.set_nodelay(true);
  redis::command_parser parser;
  examples::input_buffer in;
  std::string out;
  for (;;) {
    redis::parse_result r = parser.parse(in.unconsumed());
    if (r.state == redis::parse_state::complete) {
      in.consume(r.consumed);
      bool keep_open = true;
      if (!parser.args().empty()) {
        keep_open = redis::execute(srv.db, parser.args(), out);
        srv.commands.fetch_add(1, std::memory_order_relaxed);
      }
      parser.reset();
      if (!keep_open) {
        (void)examples::flush_unless_stalled(conn.stream, out, srv.timeout);
        break;
      }
      if (out.size() >= kFlushAt && !examples::flush_unless_stalled(conn.stream, out, srv.timeout)) break;
      continue;
    }
    if (r.state == redis::parse_state::error) {
      srv.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      redis::reply_error(out, r.error);
      (void)examples::flush_unless_stalled(conn.stream, out, srv.timeout);
      break;
    }
    if (!examples::flush_unless_stalled(conn.stream, out, srv.timeout)) break;
    bobbin::io_result rr = srv.connections.read_more(conn, in, srv.deadline(), srv.deadline());
    if (!rr || rr.bytes == 0) break;  // closed, reset or stopped
  }
}

}  // namespace

int main(int argc, char** argv) {
  int port = 6379;
  unsigned carriers = 0;
  double timeout_s = 0;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--port" && i + 1 < argc) port = std::atoi(argv[++i]);
    else if (a == "--carriers" && i + 1 < argc) carriers = static_cast<unsigned>(std::atoi(argv[++i]));
    else if (a == "--timeout" && i + 1 < argc) timeout_s = std::atof(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--port N] [--carriers N] [--timeout SECONDS]\n", argv[0]);
      return 2;
    }
  }
  examples::raise_fd_limit();
  auto listener = bobbin::tcp_listener::bind(bobbin::socket_address::loopback(static_cast<uint16_t>(port)));
  if (!listener.ok()) {
    std::fprintf(stderr, "redis_server: %s\n", std::string(listener.status().ToString()).c_str());
    return 1;
  }
  if (!(timeout_s >= 0)) {
    std::fprintf(stderr, "redis_server: --timeout must be 0 (never) or positive\n");
    return 2;
  }
  server srv;
  srv.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  examples::signal_thread signals([&] { srv.connections.request_stop(*listener); });
  bobbin::runtime_options options;
  options.carriers = carriers;
  auto rt = bobbin::runtime::start(options);
  if (!rt.ok()) {
    std::fprintf(stderr, "redis_server: %s\n", std::string(rt.status().message()).c_str());
    signals.request_stop();
    return 1;
  }
  std::printf("listening on %s carriers %u\n", listener->local_address().to_string().c_str(), (*rt)->carriers());
  std::fflush(stdout);

  auto main_fiber = (*rt)->spawn([&] {
    bobbin::channel<int> stop_reaper(1);
    auto reaper = bobbin::spawn([&] {
      int unused = 0;
      while (stop_reaper.receive(unused, bobbin::deadline(100ms)) == bobbin::channel_status::timeout) {
        srv.expired_reaped.fetch_add(srv.db.reap_expired(200), std::memory_order_relaxed);
      }
    }, bobbin::fiber_options{.name = "expiry reaper"});
    std::function<void(bobbin::tcp_stream)> serve = [&srv](bobbin::tcp_stream s) { serve_client(srv, std::move(s)); };
    bobbin::scope connection_fibers;
    srv.connections.accept_loop(*listener, "redis_server", serve, connection_fibers);
    if (!srv.connections.stop_and_drain(5s, &connection_fibers)) std::fprintf(stderr, "redis_server: cut clients still busy after 5s\n");
    connection_fibers.join();
    stop_reaper.close();
    reaper.join();
  });
  main_fiber.join();
  std::printf("final: accepted=%llu commands=%llu protocol_errors=%llu expired_reaped=%llu keys=%zu rss_peak_kib=%ld\n",
              static_cast<unsigned long long>(srv.connections.accepted()),
              static_cast<unsigned long long>(srv.commands.load()),
              static_cast<unsigned long long>(srv.protocol_errors.load()),
              static_cast<unsigned long long>(srv.expired_reaped.load()), srv.db.size(), examples::peak_rss_kib());
  return 0;
}
