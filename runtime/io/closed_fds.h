// Not part of the bobbin API.
//
// close() of a user's fd that fibers wait on, on the epoll backend.
//
// On io_uring an operation holds the file it works on, as a thread blocked
// in read(2) does: if another thread closes the fd, the operation carries
// on and may still complete. On epoll a fiber waits for a registration on
// its carrier's epoll set instead, and the kernel drops that registration
// with the file: nothing would ever end the wait. So the close() interceptor
// (runtime/intercept/close_calls.cc) ends the epoll waits on that fd that
// began before it, on every carrier of every runtime: a read, write, recv,
// send, accept or connect with EBADF (what the plain call says of an fd that
// is not open), a poll() with POLLNVAL (what poll says of one). Go's
// netpoller and the JDK end a blocked read on a closed fd too (ErrClosed,
// SocketException).
//
// Which waits: those of the intercepted calls on users' fds (one-shot
// registrations). bobbin's own sockets (tcp_stream, tcp_listener) end their
// waits through their own close() (io_object.h). A wait that begins while
// the close runs (another thread using the fd as it closes it: a race with
// threads too) is not ended, because it may be on the file the number is
// given to next; neither is one under a close that no interposer sees (a
// raw system call, glibc's internal closes as in fclose, close_range) or a
// dup2/dup3 onto the fd. Not async-signal-safe, unlike close(2), while a
// fiber waits on the closed number: the notice takes locks (a handler that
// closes such an fd could interrupt their holder). A child of fork() stops
// looking (pthread_atfork): it has no carriers.
//
// The bookkeeping, per fd number hashed into kSlots slots: how many such
// waits are registered, and how many closes there were. A wait records the
// close count when it begins; close() raises the count and, if any wait is
// registered in the slot, tells every epoll backend once the fd is closed;
// each ends the fd's waits that recorded an older count (so not a wait on
// the file the number is given to after the close). Waiter and closer each change one
// word and then read the other's (both sequentially consistent), so either
// the closer sees the wait or the wait sees the new count and began after
// the close. A close with no wait registered in its slot costs an atomic
// increment and a load; off epoll, one load.
#ifndef BOBBIN_RUNTIME_IO_CLOSED_FDS_H_
#define BOBBIN_RUNTIME_IO_CLOSED_FDS_H_

#include <atomic>
#include <cstdint>

namespace bobbin::internal {

class epoll_backend;

namespace closed_fds {

// A wait on a user's fd begins on an epoll backend: returns the close count
// it records (for ended_by()).
uint32_t wait_begins(int fd);
// It ended (completed, cancelled, failed, ended by a close).
void wait_ends(int fd);
// Whether a wait that recorded `recorded` began before the close that
// raised the count to `close_count`.
inline bool ended_by(uint32_t recorded, uint32_t close_count) {
  return static_cast<int32_t>(recorded - close_count) < 0;
}

// For the close() interceptor. before_close(), before the real close,
// counts the close: it returns 0 when no wait is registered under `fd`'s
// slot, else the close count to pass to after_close(), which, after the
// real close, has every epoll backend end the waits on `fd` that began
// before (epoll_backend::note_closed). After, not before: a fiber whose wait
// is ended looks at the fd again (poll re-runs the plain call), and must
// find it closed.
uint32_t before_close(int fd);
void after_close(int fd, uint32_t close_count);

// Whether an epoll backend runs in this process (the interceptor's
// fast-path check; set at the first backend and never cleared).
extern std::atomic<bool> g_epoll_in_use __attribute__((visibility("hidden")));
inline bool epoll_in_use() { return g_epoll_in_use.load(std::memory_order_relaxed); }

// Each epoll backend, for the time it exists.
void add_backend(epoll_backend* b);
void remove_backend(epoll_backend* b);

}  // namespace closed_fds
}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_IO_CLOSED_FDS_H_
