// bobbin/runtime.h
//
// The runtime: a pool of carrier threads, one io_uring ring each, that run
// fibers. Most programs need one call:
//
//   int main() {
//     return bobbin::run([] {
//       auto listener = bobbin::tcp_listener::bind(...).value();
//       ...                               // blocking-style code, on a fiber
//       return 0;
//     });
//   }
//
// run() starts a runtime, runs the callable on a main fiber, waits for it,
// shuts the runtime down and returns its result (or rethrows its exception).
// Fibers still alive when the main fiber ends are cancelled (fiber.h,
// request_stop) and given runtime_options::shutdown_grace to return, so that
// their destructors run and their sockets close; the few that do not return
// in time are abandoned, named on stderr, their stacks leaked unwound.
//
// For more control (several runtimes, spawning from existing threads), use
// runtime::start() and runtime::spawn(); destroying the runtime shuts it down.
//
// Cost: starting a runtime creates `carriers` threads, each with an io_uring
// ring and an eventfd; an idle runtime sleeps in the kernel (no spinning
// beyond a few microseconds after the last fiber parks).
#ifndef BOBBIN_RUNTIME_H_
#define BOBBIN_RUNTIME_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/statusor.h"
#include "bobbin/config.h"
#include "bobbin/fiber.h"
#include "bobbin/offload.h"
#include "bobbin/pinning.h"

namespace bobbin {

// What to do when a stack cannot get a guard page (only on kernels before
// 6.13, whose mprotect guards split mappings and run into vm.max_map_count).
enum class stack_guard_policy {
  best_effort,  // guard while the map budget lasts, then warn once and go on unguarded
  required,     // fail spawn with ResourceExhausted instead of an unguarded stack
};

// The format of a fiber dump (runtime::dump()).
enum class dump_format {
  text,  // grouped by identical stacks, with a count per group (like Go's SIGQUIT traceback)
  json,  // one object on one line: {"fibers": [{"id", "name", "state", "wait_reason", "carrier", "stack": [...]}, ...]}
};

// The kernel interface the carriers wait on (README "Where io_uring is
// refused"). Chosen once, at start, for every carrier of the runtime.
enum class io_backend {
  automatic,  // io_uring; epoll where io_uring is refused or too old, with one line on stderr saying why
  io_uring,   // io_uring, or start fails with the reason it is refused
  epoll,      // epoll and non-blocking calls, file I/O on worker threads, even where io_uring works
};

// "io_uring", "epoll" or "automatic".
inline const char* to_string(io_backend b) noexcept {
  return b == io_backend::io_uring ? "io_uring" : b == io_backend::epoll ? "epoll" : "automatic";
}

struct runtime_options {
  unsigned carriers = 0;               // 0: one per hardware thread
  // The environment variable BOBBIN_BACKEND=auto|io_uring|epoll, when set,
  // overrides this (any other value fails the start).
  io_backend backend = io_backend::automatic;
  std::size_t stack_size = 64 * 1024;  // usable bytes per fiber stack (rounded up to pages)
  std::size_t max_fibers = 0;          // 0: no limit beyond memory; else spawn fails past it
  unsigned ring_entries = 4096;        // submission queue depth of each carrier's ring
  // The kernel's own threads (iou-wrk-*) that run a carrier's operations
  // that cannot complete without blocking: fsync, file I/O the file system
  // cannot do without waiting, open and stat. At most this many per carrier
  // for regular files, block devices and operations on paths ("bounded":
  // each should finish in bounded time, so more would only queue at the
  // disk; a hung network file system holds them all), and for other files
  // ("unbounded": e.g. a read of a device that cannot be polled, which may
  // never finish, so the bound must stay above how many such waits may be
  // outstanding at once). 0 leaves the kernel's limit: min(ring_entries, 4
  // per CPU) and RLIMIT_NPROC. Kernels before 5.15 ignore both; some apply
  // them per NUMA node.
  unsigned io_workers_bounded = 4;
  unsigned io_workers_unbounded = 64;
  stack_guard_policy guard_policy = stack_guard_policy::best_effort;
  // Pinning (bobbin/pinning.h): how long a carrier may run one fiber without
  // parking before it is reported; zero turns detection and compensation off
  // (the monitor thread still runs, every 5 ms, to wake an idle carrier for
  // fibers queued behind one that holds its carrier).
  std::chrono::milliseconds pin_threshold{20};
  // Spare carriers the monitor may bring online while carriers are blocked
  // (compensation); -1: as many as there are carriers; 0: none.
  int max_spare_carriers = -1;
  // Also bring a spare online for a carrier that has run one fiber for a
  // whole monitor interval (pin_threshold / 4), computing or kept off the
  // CPU by the OS, with fibers queued behind it and no carrier idle, so the
  // kernel shares the cores between the hog and them (fibers are not
  // preempted; Go preempts after 10 ms). Off by
  // default: while spares run, more fibers than `carriers` run at once, so
  // code that counts on one carrier running one fiber at a time must keep it
  // off. README "Compensation" has what it changed in a measured mix.
  bool spares_for_cpu_hogs = false;
  // Threads of the blocking pool behind offload() (bobbin/offload.h).
  unsigned offload_threads = 64;
  // Blocking libc calls made on this runtime's fibers (read, recv, poll,
  // usleep, getaddrinfo, ... from any library) park the fiber instead of
  // blocking the carrier (bobbin/blocking_calls.h). false: they block the
  // carrier, as on a plain thread. BOBBIN_INTERCEPT=0 turns it off for the
  // whole process whatever this says.
  bool intercept_blocking_calls = true;
  // A fiber that waited for an OS lock (a std::mutex, README "OS locks and
  // waits") resumes on the carrier it parked on, as after an intercepted
  // libc call: the code around the lock is compiled for threads and may
  // keep a thread-local's address across pthread_mutex_lock (GCC does in
  // -fPIC code), which on another carrier would name that thread's
  // variable. While that carrier is stuck in a pinned call the fiber waits
  // for it, and its wake is passed on to another waiter. true: it resumes
  // on any carrier at once; only for code that keeps no such address.
  bool os_lock_waiters_migrate = false;
  // Deadlock report (see "Seeing inside" in the README): when every fiber
  // has been parked this long on bobbin primitives without deadlines (no
  // I/O, sleep or timed wait that could end it) and nothing has run, write
  // "bobbin: all N fibers are parked and nothing can wake them" and a fiber
  // dump to stderr, once per episode. A plain thread that is not inside a
  // bobbin wait could still wake them later (bobbin cannot see it), hence
  // the delay: a report, not a verdict. Zero turns it off.
  std::chrono::milliseconds deadlock_report_after{10000};
  // After that report, abort the process, as Go does ("all goroutines are
  // asleep - deadlock!"). For tests and programs that would rather crash.
  bool abort_on_deadlock = false;
  // Shutdown: fibers still alive are cancelled (every wait they are parked
  // in, or enter, returns its "canceled" outcome) and shutdown waits this
  // long for them to return. Those still alive after it are abandoned:
  // named on stderr, their stacks kept mapped and never unwound. Fibers
  // spawned during the grace period start cancelled. Zero: abandon at once.
  std::chrono::milliseconds shutdown_grace{2000};
};

// Counters, read with relaxed loads: a consistent snapshot is not promised.
struct runtime_stats {
  unsigned carriers = 0;
  io_backend backend = io_backend::io_uring;  // the one the carriers use (never automatic)
  uint64_t fibers_spawned = 0;
  uint64_t fibers_alive = 0;
  uint64_t context_switches = 0;
  uint64_t steals = 0;             // fibers taken from another carrier's run queue
  uint64_t carrier_wakeups = 0;    // eventfd writes that woke a sleeping carrier
  uint64_t backlog_wakeups = 0;    // of those, by the monitor: fibers queued behind one that ran on
  uint64_t io_submitted = 0;       // operations started (SQEs handed to the kernel, on io_uring)
  uint64_t io_enter_calls = 0;     // io_uring_enter system calls (epoll_pwait2 calls, on epoll)
  // On epoll, epoll_ctl calls that registered, re-armed or removed an fd: a
  // socket of a tcp_stream or tcp_listener is registered once per carrier
  // it waits on, a user's fd under an intercepted call re-armed for each
  // wait (README "Backends"). 0 on io_uring.
  uint64_t io_registrations = 0;
  uint64_t stacks_mapped = 0;      // stacks ever mmap'd (the rest were reused)
  uint64_t stacks_unguarded = 0;   // stacks running without a guard page
  uint64_t pin_events = 0;         // pinning episodes detected
  uint64_t pinned_ns = 0;          // total duration of the episodes that ended
  unsigned spare_carriers_active = 0;  // compensating for blocked (or CPU-hogged) carriers now
  uint64_t spare_activations = 0;  // times a spare carrier was brought online
  uint64_t offloaded_calls = 0;    // calls run on the blocking pool
  uint64_t intercepted_parks = 0;  // blocking libc calls that parked their fiber
  // Futex waits (OS locks, std::atomic::wait, std::future) that parked
  // their fiber: on the futex ring, or (epoll backend, kernels before 6.7)
  // in bobbin's own futex table.
  uint64_t futex_parks = 0;
  // Of their completions, those the pinning monitor reaped because their
  // carrier had not for a tick (it was stuck or ran one fiber for long).
  uint64_t futex_completions_reaped_by_monitor = 0;
  uint64_t os_condition_parks = 0; // pthread_cond_* / std::condition_variable waits that parked their fiber
};

class BOBBIN_API runtime {
 public:
  // Starts the carriers. Fails with InvalidArgument on bad options and with
  // Unavailable/ResourceExhausted when io_uring or threads cannot be set up.
  static absl::StatusOr<std::unique_ptr<runtime>> start(const runtime_options& options = {});

  // Shuts down (see shutdown()).
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  // Starts a fiber from any thread or fiber. Throws std::system_error
  // (resource_unavailable_try_again) when no stack can be had.
  template <class F>
  fiber<std::invoke_result_t<std::decay_t<F>&>> spawn(F&& fn, const fiber_options& options = {},
                                                      std::source_location where = std::source_location::current()) {
    return spawn_on(impl_, std::forward<F>(fn), options, where);
  }

  // Cancels the fibers still alive and waits up to options.shutdown_grace
  // for them to return, then stops the carriers and joins them; fibers
  // still alive then are abandoned (named on stderr). Must not be called
  // from one of this runtime's own fibers. Idempotent.
  void shutdown();

  // Runs `fn` on this runtime's blocking pool; parks the calling fiber, or
  // blocks the calling thread (bobbin/offload.h).
  template <class F>
  auto offload(F&& fn) -> std::invoke_result_t<F&> {
    return internal::offload_on(impl_, fn);
  }

  // Receives every pinning event, on the monitor thread (bobbin/pinning.h).
  // Replaces any previous listener; an empty function removes it.
  void set_pin_listener(pin_listener listener);

  unsigned carriers() const noexcept;
  runtime_stats stats() const noexcept;
  // What every live fiber is doing: id, name, state, wait reason, how long
  // it has been parked, carrier, parent, spawn site (file:line of the spawn
  // call) and, for every fiber not running on a CPU, its symbolized stack,
  // taken from its saved context without resuming it. Callable from any
  // thread or fiber, while the runtime runs.
  //
  // Cost: the carriers do not mount fibers while the stacks are walked (a
  // few microseconds per fiber; fibers already running go on); a dump of
  // 10,000 parked fibers takes tens of milliseconds. Nothing is added to the
  // switch path but one load of a flag.
  //
  // Also from outside the process, with environment variables read when a
  // runtime starts:
  //   BOBBIN_DUMP_SIGNAL=SIGQUIT (or another name or number): that signal
  //     writes a dump of every runtime without stopping the process
  //   BOBBIN_DUMP_FILE=path: append dumps there instead of to stderr
  //   BOBBIN_DUMP_FORMAT=text|json (text by default)
  //   BOBBIN_DUMP_AT_EXIT=1: write a dump when a runtime shuts down
  std::string dump(dump_format format = dump_format::text) const;
  // The text dump (kept for existing callers).
  std::string dump_fibers() const { return dump(dump_format::text); }

 private:
  explicit runtime(internal::runtime_impl* impl) : impl_(impl) {}
  internal::runtime_impl* impl_;
};

// Runs `fn` on the main fiber of a new runtime and returns its result (see
// the header comment). Throws std::runtime_error if the runtime cannot start.
template <class F>
std::invoke_result_t<std::decay_t<F>&> run(F&& fn, const runtime_options& options = {}) {
  auto rt = runtime::start(options);
  if (!rt.ok()) throw std::runtime_error("bobbin: cannot start runtime: " + std::string(rt.status().message()));
  fiber_options main_options;
  main_options.name = "main";
  auto main_fiber = (*rt)->spawn(std::forward<F>(fn), main_options);
  struct stopper {
    runtime* rt;
    ~stopper() { rt->shutdown(); }
  } stop{rt->get()};
  return main_fiber.join();
}

}  // namespace bobbin

#endif  // BOBBIN_RUNTIME_H_
