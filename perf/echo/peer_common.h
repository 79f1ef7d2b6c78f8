// perf/echo/peer_common.h: what the echo peers in perf/echo share, so that
// they differ only in their programming model.
//
// Every peer takes the same flags (--port P --threads N; P 0 picks a free
// port), listens on 127.0.0.1:P, prints "listening on 127.0.0.1:P threads N"
// once it accepts, and runs until SIGINT/SIGTERM (the default action: the benchmark driver
// kills it; nothing is kept that needs a graceful stop). Multi-threaded
// stackless peers give each thread its own SO_REUSEPORT listener and ring, the
// usual way to scale an event loop across cores; bobbin instead shares one
// listener and lets carriers steal.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <functional>
#include <vector>

namespace perf_echo {

// Every server reads into a buffer of this size per connection.
inline constexpr std::size_t kBufferSize = 4096;

struct options {
  int port = 7000;
  int threads = 1;
};

// Parses --port and --threads, exits with a usage message otherwise.
options parse_options(int argc, char** argv);

// Raises RLIMIT_NOFILE to its hard limit: 10,000 connections need it.
void raise_fd_limit();

// `count` listening TCP sockets on 127.0.0.1:o.port, all with SO_REUSEPORT
// (one per thread; the kernel spreads connections over them) and a backlog
// of 4096. With o.port 0 the first picks a free port and o.port is set to
// it. Exits the process on failure.
std::vector<int> listen_all(options& o, int count);

// Sets up `ring` with the flags bobbin's carriers use (runtime/io/ring.cc):
// single issuer, deferred task work, a completion queue 4x the submission
// queue, so the stackless peers get the same kernel fast paths.
void init_ring(io_uring& ring, unsigned entries = 4096);

// Prints the "listening" line, runs body(i) on `threads` threads and joins
// them (they never return before the process is killed).
void run_threads(const options& o, const char* name, const std::function<void(int)>& body);

// For the one-ring-per-thread peers: opens o.threads listeners
// (listen_all) and runs serve(listener) on a thread each (run_threads).
void serve_each_listener(options& o, const char* name, const std::function<void(int)>& serve);

// The loop turn both io_uring peers share, forever: one
// io_uring_submit_and_wait() hands the kernel every SQE prepared since the
// last turn and waits for a completion, then on_cqe(cqe) runs for each
// completion before the CQ head moves past them all.
template <typename OnCqe>
[[noreturn]] void run_completion_loop(io_uring& ring, OnCqe on_cqe) {
  for (;;) {
    io_uring_submit_and_wait(&ring, 1);
    io_uring_cqe* cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      seen++;
      on_cqe(cqe);
    }
    io_uring_cq_advance(&ring, seen);
  }
}

// Takes a free SQE, submitting what is queued first if the queue is full.
io_uring_sqe* get_sqe(io_uring& ring);

}  // namespace perf_echo
