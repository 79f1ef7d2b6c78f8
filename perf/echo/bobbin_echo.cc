// perf/echo/bobbin_echo: the echo protocol as bobbin fibers in plain
// blocking style: one fiber per connection, read_some() then write_all().
// --threads sets the number of carriers; they share one listener and steal
// work from each other. examples/echo_server is the same server with
// graceful shutdown and counters; this one is kept as bare as its peers.
//
// Run: bobbin_echo --port 7000 --threads 1
#include <chrono>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>

#include "bobbin/bobbin.h"
#include "peer_common.h"

int main(int argc, char** argv) {
  perf_echo::options o = perf_echo::parse_options(argc, argv);
  perf_echo::raise_fd_limit();
  bobbin::runtime_options ro;
  ro.carriers = static_cast<unsigned>(o.threads);
  return bobbin::run(
      [&] {
        auto listener = bobbin::tcp_listener::bind(bobbin::socket_address::loopback(static_cast<uint16_t>(o.port)));
        if (!listener.ok()) {
          std::fprintf(stderr, "bobbin_echo: %s\n", std::string(listener.status().message()).c_str());
          return 1;
        }
        std::printf("listening on 127.0.0.1:%d threads %d (bobbin fibers)\n", listener->local_address().port(),
                    o.threads);
        std::fflush(stdout);
        for (;;) {
          auto s = listener->accept();
          if (!s) {
            // Out of descriptors: the connection stays queued; retry soon.
            bobbin::this_fiber::sleep_for(std::chrono::milliseconds(10));
            continue;
          }
          auto f = bobbin::try_spawn([conn = std::move(*s)]() mutable {
            char buf[perf_echo::kBufferSize];
            for (;;) {
              bobbin::io_result r = conn.read_some(std::span(buf));
              if (!r || r.bytes == 0) break;
              if (!conn.write_all(std::string_view(buf, r.bytes))) break;
            }
          });
          if (f.ok()) f->detach();  // else out of stacks: the connection was closed
        }
      },
      ro);
}
