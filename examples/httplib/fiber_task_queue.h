// examples/httplib/fiber_task_queue.h: serves every connection cpp-httplib
// accepts on its own bobbin fiber, through cpp-httplib's task-queue hook.
// The library is used unmodified; this header is the whole adapter, to take
// into your own code:
//
//   auto rt = bobbin::runtime::start({.stack_size = 8 << 20}).value();
//   httplib::Server svr;
//   svr.new_task_queue = [&rt] { return new bobbin_httplib::fiber_task_queue(*rt); };
//   svr.set_tcp_nodelay(true);
//   svr.listen("0.0.0.0", 8080);  // the accept loop stays on this thread
//
// cpp-httplib's own pool (httplib::ThreadPool) runs as many connections at
// a time as it has threads (CPPHTTPLIB_THREAD_POOL_COUNT: the number of
// cores less one, at least 8) and queues the rest, keep-alive
// connections included, so on 2 cores the 9th client waits for one of the
// first 8 to hang up. Here each connection gets a fiber, and the library's blocking
// calls (poll, recv, send, and those of whatever the handlers call: libpq,
// std::this_thread::sleep_for, a std::mutex) park it instead of holding a
// thread (bobbin/blocking_calls.h).
//
// Cost: one fiber per open connection, and a spawn per accepted connection.
//
// Stack size: give the runtime the stack a thread would have
// (runtime_options::stack_size = 8 MiB; reserved, not committed: a fiber
// touches the pages it uses). cpp-httplib matches every route, and the
// Range header, with std::regex, and libstdc++'s matcher recurses once per
// character: measured here, a route `/files/(.*)` overflows bobbin's
// default 64 KiB stack at a 500-character path, and a Range header of the
// 8 KiB cpp-httplib accepts needs more than 4 MiB. A stack overflow ends
// the process, so with a small stack one request takes the server down;
// with 8 MiB a fiber survives exactly what cpp-httplib's own threads do.
//
// When no stack can be had (runtime_options::max_fibers, or memory), the
// accepting thread waits and tries again every millisecond: the connection
// is queued, not dropped, as with cpp-httplib's own pool when every thread
// is busy. Those waits are counted in `*spawn_retries`, if given
// (cpp-httplib deletes the task queue when listen() returns).
//
// shutdown() (cpp-httplib calls it when listen() returns, after stop())
// waits for the connections still open to finish, as httplib::ThreadPool
// joins its threads, but for `drain` at most (10 s by default); shutting the
// runtime down afterwards ends the rest.
#ifndef BOBBIN_EXAMPLES_HTTPLIB_FIBER_TASK_QUEUE_H_
#define BOBBIN_EXAMPLES_HTTPLIB_FIBER_TASK_QUEUE_H_

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <utility>

#include "bobbin/bobbin.h"

namespace bobbin_httplib {

class fiber_task_queue final : public httplib::TaskQueue {
 public:
  // `drain`: how long shutdown() waits for open connections to finish.
  explicit fiber_task_queue(bobbin::runtime& rt, std::atomic<long>* spawn_retries = nullptr,
                            std::chrono::milliseconds drain = std::chrono::seconds(10))
      : rt_(rt), spawn_retries_(spawn_retries), drain_(drain), live_(std::make_shared<connections>()) {}

  // Called by cpp-httplib's accept loop with a task that serves one
  // connection and closes it.
  void enqueue(std::function<void()> task) override {
    {
      std::lock_guard l(live_->mu);
      live_->open++;
    }
    // The fibers share `live_`, not `this`: cpp-httplib deletes the queue
    // when shutdown() returns, which may be before the last one ends.
    auto serve = [live = live_, task = std::move(task)] {
      try {
        task();
      } catch (const std::exception& e) {
        // cpp-httplib catches what handlers throw; this is its own code
        // failing (std::bad_alloc while parsing or writing). The connection
        // is lost, not the process (an exception leaving a detached fiber
        // would end it).
        std::fprintf(stderr, "bobbin_httplib: a connection failed: %s\n", e.what());
      } catch (...) {
        std::fprintf(stderr, "bobbin_httplib: a connection failed\n");
      }
      live->finished();
    };
    for (;;) {
      try {
        // A copy per try: a spawn that throws has consumed its argument.
        rt_.spawn(serve, bobbin::fiber_options{.name = "httplib-conn"}).detach();
        return;
      } catch (const std::system_error&) {
        // No stack now: wait for a connection to finish.
      } catch (const std::bad_alloc&) {
        // No memory for the fiber or the copy: the same.
      }
      if (spawn_retries_ != nullptr) spawn_retries_->fetch_add(1, std::memory_order_relaxed);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  // Waits up to `drain` for the open connections to finish, as
  // httplib::ThreadPool joins its threads. What is still open then (a
  // client that trickles a request in under cpp-httplib's read timeout)
  // ends when the runtime shuts down: its calls fail as cancelled.
  void shutdown() override {
    std::unique_lock l(live_->mu);
    live_->idle.wait_for(l, drain_, [this] { return live_->open == 0; });
  }

 private:
  struct connections {
    std::mutex mu;
    std::condition_variable idle;
    long open = 0;  // guarded by mu
    void finished() {
      std::lock_guard l(mu);
      if (--open == 0) idle.notify_all();
    }
  };

  bobbin::runtime& rt_;
  std::atomic<long>* const spawn_retries_;
  const std::chrono::milliseconds drain_;
  const std::shared_ptr<connections> live_;
};

}  // namespace bobbin_httplib

#endif  // BOBBIN_EXAMPLES_HTTPLIB_FIBER_TASK_QUEUE_H_
