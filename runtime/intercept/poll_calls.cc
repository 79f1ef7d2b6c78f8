// Interceptors for the readiness waits: poll, ppoll, select, pselect and
// the epoll_wait family. This is where non-blocking clients (libpq, libcurl,
// hiredis in its async mode) wait, so this is where they must park.
//
// On a fiber each is: the plain call with a zero timeout (ready now, or an
// error: that is the answer); else park on one IORING_OP_POLL_ADD per fd
// plus an IORING_OP_TIMEOUT for the caller's timeout, all sharing one
// completion record; the first completion cancels the rest (one
// IORING_OP_ASYNC_CANCEL matching them all), and the fiber resumes when every
// one has answered, so nothing on its stack is referenced after. Then the
// plain call with a zero timeout again computes the result, so revents,
// fd_set contents and return values are the kernel's own; a wake-up that
// finds nothing ready (another fiber read the data first) waits again.
// An epoll set is waited on as one fd (the epoll fd is readable when its
// ready list is not empty).
//
// Signal masks (ppoll, pselect, epoll_pwait) are applied for the plain
// zero-timeout calls only: while the fiber is parked, its carrier's mask is
// in force. See README "Blocking libraries".
// The interceptors must define glibc's own names: no fortify wrappers and no
// pread -> pread64 redirection (meson builds with _FILE_OFFSET_BITS=64).
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS
#include <liburing.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>

#include <cerrno>
#include <chrono>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "runtime/intercept/fiber_calls.h"
#include "runtime/intercept/libc.h"
#include "runtime/util/deadline_time.h"

namespace bobbin::internal::intercept {
namespace real {
BOBBIN_NEXT_SYMBOL(poll)
BOBBIN_NEXT_SYMBOL(ppoll)
BOBBIN_NEXT_SYMBOL(select)
BOBBIN_NEXT_SYMBOL(pselect)
BOBBIN_NEXT_SYMBOL(epoll_wait)
BOBBIN_NEXT_SYMBOL(epoll_pwait)
BOBBIN_NEXT_SYMBOL(epoll_pwait2)
}  // namespace real

namespace {

// The SQEs of one wait, answered through one completion (see the top).
struct poll_group {
  completion c{&on_complete};
  fiber_control* fiber = nullptr;
  carrier* home = nullptr;
  int outstanding = 0;  // SQEs not yet answered; touched on `home` only
  bool fired = false;

  static void on_complete(completion* comp, int, uint32_t) {
    auto* g = reinterpret_cast<poll_group*>(comp);
    g->outstanding--;
    if (!g->fired) {
      g->fired = true;
      if (g->outstanding > 0) g->home->cancel_here(reinterpret_cast<uint64_t>(&g->c));
    }
    if (g->outstanding == 0) g->home->push_bound(g->fiber);
  }
};

// Parks until one of `fds` is ready for its events or `d` passes (or a
// spurious wake-up); the caller re-checks with a zero-timeout call. False
// if the fiber is cancelled (runtime/fiber/cancel.h): the caller then
// fails with ECANCELED.
bool wait_for_any(carrier* c, const pollfd* fds, size_t n, deadline d) {
  if (d.is_never()) {
    bool any = false;
    for (size_t i = 0; i < n && !any; i++) any = fds[i].fd >= 0;
    if (!any) d = deadline(std::chrono::hours(24 * 365 * 100));  // poll(NULL, 0, -1) sleeps forever
  }
  fiber_control* self = c->current();
  if (cancel_requested(self)) return false;
  poll_group g;
  g.fiber = self;
  g.home = c;
  for (size_t i = 0; i < n; i++) g.outstanding += fds[i].fd >= 0;
  g.outstanding += !d.is_never();
  __kernel_timespec ts{};
  for (size_t i = 0; i < n; i++) {
    if (fds[i].fd < 0) continue;  // poll ignores negative fds
    io_uring_sqe* sqe = c->io().get_sqe();
    io_uring_prep_poll_add(sqe, fds[i].fd, static_cast<unsigned>(static_cast<unsigned short>(fds[i].events)));
    io_uring_sqe_set_data(sqe, &g.c);
  }
  if (!d.is_never()) {
    ts = monotonic_timespec(d);
    c->io().arm_timer(ts, &g.c);
  }
  // A cancellation cancels one of the group's SQEs; its completion cancels
  // the rest (poll_group::on_complete).
  const bool hooked = publish_cancel_hook(self, {cancel_hook::ring_op, nullptr, nullptr, c, &g.c});
  if (!hooked) {
    c->io().cancel(reinterpret_cast<uint64_t>(&g.c), nullptr);
  }
  bump(c->intercepted_parks);
  self->reason.store(wait_reason::libc_poll, std::memory_order_relaxed);
  self->parked_at_ms.store(c->clock_ms(), std::memory_order_relaxed);
  self->state.store(fiber_state::parked, std::memory_order_relaxed);
  switch_action a{&self->ctx, switch_action::none, self, nullptr};
  c->switch_away(self, &a, /*via_scheduler=*/true);
  if (hooked) withdraw_cancel_hook(self);
  return !cancel_requested(self);
}

int fail_canceled() {
  errno = ECANCELED;
  return -1;
}

deadline from_ms(int timeout_ms) {
  return timeout_ms < 0 ? deadline::never() : deadline(std::chrono::milliseconds(timeout_ms));
}

deadline from_timespec(const timespec* t) {
  if (t == nullptr) return deadline::never();
  return deadline(std::chrono::seconds(t->tv_sec) + std::chrono::nanoseconds(t->tv_nsec));
}

// poll/ppoll on a fiber: `now()` is the plain call with a zero timeout.
template <class Now>
__attribute__((noinline)) int fiber_poll(carrier* c, pollfd* fds, nfds_t n, deadline d, Now&& now) {
  for (;;) {
    int r = now();
    if (r != 0 || d.expired()) return r;
    if (!wait_for_any(c, fds, n, d)) return fail_canceled();
  }
}

// select/pselect on a fiber. The sets are in/out: keep the caller's input.
template <class Now>
__attribute__((noinline)) int fiber_select(carrier* c, int nfds, fd_set* rd, fd_set* wr, fd_set* ex, deadline d, Now&& now) {
  fd_set in_rd, in_wr, in_ex;
  if (rd) in_rd = *rd;
  if (wr) in_wr = *wr;
  if (ex) in_ex = *ex;
  absl::InlinedVector<pollfd, 16> fds;
  for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++) {
    short ev = 0;
    if (rd && FD_ISSET(fd, &in_rd)) ev |= POLLIN;
    if (wr && FD_ISSET(fd, &in_wr)) ev |= POLLOUT;
    if (ex && FD_ISSET(fd, &in_ex)) ev |= POLLPRI;
    if (ev != 0) fds.push_back(pollfd{fd, ev, 0});
  }
  for (;;) {
    if (rd) *rd = in_rd;
    if (wr) *wr = in_wr;
    if (ex) *ex = in_ex;
    int r = now();
    if (r != 0 || d.expired()) return r;
    if (!wait_for_any(c, fds.data(), fds.size(), d)) return fail_canceled();
  }
}

template <class Now>
__attribute__((noinline)) int fiber_epoll_wait(carrier* c, int epfd, deadline d, Now&& now) {
  for (;;) {
    int r = now();
    if (r != 0 || d.expired()) return r;
    pollfd p{epfd, POLLIN, 0};
    if (!wait_for_any(c, &p, 1, d)) return fail_canceled();
  }
}

}  // namespace
}  // namespace bobbin::internal::intercept

using bobbin::internal::carrier;
using namespace bobbin::internal::intercept;  // NOLINT: the interceptors below are its whole point

__attribute__((noinline)) static int poll_on_carrier(pollfd* fds, nfds_t n, int timeout_ms) {
  carrier* c = parking_carrier();
  if (c == nullptr || timeout_ms == 0) return real::poll(fds, n, timeout_ms);
  return fiber_poll(c, fds, n, from_ms(timeout_ms), [&] { return real::poll(fds, n, 0); });
}

BOBBIN_INTERPOSE int poll(pollfd* fds, nfds_t n, int timeout_ms) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::poll(fds, n, timeout_ms);
  return poll_on_carrier(fds, n, timeout_ms);
}

__attribute__((noinline)) static int ppoll_on_carrier(pollfd* fds, nfds_t n, const timespec* timeout, const sigset_t* mask) {
  carrier* c = parking_carrier();
  if (c == nullptr || (timeout != nullptr && timeout->tv_sec == 0 && timeout->tv_nsec == 0)) {
    return real::ppoll(fds, n, timeout, mask);
  }
  if (timeout != nullptr && (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000)) {
    errno = EINVAL;
    return -1;
  }
  const timespec zero{};
  return fiber_poll(c, fds, n, from_timespec(timeout), [&] { return real::ppoll(fds, n, &zero, mask); });
}

BOBBIN_INTERPOSE int ppoll(pollfd* fds, nfds_t n, const timespec* timeout, const sigset_t* mask) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::ppoll(fds, n, timeout, mask);
  return ppoll_on_carrier(fds, n, timeout, mask);
}

__attribute__((noinline)) static int select_on_carrier(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, timeval* timeout) {
  carrier* c = parking_carrier();
  if (c == nullptr || (timeout != nullptr && timeout->tv_sec == 0 && timeout->tv_usec == 0)) {
    return real::select(nfds, rd, wr, ex, timeout);
  }
  if (nfds < 0 || (timeout != nullptr && (timeout->tv_sec < 0 || timeout->tv_usec < 0))) {
    errno = EINVAL;
    return -1;
  }
  bobbin::deadline d = timeout == nullptr
                           ? bobbin::deadline::never()
                           : bobbin::deadline(std::chrono::seconds(timeout->tv_sec) +
                                              std::chrono::microseconds(timeout->tv_usec));
  int r = fiber_select(c, nfds, rd, wr, ex, d, [&] {
    timeval zero{};
    return real::select(nfds, rd, wr, ex, &zero);
  });
  if (timeout != nullptr) {  // Linux's select leaves the time not slept in *timeout
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(d.time() - std::chrono::steady_clock::now());
    if (left.count() < 0) left = left.zero();
    timeout->tv_sec = static_cast<time_t>(left.count() / 1000000);
    timeout->tv_usec = static_cast<suseconds_t>(left.count() % 1000000);
  }
  return r;
}

BOBBIN_INTERPOSE int select(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, timeval* timeout) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::select(nfds, rd, wr, ex, timeout);
  return select_on_carrier(nfds, rd, wr, ex, timeout);
}

__attribute__((noinline)) static int pselect_on_carrier(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, const timespec* timeout,
                             const sigset_t* mask) {
  carrier* c = parking_carrier();
  if (c == nullptr || (timeout != nullptr && timeout->tv_sec == 0 && timeout->tv_nsec == 0)) {
    return real::pselect(nfds, rd, wr, ex, timeout, mask);
  }
  if (nfds < 0 || (timeout != nullptr && (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000))) {
    errno = EINVAL;
    return -1;
  }
  const timespec zero{};
  return fiber_select(c, nfds, rd, wr, ex, from_timespec(timeout),
                      [&] { return real::pselect(nfds, rd, wr, ex, &zero, mask); });
}

BOBBIN_INTERPOSE int pselect(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, const timespec* timeout,
                             const sigset_t* mask) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::pselect(nfds, rd, wr, ex, timeout, mask);
  return pselect_on_carrier(nfds, rd, wr, ex, timeout, mask);
}

__attribute__((noinline)) static int epoll_wait_on_carrier(int epfd, epoll_event* events, int max, int timeout_ms) {
  carrier* c = parking_carrier();
  if (c == nullptr || timeout_ms == 0) return real::epoll_wait(epfd, events, max, timeout_ms);
  return fiber_epoll_wait(c, epfd, from_ms(timeout_ms), [&] { return real::epoll_wait(epfd, events, max, 0); });
}

BOBBIN_INTERPOSE int epoll_wait(int epfd, epoll_event* events, int max, int timeout_ms) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::epoll_wait(epfd, events, max, timeout_ms);
  return epoll_wait_on_carrier(epfd, events, max, timeout_ms);
}

__attribute__((noinline)) static int epoll_pwait_on_carrier(int epfd, epoll_event* events, int max, int timeout_ms, const sigset_t* mask) {
  carrier* c = parking_carrier();
  if (c == nullptr || timeout_ms == 0) return real::epoll_pwait(epfd, events, max, timeout_ms, mask);
  return fiber_epoll_wait(c, epfd, from_ms(timeout_ms),
                          [&] { return real::epoll_pwait(epfd, events, max, 0, mask); });
}

BOBBIN_INTERPOSE int epoll_pwait(int epfd, epoll_event* events, int max, int timeout_ms, const sigset_t* mask) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::epoll_pwait(epfd, events, max, timeout_ms, mask);
  return epoll_pwait_on_carrier(epfd, events, max, timeout_ms, mask);
}

__attribute__((noinline)) static int epoll_pwait2_on_carrier(int epfd, epoll_event* events, int max, const timespec* timeout,
                                  const sigset_t* mask) {
  carrier* c = parking_carrier();
  if (c == nullptr || (timeout != nullptr && timeout->tv_sec == 0 && timeout->tv_nsec == 0)) {
    return real::epoll_pwait2(epfd, events, max, timeout, mask);
  }
  const timespec zero{};
  return fiber_epoll_wait(c, epfd, from_timespec(timeout),
                          [&] { return real::epoll_pwait2(epfd, events, max, &zero, mask); });
}

BOBBIN_INTERPOSE int epoll_pwait2(int epfd, epoll_event* events, int max, const timespec* timeout,
                                  const sigset_t* mask) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::epoll_pwait2(epfd, events, max, timeout, mask);
  return epoll_pwait2_on_carrier(epfd, events, max, timeout, mask);
}
