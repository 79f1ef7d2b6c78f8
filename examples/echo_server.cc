// examples/echo_server: a TCP echo server written as plain blocking code,
// one fiber per connection.
//
// What it shows:
//   - bobbin::run() starting a runtime around a main fiber;
//   - an accept loop that spawns a fiber per connection and backs off when
//     the process is out of file descriptors (EMFILE) instead of spinning or
//     dropping the pending connections (they stay queued in the kernel);
//   - structured concurrency and cancellation: the connection fibers live
//     in a bobbin::scope; SIGINT/SIGTERM stop the listener from a plain
//     thread (which ends the pending accept), then the scope is cancelled:
//     every connection's read or write returns operation_canceled, its
//     fiber returns and closes its socket, and join() waits for them all
//     before the server exits 0;
//   - runtime counters, printed once a second with --stats.
//
// Run:  build/examples/echo_server --port 7000 --carriers 2 [--stats]
//       then e.g. `nc 127.0.0.1 7000`. Prints "listening on ADDR" once ready.
#include <signal.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "bobbin/bobbin.h"
#include "examples/common/server.h"

namespace {

using namespace std::chrono_literals;

struct server_state {
  std::atomic<uint64_t> messages{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<bool> stopping{false};
};

void serve(server_state& st, bobbin::tcp_stream s) {
  char buf[16384];
  for (;;) {
    bobbin::io_result r = s.read_some(std::span(buf));
    if (!r) {
      // A reset peer is ordinary for a server, and a cancellation is the
      // stop; count anything else.
      if (r.error != std::errc::connection_reset && r.error != std::errc::operation_canceled) st.errors++;
      break;
    }
    if (r.bytes == 0) break;  // the client closed
    if (!s.write_all(std::string_view(buf, r.bytes))) break;
    st.messages.fetch_add(1, std::memory_order_relaxed);
    st.bytes.fetch_add(r.bytes, std::memory_order_relaxed);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int port = 7000;
  unsigned carriers = 0;
  bool stats = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--port" && i + 1 < argc) port = std::atoi(argv[++i]);
    else if (a == "--carriers" && i + 1 < argc) carriers = static_cast<unsigned>(std::atoi(argv[++i]));
    else if (a == "--stats") stats = true;
    else {
      std::fprintf(stderr, "usage: %s [--port N] [--carriers N] [--stats]\n", argv[0]);
      return 2;
    }
  }
  examples::raise_fd_limit();

  // Signals go to one plain thread, which stops the accept loop.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  bobbin::runtime_options options;
  options.carriers = carriers;
  auto rt = bobbin::runtime::start(options);
  if (!rt.ok()) {
    std::fprintf(stderr, "echo_server: %s\n", std::string(rt.status().message()).c_str());
    return 1;
  }
  auto listener = bobbin::tcp_listener::bind(bobbin::socket_address::loopback(static_cast<uint16_t>(port)));
  if (!listener.ok()) {
    std::fprintf(stderr, "echo_server: %s\n", std::string(listener.status().ToString()).c_str());
    return 1;
  }
  server_state st;
  std::printf("listening on %s carriers %u\n", listener->local_address().to_string().c_str(), (*rt)->carriers());
  std::fflush(stdout);

  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    st.stopping = true;
    // Fails the pending accept with EINVAL; unlike close(), safe to call
    // while the accepting fiber uses the listener.
    listener->stop_accepting();
  });

  std::optional<examples::stats_printer> stats_lines;
  if (stats) {
    stats_lines.emplace(**rt, [&st, last = uint64_t{0}]() mutable {
      const uint64_t m = st.messages.load();
      std::string line = absl::StrCat("messages=", m, " msg_per_s=", m - last);
      last = m;
      return line;
    });
  }

  auto main_fiber = (*rt)->spawn([&] {
    bobbin::scope connections;  // every connection's fiber; none outlives this one
    bool warned_emfile = false;
    while (!st.stopping.load()) {
      auto s = listener->accept();
      if (!s) {
        auto e = s.error();
        if (st.stopping.load()) break;  // stop_accepting() from the signal thread
        if (e == std::errc::too_many_files_open || e == std::errc::too_many_files_open_in_system) {
          // Out of descriptors: the connection waits in the backlog; retry
          // once some close. Log once, not per attempt.
          if (!warned_emfile) std::fprintf(stderr, "echo_server: accept: %s; backing off\n", e.message().c_str());
          warned_emfile = true;
          bobbin::this_fiber::sleep_for(10ms);
          continue;
        }
        if (e != std::errc::connection_aborted) std::fprintf(stderr, "echo_server: accept: %s\n", e.message().c_str());
        continue;
      }
      st.accepted++;
      try {
        connections.spawn([&st, conn = std::move(*s)]() mutable { serve(st, std::move(conn)); });
      } catch (const std::system_error&) {
        // Out of stacks: the connection is closed (the client sees it), the
        // server goes on. The lambda, and the socket in it, were destroyed.
        st.errors++;
      }
    }
    listener->close();
    // Stop: every connection's pending read or write returns
    // operation_canceled; join() waits until each fiber has returned.
    connections.cancel();
    connections.join();
  });
  main_fiber.join();
  stats_lines.reset();
  signal_thread.join();
  bobbin::runtime_stats s = (*rt)->stats();
  std::printf(
      "final: carriers=%u backend=%s accepted=%llu messages=%llu bytes=%llu errors=%llu rss_peak_kib=%ld "
      "context_switches=%llu io_enter_calls=%llu io_submitted=%llu io_registrations=%llu steals=%llu\n",
      s.carriers, bobbin::to_string(s.backend), static_cast<unsigned long long>(st.accepted.load()),
      static_cast<unsigned long long>(st.messages.load()), static_cast<unsigned long long>(st.bytes.load()),
      static_cast<unsigned long long>(st.errors.load()), examples::peak_rss_kib(),
      static_cast<unsigned long long>(s.context_switches), static_cast<unsigned long long>(s.io_enter_calls),
      static_cast<unsigned long long>(s.io_submitted), static_cast<unsigned long long>(s.io_registrations),
      static_cast<unsigned long long>(s.steals));
  return 0;
}
