// bobbin/blocking_calls.h
//
// Unmodified blocking code parks the fiber. A program that links bobbin gets
// bobbin's definitions of the blocking libc functions ahead of glibc's (the
// dynamic linker resolves every library's `recv` to the first definition in
// its search order), so libpq, libcurl, hiredis, libstdc++ and your own code
// that call them on a fiber park that fiber instead of blocking its carrier,
// exactly as the JDK's blocking calls park a virtual thread:
//
//   bobbin::run([] {
//     for (int i = 0; i < 200; i++)
//       bobbin::spawn([] { PGconn* c = PQconnectdb(...); PQexec(c, "SELECT ..."); });  // parks
//   });
//
// Covered: read, write, readv, writev, pread, pwrite, preadv, pwritev (and
// the 64 forms), recv, recvfrom, recvmsg, send, sendto, sendmsg, accept,
// accept4, connect, poll, ppoll, select, pselect, epoll_wait, epoll_pwait,
// epoll_pwait2, nanosleep, clock_nanosleep, usleep, sleep, fsync, fdatasync,
// getaddrinfo and getnameinfo (on the blocking pool, unless the call only
// converts numbers: an address literal and a port, NI_NUMERICHOST), the
// _FORTIFY_SOURCE entry points (__read_chk, __recv_chk, __recvfrom_chk,
// __pread_chk, __pread64_chk, __poll_chk, __ppoll_chk), and
// pthread_mutex_lock, trylock, timedlock, clocklock and unlock (std::mutex,
// std::timed_mutex, std::recursive_mutex: the fiber owns the mutex and
// waiting for it parks; README "OS locks and waits"), and pthread_cond_init,
// destroy, wait, timedwait, clockwait, signal and broadcast
// (std::condition_variable: bobbin's own condition variable, for threads
// too; a waiting fiber parks), the pthread_rwlock calls (std::shared_mutex),
// and futex waits made through glibc's syscall() (std::atomic::wait,
// std::future, semaphores).
// Not covered, so they still block the carrier and show in the pinning
// report (bobbin/pinning.h): glibc-internal calls (stdio's reads, the
// resolver's own sockets: hence getaddrinfo on the pool), system calls made
// without glibc's wrappers and statically linked libraries, open/openat,
// flock, waitpid, splice, sendfile, process-shared or robust mutexes and
// process-shared condition variables.
// close() keeps the kernel's meaning: an io_uring operation holds its own
// reference to the file, as a thread blocked in a system call does, and
// carries on. On the epoll backend (where io_uring is refused) a wait holds
// no file, so close() of an fd that fibers wait on ends those waits with
// EBADF (poll: POLLNVAL), as Go and the JDK end a blocked read on a closed
// fd; a close() with no such wait costs two atomic operations.
//
// Semantics are the kernel's: a call first tries without blocking (the
// plain call's cost); if it would block and the fd is O_NONBLOCK it returns
// EAGAIN as the plain call does; otherwise the fiber parks on the same
// operation on its carrier's io_uring ring, bounded by SO_RCVTIMEO /
// SO_SNDTIMEO (expiry gives EAGAIN). A blocking write returns when all of it
// is written. poll/select/epoll park on one IORING_OP_POLL_ADD per fd and
// compute their result with the plain call, so revents are the kernel's.
// Differences, all documented in README "Blocking libraries": a parked fiber
// is not interrupted by signals (no EINTR; sleep's remaining time is never
// written), and a signal mask passed to ppoll/pselect/epoll_pwait applies
// only to the non-blocking attempts.
//
// errno and thread-locals: a fiber parked inside an intercepted call
// resumes on the carrier (OS thread) it parked on, so code that holds
// &errno or another thread-local across the call stays correct.
//
// Turning it off: runtime_options::intercept_blocking_calls = false for one
// runtime, BOBBIN_INTERCEPT=0 for the process. Off a fiber, or inside a
// pinned_scope, every intercepted function is the plain libc call behind one
// branch. For a binary that does not link bobbin itself but loads it (a
// plugin host), LD_PRELOAD=libbobbin.so puts the definitions first.
//
// Cost on a fiber: a call that does not block costs the plain call; one that
// parks costs two system calls more than bobbin's own I/O API (the
// non-blocking attempt and an fcntl(F_GETFL); a getsockopt too once some
// socket in the process has a timeout). A name lookup parks on the
// blocking pool (wait reason "offload"). See perf/RESULTS.md.
#ifndef BOBBIN_BLOCKING_CALLS_H_
#define BOBBIN_BLOCKING_CALLS_H_

#include "bobbin/config.h"

namespace bobbin {

// True unless BOBBIN_INTERCEPT=0 turned interception off for the process.
// Whether a given call parks also depends on its runtime's option and on
// the caller being an unpinned fiber.
BOBBIN_API bool blocking_calls_intercepted() noexcept;

}  // namespace bobbin

#endif  // BOBBIN_BLOCKING_CALLS_H_
