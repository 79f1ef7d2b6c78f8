// examples/common/server.h
//
// The parts every example server shares, so each example file is about its
// protocol: raising the descriptor limit, turning SIGINT/SIGTERM into a
// graceful stop, an accept loop that survives EMFILE and out-of-stack
// spawns, and a registry of live connections that a stop can wake.
//
// Connection fibers live in a bobbin::scope owned by the accepting fiber, so
// none outlives the server's main fiber.
//
// Graceful stop, as the servers use it:
//   1. the signal thread calls request_stop(): it sets `stopping` and stops
//      the listener accepting (tcp_listener::stop_accepting(), the one call
//      that may race the accepting fiber), which ends the accept loop; the
//      loop's fiber closes the listener;
//   2. stop_and_drain() shuts down the connections that are waiting for a
//      new request (their read returns end-of-stream); the busy ones finish
//      the request they are on, see `stopping`, and close;
//   3. it waits for every connection, up to a deadline, then cancels the
//      scope: the stragglers' reads and writes return operation_canceled
//      wherever they wait, and they unwind. (Connections served by plain
//      threads, api_server --threads, are shut down instead.)
#ifndef BOBBIN_EXAMPLES_COMMON_SERVER_H_
#define BOBBIN_EXAMPLES_COMMON_SERVER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "bobbin/bobbin.h"

namespace examples {

void raise_fd_limit();
long peak_rss_kib();

// One connection's entry in the registry. `idle` is true while the fiber
// waits for the first byte of a new request.
struct connection {
  explicit connection(bobbin::tcp_stream s) : stream(std::move(s)) {}
  bobbin::tcp_stream stream;
  std::atomic<bool> idle{false};
};

// What a connection has read and not yet parsed. Parsers look at
// unconsumed(), the server consume()s what they used; read_from() first drops
// the consumed bytes, so the buffer holds at most one unfinished request
// plus one read.
class input_buffer {
 public:
  std::string_view unconsumed() const { return std::string_view(buf_).substr(start_); }
  void consume(size_t n) { start_ += n; }
  bool empty() const { return start_ == buf_.size(); }
  // Appends what one read_some() returns (at most `chunk` bytes, at most
  // kMaxChunk). The buffer holds only unread bytes: an idle connection
  // costs no heap.
  static constexpr size_t kMaxChunk = 16 * 1024;
  bobbin::io_result read_from(bobbin::tcp_stream& s, bobbin::deadline d, size_t chunk = kMaxChunk);

 private:
  std::string buf_;
  size_t start_ = 0;
};

// Writes `out` whole and clears it; false if the write failed.
bool flush(bobbin::tcp_stream& s, std::string& out, bobbin::deadline d = {});
// The same, but the limit is on a stall: false only if no byte went out for
// `stall` (0: wait for ever), so a large reply to a slow but reading client
// is not cut while one that stops reading is.
bool flush_unless_stalled(bobbin::tcp_stream& s, std::string& out, std::chrono::milliseconds stall);

class connection_registry {
 public:
  // Registers `c` for the life of the guard; constructed first thing in the
  // connection's fiber. accept_loop() counted the fiber before spawning it,
  // so a stop never misses a connection that is just starting.
  class guard {
   public:
    guard(connection_registry& r, connection& c);
    ~guard();
    guard(const guard&) = delete;
    guard& operator=(const guard&) = delete;

   private:
    connection_registry& r_;
    connection& c_;
  };

  bool stopping() const { return stopping_.load(); }
  // Step 1 of the graceful stop; from any thread.
  void request_stop(bobbin::tcp_listener& listener) {
    stopping_.store(true);
    listener.stop_accepting();
  }
  // Marks the connection idle; false if the server is stopping and the
  // connection should close instead of reading another request. The
  // seq_cst pair (idle store, stopping load) against stop_and_drain()'s
  // (stopping store, idle load) guarantees one side sees the other.
  bool enter_idle(connection& c);
  void leave_idle(connection& c) { c.idle.store(false); }

  // One more read for a connection, marked idle around it when nothing is
  // buffered (the wait between requests). When the server is stopping and
  // the connection is idle it does not read and reports end of stream.
  bobbin::io_result read_more(connection& c, input_buffer& in, bobbin::deadline idle_deadline,
                              bobbin::deadline busy_deadline);

  // Steps 2 and 3 of the graceful stop (the caller did step 1). Returns
  // false if connections were still open after `drain` and had to be cut:
  // `fibers` (the scope accept_loop() spawned into) is cancelled; without
  // one (threads), the connections are shut down.
  bool stop_and_drain(std::chrono::milliseconds drain, bobbin::scope* fibers = nullptr);

  // For a server that accepts on its own (a thread per connection): counts
  // one connection about to be served, as accept_loop() does before it
  // spawns; the connection's guard undoes it, and stop_and_drain() waits
  // for it.
  void count_connection() {
    accepted_.fetch_add(1);
    fibers_.add(1);
  }

  uint64_t accepted() const { return accepted_.load(); }
  uint64_t refused() const { return refused_.load(); }

  // Accepts until request_stop(), then closes the listener; runs
  // `serve(stream)` on a fiber per connection, spawned into `fibers`. An
  // exception escaping `serve` is logged and ends that connection only (it
  // does not fail the scope, which would cancel the other connections). Out
  // of descriptors: backs off 10 ms (the connection waits in the kernel's
  // backlog). Out of stacks: closes the new connection and counts it as
  // refused.
  void accept_loop(bobbin::tcp_listener& listener, const char* server_name,
                   const std::function<void(bobbin::tcp_stream)>& serve, bobbin::scope& fibers);

 private:
  void mark_stopping() { stopping_.store(true); }

  bobbin::mutex mu_;
  absl::flat_hash_set<connection*> live_;  // guarded by mu_
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> refused_{0};
  std::atomic<bool> stopping_{false};
  bobbin::wait_group fibers_;
};

// Blocks SIGINT and SIGTERM in the calling thread (do it before starting the
// runtime, so carriers inherit the mask) and starts a thread that waits for
// one of them and then runs `on_stop` (typically: request_stop()). join()
// it before exiting; request_stop() ends it without a signal.
class signal_thread {
 public:
  explicit signal_thread(std::function<void()> on_stop);
  ~signal_thread();
  void request_stop();

 private:
  std::thread thread_;
};

// --stats: from construction to destruction, a plain thread prints one line
// a second on stderr, "stats: carriers=N backend=io_uring|epoll fibers_alive=N stacks_mapped=N
// rss_peak_kib=N " followed by what `extra()` returns (the example's own
// counters, as key=value pairs). scripts/demo and scripts/soak read it:
// fibers alive and stacks mapped are what a leak would move.
class stats_printer {
 public:
  stats_printer(bobbin::runtime& rt, std::function<std::string()> extra);
  ~stats_printer();
  stats_printer(const stats_printer&) = delete;
  stats_printer& operator=(const stats_printer&) = delete;

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace examples

#endif  // BOBBIN_EXAMPLES_COMMON_SERVER_H_
