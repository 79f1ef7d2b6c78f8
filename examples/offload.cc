// examples/offload: what pinning costs, and what offload() buys.
//
// A blocking-style service, one fiber per connection, answers two requests:
//   "ping\n"  -> "pong\n"                      (cheap)
//   "work\n"  -> a CPU-heavy step (~30 ms of hashing) and a third-party
//                blocking call (getaddrinfo on "localhost"), then "done\n"
// It runs twice on one carrier: first calling both directly on the fiber
// (inline: the fiber pins its carrier), then through bobbin::offload() (the
// fiber parks; the blocking pool does the work). Clients on plain threads
// (so the measurement itself is never pinned) keep "work" requests flowing
// and send a "ping" every 5 ms, and the program prints the ping latency and
// the pinning events for each mode.
//
// Run: build/examples/offload [--seconds 2]
//      BOBBIN_TRACE_PINNED=full build/examples/offload   # the reports, with stacks
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/bobbin.h"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// ~30 ms of CPU: a stand-in for image resizing, compression, a big parse.
__attribute__((noinline)) uint64_t cpu_heavy_step() {
  uint64_t h = 1469598103934665603ull;
  auto until = clock_type::now() + 30ms;
  while (clock_type::now() < until) {
    for (int i = 0; i < 10000; i++) h = (h ^ static_cast<uint64_t>(i)) * 1099511628211ull;
  }
  return h;
}

// A third-party call that blocks its thread.
__attribute__((noinline)) bool resolve_localhost() {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo("localhost", "80", &hints, &res);
  if (rc == 0) ::freeaddrinfo(res);
  return rc == 0;
}

void serve(bobbin::tcp_stream s, bool use_offload) {
  std::string line;
  char buf[256];
  for (;;) {
    bobbin::io_result r = s.read_some(std::span(buf));
    if (!r || r.bytes == 0) return;
    line.append(buf, r.bytes);
    size_t nl;
    while ((nl = line.find('\n')) != std::string::npos) {
      std::string req = line.substr(0, nl);
      line.erase(0, nl + 1);
      std::string reply;
      if (req == "ping") {
        reply = "pong\n";
      } else if (req == "work") {
        if (use_offload) {
          bobbin::offload([] { return cpu_heavy_step(); });
          bobbin::offload([] { return resolve_localhost(); });
        } else {
          cpu_heavy_step();
          resolve_localhost();
        }
        reply = "done\n";
      } else {
        reply = "error unknown request\n";
      }
      if (!s.write_all(reply)) return;
    }
  }
}

bool round_trip(bobbin::tcp_stream& s, std::string_view req) {
  if (!s.write_all(req)) return false;
  char buf[64];
  size_t got = 0;
  while (got == 0 || buf[got - 1] != '\n') {
    bobbin::io_result r = s.read_some(std::span(buf + got, sizeof buf - got), 5s);
    if (!r || r.bytes == 0) return false;
    got += r.bytes;
  }
  return true;
}

struct outcome {
  std::vector<double> ping_ms;
  uint64_t work_done = 0;
  uint64_t pin_events = 0;
  bool ok = true;
};

outcome run_mode(bool use_offload, double seconds) {
  bobbin::runtime_options options;
  options.carriers = 1;
  auto rt = bobbin::runtime::start(options).value();
  std::atomic<uint64_t> events{0};
  rt->set_pin_listener([&](const bobbin::pin_event& e) {
    if (!e.ended) events++;
  });
  auto listener = bobbin::tcp_listener::bind(bobbin::socket_address::loopback(0)).value();
  const auto addr = listener.local_address();
  auto acceptor = rt->spawn([&] {
    for (;;) {
      auto s = listener.accept();
      if (!s) return;  // closed at the end
      bobbin::spawn([use_offload, s = std::move(*s)]() mutable { serve(std::move(s), use_offload); },
                    {.name = use_offload ? "conn (offload)" : "conn (inline)"})
          .detach();
    }
  });

  outcome out;
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  std::atomic<uint64_t> work_done{0};
  for (int i = 0; i < 2; i++) {
    workers.emplace_back([&] {
      auto s = bobbin::tcp_stream::connect(addr, 2s);
      if (!s) return;
      while (!stop.load() && round_trip(*s, "work\n")) work_done++;
    });
  }
  {
    auto s = bobbin::tcp_stream::connect(addr, 2s);
    if (!s) {
      out.ok = false;
    } else {
      auto until = clock_type::now() + std::chrono::duration<double>(seconds);
      while (clock_type::now() < until) {
        auto t0 = clock_type::now();
        if (!round_trip(*s, "ping\n")) {
          out.ok = false;
          break;
        }
        out.ping_ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
        std::this_thread::sleep_for(5ms);
      }
    }
  }
  stop = true;
  for (auto& w : workers) w.join();
  listener.close();
  acceptor.join();
  out.work_done = work_done.load();
  out.pin_events = events.load();
  return out;
}

void print(const char* mode, outcome& o) {
  std::sort(o.ping_ms.begin(), o.ping_ms.end());
  auto pct = [&](double p) { return o.ping_ms.empty() ? 0.0 : o.ping_ms[static_cast<size_t>(p * (o.ping_ms.size() - 1))]; };
  std::printf("  %-8s %8.2f %8.2f %8.2f %10llu %11llu\n", mode, pct(0.5), pct(0.99), o.ping_ms.empty() ? 0.0 : o.ping_ms.back(),
              static_cast<unsigned long long>(o.work_done), static_cast<unsigned long long>(o.pin_events));
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 2;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) seconds = std::atof(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--seconds S]\n", argv[0]);
      return 2;
    }
  }
  std::printf("one carrier; 2 clients send \"work\" (30 ms of CPU + getaddrinfo) back to back;\n"
              "1 client sends \"ping\" every 5 ms and times the reply\n\n");
  outcome inline_run = run_mode(false, seconds);
  outcome offload_run = run_mode(true, seconds);
  std::printf("  %-8s %8s %8s %8s %10s %11s\n", "mode", "p50 ms", "p99 ms", "max ms", "work done", "pin events");
  print("inline", inline_run);
  print("offload", offload_run);
  std::printf("\nInline, each \"work\" request holds the only carrier for ~30 ms: pings wait behind it and\n"
              "the monitor reports the fiber as pinned. With offload() the carrier stays free.\n");
  return inline_run.ok && offload_run.ok ? 0 : 1;
}
