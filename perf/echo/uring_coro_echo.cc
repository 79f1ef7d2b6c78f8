// perf/echo/uring_coro_echo: the echo protocol as C++20 stackless coroutines
// over io_uring: the fair stackless peer of bobbin's fibers (same ring, same
// flags, same one-operation-per-connection shape, no stacks).
//
// The task type is the minimum a real program needs: a detached coroutine
// that starts eagerly and frees its frame when it finishes. co_await on an
// io_awaitable prepares an SQE whose user_data points at the awaitable in the
// coroutine's frame; the loop stores the result there and resumes the
// coroutine inline when the completion arrives. Submissions
// are batched as in the raw loop: one io_uring_submit_and_wait() per turn.
//
// Run: uring_coro_echo --port 7000 --threads 1
#include <sys/socket.h>
#include <unistd.h>

#include <coroutine>
#include <cstdio>
#include <exception>

#include "peer_common.h"

namespace {

using namespace perf_echo;

// A fire-and-forget coroutine: runs until its first suspension at once, and
// its frame is destroyed when the body returns.
struct detached_task {
  struct promise_type {
    detached_task get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

// An operation in flight: what the loop needs to hand a completion back.
struct pending_op {
  std::coroutine_handle<> waiter;
  int res = 0;
};

// One io_uring operation, awaited: `int res = co_await submit(ring, prep);`
// where prep fills the SQE. The awaitable lives in the coroutine frame, so
// the SQE's user_data can point at it until the completion resumes us.
template <typename Prep>
struct io_awaitable : pending_op {
  io_uring& ring;
  Prep prep;

  io_awaitable(io_uring& r, Prep p) : ring(r), prep(p) {}
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    waiter = h;
    io_uring_sqe* sqe = get_sqe(ring);
    prep(sqe);
    io_uring_sqe_set_data(sqe, static_cast<pending_op*>(this));
  }
  int await_resume() const noexcept { return res; }
};

template <typename Prep>
io_awaitable<Prep> submit(io_uring& ring, Prep prep) {
  return io_awaitable<Prep>(ring, prep);
}

detached_task echo(io_uring& ring, int fd) {
  char buf[kBufferSize];
  for (;;) {
    int n = co_await submit(ring, [&](io_uring_sqe* sqe) { io_uring_prep_recv(sqe, fd, buf, sizeof buf, 0); });
    if (n <= 0) break;
    int sent = 0;
    while (sent < n) {
      int w = co_await submit(
          ring, [&](io_uring_sqe* sqe) { io_uring_prep_send(sqe, fd, buf + sent, n - sent, MSG_NOSIGNAL); });
      if (w <= 0) break;
      sent += w;
    }
    if (sent < n) break;
  }
  close(fd);
}

detached_task accept_loop(io_uring& ring, int listener) {
  for (;;) {
    int fd = co_await submit(ring, [&](io_uring_sqe* sqe) {
      io_uring_prep_accept(sqe, listener, nullptr, nullptr, SOCK_CLOEXEC);
    });
    if (fd >= 0) echo(ring, fd);
    // Errors (EMFILE, ECONNABORTED) leave the connection queued; try again.
  }
}

void serve(int listener) {
  io_uring ring;
  init_ring(ring);
  accept_loop(ring, listener);
  run_completion_loop(ring, [](io_uring_cqe* cqe) {
    auto* op = static_cast<pending_op*>(io_uring_cqe_get_data(cqe));
    op->res = cqe->res;
    op->waiter.resume();
  });
}

}  // namespace

int main(int argc, char** argv) {
  options o = parse_options(argc, argv);
  raise_fd_limit();
  serve_each_listener(o, "C++20 coroutines on io_uring", serve);
}
