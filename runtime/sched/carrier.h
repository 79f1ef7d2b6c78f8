// Not part of the bobbin API.
//
// A carrier: one OS thread that mounts fibers, with its own run queues, its
// own reactor (runtime/io/reactor.h: where its fibers' I/O goes and comes
// back) and its own cache of warm stacks. See scheduler.cc for how carriers
// find work, sleep and wake.
#ifndef BOBBIN_RUNTIME_SCHED_CARRIER_H_
#define BOBBIN_RUNTIME_SCHED_CARRIER_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "bobbin/internal/spin_lock.h"
#include "runtime/fiber/context.h"
#include "runtime/fiber/fiber_control.h"
#include "runtime/fiber/stack_pool.h"
#include "runtime/io/reactor.h"
#include "runtime/pinning/stack_capture.h"
#include "runtime/sched/fiber_fifo.h"
#include "runtime/sched/run_queue.h"
#include "runtime/util/counter.h"

namespace bobbin::internal {

class runtime_impl;
class carrier;
class futex_ring;

// ThreadSanitizer intercepts the blocking libc calls too, and its
// interceptor for one (read, poll, usleep, ...) is still on the stack of a
// fiber that parks inside bobbin's. While it is, TSan ignores that fiber's
// atomic operations and interceptors (its "blocking call" mode), so the
// scheduler's synchronization done on such a fiber would be invisible to it
// and it would report races that are not there. Under TSan, therefore, a
// fiber parking in an intercepted call switches to the scheduler loop (which
// then picks the next fiber), and bound fibers are resumed only from the
// loop, whose post-switch action is empty. Other builds switch directly.
#if BOBBIN_TSAN
inline constexpr bool kSanitizerSeesOnlyTheLoop = true;
#else
inline constexpr bool kSanitizerSeesOnlyTheLoop = false;
#endif

// What the context that arrives after a switch must do for the one that left.
// Lives on the leaving fiber's stack: read it fully before acting on it.
struct switch_action {
  enum kind : uint8_t {
    none,     // just record where the leaving context stopped
    requeue,  // the leaving fiber yielded: make it runnable
    requeue_shared,  // same, on the global queue for an idle carrier to take
    requeue_bound,   // same, on the carrier it left only (carrier::yield_bound)
    unlock,   // the leaving fiber parked under `lock`: release it
    exit,     // the leaving fiber ended: free its stack and drop its reference
    // The leaving fiber parked on a wait whose completion may be reaped by
    // another thread (a futex ring, runtime/park/futex_wait.cc): store kHandshakeParked in
    // `*handshake`; if the waker got there first (kHandshakeCompleted), make
    // the fiber runnable, on this carrier only if `resume_here`. Whoever of
    // the two comes second resumes the fiber, and neither waits.
    publish_parked,
  };
  static constexpr uint32_t kHandshakeParked = 1;
  static constexpr uint32_t kHandshakeCompleted = 2;
  exec_context* from_ctx;
  kind what;
  fiber_control* fiber;
  spin_lock* lock;
  carrier* by = nullptr;  // set by the switch: whose leaving_ to clear
  std::atomic<uint32_t>* handshake = nullptr;  // publish_parked
  bool resume_here = false;                    // publish_parked
};

// Work another thread asks this carrier to do on its own ring (the ring is
// single-issuer): cancel I/O on an fd, remove a timeout.
struct remote_request {
  // cancel_fiber_op: cancel the operation a cancelled fiber is parked in,
  // if it still is (runtime/fiber/cancel.h); target_user_data is the fiber.
  // resume_bound: make the fiber target_user_data runnable on this carrier
  // only (push_bound), for a wake delivered by another thread (park.cc; the
  // pinning monitor reaping a futex ring, runtime/park/futex_wait.h).
  enum kind : uint8_t { cancel_fd, remove_timeout, cancel_user_data, cancel_fiber_op, resume_bound } what;
  int fd;
  uint64_t target_user_data;   // remove_timeout, cancel_user_data: whose operations
  completion* done;            // gets the request's own completion (may be null)
};

class carrier {
 public:
  carrier(runtime_impl* rt, unsigned index);
  carrier(const carrier&) = delete;
  carrier& operator=(const carrier&) = delete;
  ~carrier();

  absl::Status start();  // starts the thread; returns once its ring is up
  void join();

  unsigned index() const { return index_; }
  runtime_impl* rt() const { return rt_; }
  fiber_control* current() const { return current_.load(std::memory_order_relaxed); }
  // For other threads (the pinning monitor): pairs with the release store at
  // mount, so the fiber's fields written before it was queued are visible.
  fiber_control* current_acquire() const { return current_.load(std::memory_order_acquire); }
  pid_t tid() const { return tid_.load(std::memory_order_acquire); }
  // CPU time this carrier thread has used, in ns (-1 if unknown). Any thread.
  int64_t cpu_time_ns() const;

  // --- called on this carrier's thread only ---
  // Makes `f` runnable here; `next` puts it in the runnext slot so it runs
  // before the rest of the queue (hand-off locality). Wakes nobody: the
  // caller asks wants_help().
  void push_local(fiber_control* f, bool next);
  // Makes `f`, whose I/O completed, runnable: called while this carrier
  // reaps its ring (poll_io), in completion order. Keeps the run queues
  // first-in first-out across the local and global lanes (see poll_io).
  void ready_from_completion(fiber_control* f);
  // Makes `f`, whose sleep ended, runnable ahead of the run queue (after
  // runnext): called while this carrier reaps its ring. A fiber that slept
  // has waited its turn already; behind a queue of fibers that run long
  // (TLS handshakes) it would wake many milliseconds late.
  void ready_from_timer(fiber_control* f);
  // Makes `f` runnable on this carrier only: it is never stolen, so it
  // resumes on this OS thread. For fibers parked inside an intercepted libc
  // call (runtime/intercept), whose caller may hold thread-local addresses
  // (errno's, compiled as a const function) across the call. `first`: ahead
  // of the other bound fibers (a libc sleep that ended, as ready_from_timer).
  void push_bound(fiber_control* f, bool first = false);
  // Lets the fibers runnable here run, then resumes `self` (the running
  // fiber) on this carrier: a yield for code that must not migrate (a wait
  // inside an intercepted call that has nothing to park on).
  void yield_bound(fiber_control* self);
  // Whether fibers that can run only here are waiting for this carrier:
  // bound ones, requests from other threads, or futex completions not yet
  // reaped (either may resume one).
  bool bound_work_waiting() const {
    return has_bound() || has_remote_.load(std::memory_order_relaxed) || futex_completions_waiting();
  }
  // Completions on this carrier's futex ring not reaped yet: fibers woken
  // and about to be made runnable.
  bool futex_completions_waiting() const;
  // Whether this carrier's queue is longer, or has waited longer, than it
  // should handle alone: then an idle carrier is worth waking to share it.
  bool wants_help();
  // Leaves the running fiber `from` for the next runnable one (or this
  // carrier's scheduler loop), after which `action` is carried out. Returns
  // when `from` is resumed, possibly on another carrier. `via_scheduler`:
  // the caller is parking inside an intercepted libc call (see
  // kSanitizerSeesOnlyTheLoop).
  void switch_away(fiber_control* from, switch_action* action, bool via_scheduler = false);
  // Where this carrier's fibers prepare their kernel operations.
  reactor& io() { return io_; }
  // Cancels every operation on this ring whose user_data is `user_data`.
  // Safe inside a completion handler (it only prepares an SQE, or posts the
  // request to the next loop turn when the submission queue is full).
  void cancel_here(uint64_t user_data);
  std::vector<fiber_stack>* stack_cache() { return &stack_cache_; }

  // --- any thread ---
  // This carrier's futex ring (runtime/park/futex_wait.h), created on the
  // first wait of one of its fibers (its thread only); null when futex
  // waits block the carrier instead. started_futex_ring() from any thread.
  futex_ring* futex_ring_for_waits();
  futex_ring* started_futex_ring() const { return futex_ring_.load(std::memory_order_acquire); }
  void close_futex_ring();  // at shutdown, after the carrier has stopped

  void post(const remote_request& r);   // queued; carrier woken
  void wake() { io_.wake(); }           // ends its sleep, or its next one
  // Work another carrier could take (bound fibers are not).
  bool has_local_work() const {
    return runnext_.load(std::memory_order_relaxed) != nullptr || !runq_.empty() ||
           backlog_size_.load(std::memory_order_relaxed) != 0 || timers_size_.load(std::memory_order_relaxed) != 0;
  }
  // Fibers a thief may take while this carrier runs (steal_into): its run
  // queue or backlog. The pinning monitor's test for a spare for a hog.
  bool has_stealable_work() const {
    return !runq_.empty() || backlog_size_.load(std::memory_order_relaxed) != 0;
  }
  // Whether a carrier out of work should take some of this one's: its queue
  // is long or old enough that it would ask for help (wants_help), or it is
  // blocked. A shorter queue it runs itself, and a thief would only move
  // fibers off their warm cache and split its I/O batches. `now_us` is the
  // asking carrier's clock (the same monotonic clock).
  bool worth_stealing_from(uint32_t now_us) const;
  uint32_t clock_us() const { return clock_us_; }  // this carrier's thread only
  uint64_t clock_ms() const { return clock_ms_; }  // the same clock (CLOCK_MONOTONIC), in ms
  uint32_t steal_into(carrier& thief);  // moves half of this carrier's queue (or backlog) to thief

  // --- pinning monitor (runtime/pinning/monitor.cc) ---
  // Asks this carrier's thread, by signal, for the stack it runs on (the
  // handler scans it: stack_capture.h) and waits up to `wait` for it. Returns
  // the fiber whose stack was scanned into `out`; null if the carrier was
  // between fibers, no answer came in time, or another capture (the pinning
  // monitor's, a dump's) was under way. Not for a thread blocked in a
  // system call: the signal could cut a sleep short.
  const fiber_control* capture_by_signal(stack_capture& out, std::chrono::milliseconds wait);
  // Stack capture by signal: the requester sets 1, the handler scans and
  // sets 2, the requester takes the result and sets 0.
  std::atomic<int> capture_state{0};
  stack_capture capture;
  const fiber_control* captured_fiber = nullptr;  // written by the handler before it sets 2
  void capture_from_signal(uintptr_t pc, uintptr_t sp);  // async-signal-safe
  // Spare carriers (compensation) run fibers only while active.
  bool is_spare() const { return spare_; }
  void set_spare(bool spare) { spare_ = spare; active.store(!spare, std::memory_order_relaxed); }
  std::atomic<bool> active{true};
  // Set by the monitor while this carrier is blocked: thieves may then take
  // its runnext slot too, so no runnable fiber is stranded behind it.
  std::atomic<bool> blocked{false};
  stack_capture* capture_buffer() { return &capture; }
  // --- fiber dumps (runtime/inspect/world_pause.h) ---
  // The fiber this carrier is switching away from, from before it stops
  // being current_ until its context is saved (complete_switch): a dump
  // must not walk its stack meanwhile, whatever its state says.
  fiber_control* leaving_acquire() const { return leaving_.load(std::memory_order_acquire); }
  void clear_leaving() { leaving_.store(nullptr, std::memory_order_release); }

  // Counters (written by the carrier thread only, with bump(); read anywhere).
  std::atomic<uint64_t> switches{0};
  std::atomic<uint64_t> steals{0};
  std::atomic<uint64_t> intercepted_parks{0};  // libc calls that parked their fiber
  std::atomic<bool> sleeping{false};

 private:
  friend class runtime_impl;
  void thread_main();
  void loop();
  void run(fiber_control* f);
  fiber_control* pop_local(bool allow_bound = true);
  fiber_control* pop_bound();
  fiber_control* find_work(bool check_global_first);
  bool spin_for_work(fiber_control** out);
  void sleep_until_woken();
  void poll_io(bool wait);
  void handle_remote_requests();
  // Before a sleep: a wake() or a completion on the futex ring ends it.
  void arm_wake_and_futex_poll();
  void drain_at_shutdown();
  void idle_as_inactive_spare();

  runtime_impl* const rt_;
  const unsigned index_;
  std::thread thread_;
  std::atomic<pid_t> tid_{0};
  clockid_t cpu_clock_{};  // written before started_ is published
  bool has_cpu_clock_ = false;
  absl::Status start_status_;
  std::atomic<int> started_{0};

  exec_context sched_ctx_;
  std::atomic<fiber_control*> current_{nullptr};  // written by this carrier only
  std::atomic<fiber_control*> leaving_{nullptr};  // written by this carrier only
  // Called with the fiber to mount already published in current_: waits
  // while a dump walks stacks (see world_pause.h).
  void wait_out_pause();
  bool spare_ = false;
  uint32_t tick_ = 0;
  std::atomic<fiber_control*> runnext_{nullptr};  // owner writes; read by sleep checks
  run_queue runq_;
  // Fibers bound to this carrier (push_bound), FIFO through next_global;
  // only the owner touches the list (completions are reaped by the owner).
  fiber_fifo bound_;
  // Fibers whose sleep ended (ready_from_timer), FIFO through next_global,
  // run before the run queue (at most kMaxRunnextStreak in a row while
  // other work waits). Guarded by backlog_lock_: thieves take from it when
  // this carrier is blocked, as from runnext. timers_size_ may be read
  // without the lock.
  fiber_fifo timers_;
  std::atomic<uint32_t> timers_size_{0};
  uint32_t timers_streak_ = 0;  // fibers taken from timers_ in a row (pop_local)
  fiber_control* take_timer();  // the oldest in timers_, or null
  // Bound fibers whose libc sleep ended (push_bound with `first`), run
  // before the other bound fibers (at most kMaxRunnextStreak in a row);
  // owner only, like bound_.
  fiber_fifo bound_sleepers_;
  uint32_t bound_sleepers_streak_ = 0;
  bool has_bound() const { return !bound_.empty() || !bound_sleepers_.empty(); }
  // Whether fibers other than runnext's and the sleepers' wait here.
  bool queued_work_waiting(bool allow_bound) const {
    return !runq_.empty() || backlog_size_.load(std::memory_order_relaxed) != 0 || (allow_bound && has_bound());
  }
  bool prefer_bound_ = false;  // alternates bound and stealable work
  uint32_t runnext_streak_ = 0;  // fibers taken from runnext in a row (pop_local)
  // A coarse microsecond clock, read once per loop turn (read_clock_us), that
  // stamps what this carrier queues so wants_help() can age its queue.
  uint32_t clock_us_ = 0;
  uint64_t clock_ms_ = 0;
  uint32_t read_clock_us();
  // Whether the loop should reap now although kPollInterval switches have
  // not passed: it last did over kPollAfterUs ago. Reads the clock only
  // while fibers_run_long_ (carrier.cc).
  bool poll_overdue() const;
  bool fibers_run_long_ = false;  // set by poll_io: poll_overdue reads the clock
  uint32_t tick_at_last_poll_ = 0;  // where the stretch poll_io judges began
  uint32_t us_at_last_poll_ = 0;    // and when (clock_us_ then)
  // wants_help(): when it last read this thread's CPU clock, and the value.
  uint32_t overdue_check_us_ = 0;
  int64_t overdue_check_cpu_ns_ = 0;
  // The backlog: runnable fibers beyond what the run queue holds, first in
  // first out through next_global, run after the run queue (pop_runq refills
  // it from here). Guarded by backlog_lock_, since thieves take from it;
  // backlog_size_ may be read without it.
  spin_lock backlog_lock_;
  fiber_fifo backlog_;
  std::atomic<uint32_t> backlog_size_{0};
  void push_backlog(fiber_control* const* fs, uint32_t n);
  uint32_t take_from_backlog(fiber_control** out, uint32_t max);
  fiber_control* pop_runq();  // the run queue, refilled from the backlog
  // While poll_io() reaps: whether readied fibers go to the backlog (it
  // was not empty, or the run queue filled), and the ones that do.
  bool reaping_to_backlog_ = false;
  std::vector<fiber_control*> reaped_for_backlog_;
  reactor io_;
  std::unique_ptr<futex_ring> futex_ring_owner_;
  std::atomic<futex_ring*> futex_ring_{nullptr};  // published for the monitor
  std::vector<fiber_stack> stack_cache_;
  void* alt_stack_ = nullptr;

  spin_lock remote_lock_;
  std::vector<remote_request> remote_;
  std::atomic<bool> has_remote_{false};
};

// The calling thread's carrier. Read it through current_carrier(); only the
// interceptors' first check (runtime/intercept/fiber_calls.h) reads it
// directly, once, at entry, before anything can switch.
extern __thread carrier* tls_carrier __attribute__((tls_model("initial-exec")));

// The carrier running the calling thread, or null off a carrier. Never
// inlined and never cached: a fiber may resume on another thread after any
// park, so a thread-local address must be re-read after every switch.
carrier* current_carrier() noexcept;
void set_current_carrier(carrier* c) noexcept;

// The calling fiber's carrier if the caller is a fiber that may park; null on
// a plain thread or inside a pinned region (which must block instead).
carrier* current_fiber_carrier() noexcept;
// The calling fiber if it is inside a pinned region, else null.
fiber_control* current_pinned_fiber() noexcept;
// Marks the calling pinned fiber as blocked on `reason` for the duration of
// a plain-thread blocking call, for the pinning monitor's report.
class pinned_block_marker {
 public:
  explicit pinned_block_marker(wait_reason reason) noexcept;
  ~pinned_block_marker();

 private:
  fiber_control* fiber_;
};

// Runs `action` for the context that switched to the caller. Called right
// after every switch_context() returns, and first thing in a new fiber.
void complete_switch(ctx::transfer_t t) noexcept;

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_SCHED_CARRIER_H_
