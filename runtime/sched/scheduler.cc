// bobbin's scheduler: design overview
// ===================================
//
// Glossary (used everywhere, no synonyms)
//   fiber     a user-level thread of execution with its own stack.
//   carrier   an OS thread that runs fibers; one per core by default.
//   mount     a carrier starts running a fiber on the fiber's stack.
//   park      a fiber stops running until an event; it unmounts and its
//             carrier runs another fiber. unpark/ready makes it runnable.
//   ring      a carrier's io_uring instance: its only source of events.
//
// Invariants
//   1. A fiber is on at most one queue, and runnable iff it is on one.
//   2. A fiber's stack is used by at most one carrier at a time, and a parked
//      or runnable fiber's stack is used by none: a fiber is published as
//      parked (wait list unlocked) or runnable (queued) only by the context
//      that runs after it switched away (switch_action, carrier.cc).
//   3. A fiber's io_uring operations are prepared on the ring of the carrier
//      that runs it and their completions are reaped by that same carrier's
//      scheduler loop, on the carrier's own stack. Fibers never reap.
//   4. No thread-local address is held across a switch (current_carrier()
//      is a non-inlined call, re-read after every park).
//
// How a fiber parks on I/O and is remounted
//   Each carrier owns a reactor (runtime/io/reactor.h): its io_uring ring,
//   the submit and reap, the eventfd that wakes it, and what happens when
//   the kernel refuses a submission. The carrier decides when to use it.
//   Where io_uring is refused the reactor runs on epoll instead, for every
//   carrier (runtime/io/backend_choice.h): the same SQEs describe the
//   operations and the same completions come back, so nothing below
//   changes; only "enter" means an epoll wait there.
//   The fiber takes an SQE from its carrier's reactor, points user_data at a
//   `completion` on its own stack, and calls switch_away(). The carrier
//   switches straight to the next runnable fiber (no trip through the
//   scheduler loop), so many fibers queue SQEs before the loop submits them
//   all in one io_uring_enter: batching is what makes a 1 µs system call
//   affordable. When the queue runs dry, every 61st switch, or, while fibers
//   run long between waits (over 8 us a switch on average over the last
//   stretch of 4 or more switches between reaps), at the first switch after
//   500 us have passed since it last reaped (a fired timer waited behind 61
//   TLS handshakes), the loop runs:
//   it submits, reaps completions (each readies its fiber onto this
//   carrier's queue; a fiber whose sleep ended goes ahead of it, as Go
//   readies one whose timer fired into runnext), looks at the global queue,
//   and picks the next fiber.
//   A readied fiber may then be stolen by another carrier: remounting can
//   happen anywhere. The kernel's DEFER_TASKRUN mode keeps completion work
//   out of the way until the loop asks for it. Since Linux 6.13 it hands
//   over at most 20 per io_uring_enter and keeps the rest for later, so the
//   loop asks for as many as the completion queue has room for (ring.cc):
//   left alone, cancelled timeouts' completions piled up by tens of
//   thousands a second and a fired timer waited seconds behind them.
//
// Finding work (carrier::loop)
//   local runnext slot, then the fibers whose sleep ended (in the order
//   their timers fired; at most 64 in a row while others wait, and taken
//   by a thief when the carrier is blocked, as runnext is), then the local
//   run queue (a Go-style 256-slot ring)
//   and behind it the carrier's backlog (an unbounded FIFO for what the ring
//   cannot hold), then the global inject queue (fibers readied or spawned
//   off-carrier), then stealing half of another carrier's queue or backlog.
//   Every 61st scheduling decision looks at the global queue and then the
//   backlog first, so neither can starve. A fiber that yields goes to the
//   back, behind everything runnable, so a yielding loop never starves its
//   neighbours.
//   Fibers whose I/O completed, and fibers that yield, queue in order,
//   behind the backlog once there is one (poll_io, push_local), so for them
//   the ring and the backlog stay first-in first-out together: a fiber
//   readied earlier runs earlier. A fiber just spawned or woken goes to
//   runnext (Go's newproc and ready); the one it displaces joins the ring,
//   and a full ring moves its oldest half to the backlog (Go's runqputslow).
//   So the ring favours recent work, which keeps a tree of fibers that
//   spawn and join close to depth first (skynet: 0.8 us per fiber, against
//   2.1 us in strict order, where a million fibers are alive at once).
//   runnext is looked at first, so fibers that wake each other (a channel
//   ping-pong) would keep it full and starve the ring: after 64 runnext
//   fibers in a row the next goes to the back of the queue instead (Go
//   bounds the same chain with its time slice; without the bound, a fiber
//   yielding beside such a pair got 1 turn in 2 s).
//   (Letting completions refill the ring while the overflow waited in the
//   global queue gave 10,000 echo connections a p99.9 of 6x the raw
//   io_uring loop's.) The backlog is the carrier's own rather than the
//   global queue so that fibers stay on the carrier whose caches hold their
//   stacks; thieves take from it only when it is worth it (below).
//   Fibers that parked inside an intercepted libc call (runtime/intercept)
//   are readied onto their carrier's private bound list instead: they must
//   resume on the OS thread they parked on (their caller may hold &errno),
//   so no other carrier may steal them. The bound list and the run queue
//   take turns in pop_local(), so neither starves the other.
//
// Sleeping and waking carriers (the spinning protocol, after Go's)
//   A carrier that finds no work spins for a few microseconds (counted in
//   num_spinning; at most one spinner unless half the carriers are idle),
//   stealing and checking its ring. Then it publishes itself as idle (idle
//   list, num_idle), re-checks every queue, and sleeps in io_uring_enter
//   waiting for a completion: any of its own I/O, or the read of its eventfd
//   that wake() writes to. wake_idle_carrier() pops one idle carrier and
//   writes its eventfd if nobody is spinning. The two sides form a Dekker
//   pair: enqueue, fence, read num_idle / publish idle, fence, read queues.
//   With both fences sequentially consistent, at least one side sees the
//   other, so work is never stranded while a carrier sleeps. A spinning
//   carrier that finds work wakes another if it was the last spinner, so a
//   burst of work fans out. Idle carriers use no CPU.
//   Who wakes, and whom a thief robs: work queued where no running carrier
//   will see it (the global queue, from a plain thread) always wakes one.
//   Work a carrier queues for itself wakes one, and may be stolen, only
//   when its queue is long (over half the ring, or a backlog) or old (its
//   head waited over 1 ms while the carrier had the CPU: if the OS ran
//   something else there, another carrier would compete for the same busy
//   cores): a shorter, younger queue the carrier runs itself before a woken
//   one would get going, and each needless wake-up or steal costs a system
//   call on both sides, moves fibers off their warm caches, splits the I/O
//   batches of one ring over two, and takes CPU that on a busy machine
//   other threads need (waking at 2 queued fibers made 2 carriers 0.6x of
//   one at 100 echo connections on the 2-core bench box). Two cases escape
//   those rules and are caught elsewhere: a fiber that yields while others
//   wait goes to the global queue if a carrier is idle (as Go's Gosched
//   does), and the monitor (runtime/pinning/monitor.cc) wakes an idle
//   carrier when one fiber has held its carrier for a whole interval with
//   fibers queued behind it (or, with spares_for_cpu_hogs and none idle,
//   brings a spare online). Skipping a wake-up strands nothing: a carrier
//   never sleeps with work in its own queue, and a sleeping one is woken by
//   the rules above once another's queue becomes worth stealing from.
//
// Timers
//   sleep_for is an IORING_OP_TIMEOUT on the carrier's ring; when it fires
//   the fiber runs before the run queue, and a fiber in an intercepted libc
//   sleep heads the bound list: a sleeper must not wait behind fibers that
//   run long (figures in carrier.cc, at kPollAfterUs). Deadlines on I/O
//   are IORING_OP_LINK_TIMEOUT linked to the operation; timed waits on
//   sync primitives use a heap-allocated timeout record that either the
//   timer or the notifier claims (park.cc).
//
// Fiber dumps (runtime/inspect)
//   A dump walks switched-out fibers' stacks while the carriers run on.
//   They only wait when they are about to mount a fiber during a dump: the
//   mount path stores current_ and then loads the pause flag, and the dump
//   stores the flag, runs membarrier() and then reads every current_ (and
//   leaving_, the fiber being switched away from until its context is
//   saved). One plain load on the switch path, no fence (world_pause.h).
//
// Spawning (runtime_impl::spawn)
//   One allocation per fiber: the control block, with the body (the
//   callable and its result) built right after it (internal::body_maker).
//   Two allocations took a fifth of skynet's time in glibc's malloc and
//   free; one took skynet 1M from 2,399 to 1,787 ms on 1 carrier. The
//   stack comes from the carrier's cache of warm stacks, then the shared
//   pool. The new fiber goes into runnext (see the comment in spawn).
//
// Rejected approaches
//   - A per-carrier cache of freed control blocks (64, then 256 blocks of a
//     standard size, recycled by the carrier that frees them): skynet 1M
//     did not get faster (medians of 5 alternated runs, 1,736 against
//     1,797 ms with 64, 1,744 against 1,819 with 256), spawn + join 6%
//     faster; the profile still had malloc from make_fiber_control, since
//     skynet frees blocks in bursts larger than the cache and allocates
//     them in bursts when it is empty. Not worth a second allocator.
//   - Flushing deferred completions with a GETEVENTS enter after every large
//     drain: each runs 20 more, which the pile-up outran.
//   - Stopping every carrier for a dump (Go's stop-the-world): a pinned
//     carrier never stops, and the dump would wait for it.
//   - A scheduler-context hop on every switch (fiber -> loop -> fiber): twice
//     the switches of the direct hand-over, for nothing but the 1-in-61 poll.
//   - One shared ring for all carriers: its submission queue needs a lock and
//     its completions wake whichever thread waits, not the fiber's carrier.
//   - epoll plus non-blocking syscalls: one system call per operation, and
//     no place for file I/O or timers; io_uring batches all three.
//   - A mutex-protected deque per carrier: the steal-half ring is as short
//     and keeps the owner's push and pop free of locks.
//
// Shutdown (runtime_impl::shutdown), in order
//   0. Unwind: mark the runtime so that fibers spawned from now on start
//      cancelled, cancel every live fiber (runtime/fiber/cancel.h), and
//      wait up to options.shutdown_grace for the alive count to reach
//      zero. The carriers run normally meanwhile: cancelled waits complete
//      and the fibers return through their destructors.
//   1. Set stopping; stop the pinning monitor; wake every carrier (eventfd).
//   2. Each carrier finishes the fiber it runs (if it parks or yields, the
//      carrier sees stopping in its loop) and leaves its loop. Once all have
//      left, each drains its remote requests and ring (carrier.cc,
//      drain_at_shutdown), so that records waiting on a completion are
//      freed. Join the threads. Shut the blocking pool down: calls running
//      there finish, queued ones are dropped.
//      Wait for plain threads that are inside ready() to leave it.
//   3. Fibers still alive are abandoned: marked finished with an error that
//      join() rethrows, their joiners woken, their stacks kept mapped (an
//      in-flight I/O record may still point into them) and their memory
//      handed to LeakSanitizer as deliberately unreachable. The waiter of a
//      fiber parked on a primitive is settled, so that a later notify or
//      the primitive's destructor passes over it.
//   4. Rings are closed (the kernel cancels their in-flight operations).
#include "runtime/sched/scheduler.h"

#include "runtime/inspect/dump_trigger.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/io/backend_choice.h"
#include "runtime/fiber/cancel.h"
#include "runtime/util/check.h"
#include "runtime/util/mutex_lock.h"

#if BOBBIN_ASAN
#include <sanitizer/lsan_interface.h>
#endif

namespace bobbin::internal {

namespace {
std::atomic<uint64_t> g_next_fiber_id{1};
}  // namespace

uint64_t next_fiber_id() noexcept { return g_next_fiber_id.fetch_add(1, std::memory_order_relaxed); }

static runtime_options normalize(runtime_options o) {
  if (o.carriers == 0) o.carriers = std::max(1u, std::thread::hardware_concurrency());
#if BOBBIN_ASAN || BOBBIN_TSAN
  // Sanitized frames are several times larger; give stacks room for them.
  o.stack_size *= 4;
#endif
  return o;
}

runtime_impl::runtime_impl(const runtime_options& options)
    : options_(normalize(options)),
      stacks_(options_.stack_size, options_.max_fibers, options_.guard_policy) {}

runtime_impl::~runtime_impl() { shutdown(); }

absl::Status runtime_impl::start() {
  if (options_.stack_size < 4096) return absl::InvalidArgumentError("bobbin: stack_size must be at least 4096");
  if (options_.carriers > 1024) return absl::InvalidArgumentError("bobbin: at most 1024 carriers");
  if (options_.ring_entries < 8 || options_.ring_entries > 32768)
    return absl::InvalidArgumentError("bobbin: ring_entries must be in [8, 32768]");
  absl::StatusOr<io_backend> backend = choose_backend(options_.backend);
  if (!backend.ok()) return backend.status();
  on_epoll_ = *backend == io_backend::epoll;
  const bool detect = options_.pin_threshold.count() > 0;
  const unsigned spares =
      !detect ? 0u
              : (options_.max_spare_carriers < 0 ? options_.carriers
                                                 : static_cast<unsigned>(options_.max_spare_carriers));
  for (unsigned i = 0; i < options_.carriers + spares; i++) {
    carriers_.push_back(std::make_unique<carrier>(this, i));
    carriers_.back()->set_spare(i >= options_.carriers);
  }
  offload_pool_ = std::make_unique<blocking_pool>(options_.offload_threads);
  monitor_ = std::make_unique<pin_monitor>(this, options_.pin_threshold, spares);
  // The one place the futex waits' fallback is chosen (futex_wait.h).
  const char* futex_env = std::getenv("BOBBIN_FUTEX_RING");
  const bool futex_ring_off = futex_env != nullptr && std::strcmp(futex_env, "off") == 0;
  // Futex rings are io_uring rings: none beside epoll (OS-lock waits there
  // take the fallback futex_wait.h describes).
  futex_ring_usable_.store(!on_epoll_ && !futex_ring_off && futex_ring::supported_by_kernel(),
                           std::memory_order_relaxed);
  for (auto& c : carriers_) {
    absl::Status st = c->start();
    if (!st.ok()) {
      shutdown();
      return st;
    }
  }
  monitor_->start();
  runtime_started(this);
  return absl::OkStatus();
}

absl::Status runtime_impl::spawn(const body_maker& make, const fiber_options& options,
                                 const std::source_location& where, fiber_control** out) {
  if (stopping()) return absl::FailedPreconditionError("bobbin: spawn on a runtime that is shutting down");
  fiber_control* f = make_fiber_control(make);
  carrier* here = current_carrier();
  std::vector<fiber_stack>* cache = (here != nullptr && here->rt() == this) ? here->stack_cache() : nullptr;
  std::size_t size = options.stack_size;
#if BOBBIN_ASAN || BOBBIN_TSAN
  size *= 4;
#endif
  absl::StatusOr<fiber_stack> stack = stacks_.allocate(size, cache);
  if (!stack.ok()) {
    destroy_fiber_control(f);
    return stack.status();
  }

  f->rt = this;
  f->id = next_fiber_id();
  f->name = std::string(options.name);
  f->spawned_at = where;
  if (here != nullptr && here->current() != nullptr) f->parent_id = here->current()->id;
  f->stack = *stack;
  f->ctx.stack_low = f->stack.low();
  f->ctx.stack_size = f->stack.size;
  extern void fiber_entry(ctx::transfer_t) noexcept;
  f->ctx.fctx = ctx::make_fcontext(f->stack.top(), f->stack.size, &fiber_entry);
#if BOBBIN_TSAN
  f->ctx.tsan_fiber = __tsan_create_fiber(0);
#endif
  f->reg_shard = static_cast<unsigned>(f->id % kRegistryShards);
  {
    registry_shard& s = registry_[f->reg_shard];
    s.lock.lock();
    // During shutdown's grace period new fibers start cancelled. Read under
    // the shard lock: shutdown sets the flag before it scans the registry,
    // so a fiber its scan misses sees the flag.
    if (cancel_new_fibers_.load(std::memory_order_relaxed)) f->cancel_word.store(kCancelRequested);
    f->reg_next = s.head;
    if (s.head) s.head->reg_prev = f;
    s.head = f;
    s.lock.unlock();
  }
  spawned_.fetch_add(1, std::memory_order_relaxed);
  alive_.fetch_add(1, std::memory_order_relaxed);
  *out = f;
  // A new fiber goes into runnext, as Go's newproc does: it runs as soon as
  // the spawner parks, before older queued work. A fiber that spawns
  // children and joins them thus runs them depth first, which keeps the
  // number of live fibers (and of cold stacks: a first-touch page fault is
  // ~16 us on the bench VM) far lower than breadth-first order: skynet 1M
  // took 2.8 us per fiber with new fibers at the back of a FIFO queue. A
  // displaced runnext fiber goes to the back of the queue.
  ready(f, /*next=*/true);
  return absl::OkStatus();
}

void runtime_impl::ready(fiber_control* f, bool next) {
  f->state.store(fiber_state::runnable, std::memory_order_relaxed);
  carrier* here = current_carrier();
  if (here != nullptr && here->rt() == this) {
    here->push_local(f, next);
    if (here->wants_help()) wake_idle_carrier();
    return;
  }
  // From a plain thread (or another runtime): once `f` is queued it may run,
  // end the program's last fiber and let the runtime be destroyed while this
  // thread is still waking a carrier. Shutdown waits for outside_calls_.
  outside_calls_.fetch_add(1, std::memory_order_acq_rel);
  push_global(f);
  wake_idle_carrier();
  outside_calls_.fetch_sub(1, std::memory_order_acq_rel);  // last touch of *this
}

bool runtime_impl::wake_idle_carrier() {
  std::atomic_thread_fence(std::memory_order_seq_cst);  // Dekker pair with publish_idle
  if (num_idle.load(std::memory_order_relaxed) == 0) return false;
  if (num_spinning.load(std::memory_order_relaxed) != 0) return false;
  carrier* c = nullptr;
  {
    mutex_lock l(&idle_mu_);
    if (idle_.empty()) return false;
    c = idle_.back();
    idle_.pop_back();
    num_idle.fetch_sub(1, std::memory_order_relaxed);
  }
  wakeups.fetch_add(1, std::memory_order_relaxed);
  c->wake();
  return true;
}

void runtime_impl::push_global(fiber_control* f) { push_global_batch(&f, 1); }

void runtime_impl::push_global_batch(fiber_control** fs, uint32_t n) {
  mutex_lock l(&global_mu_);
  for (uint32_t i = 0; i < n; i++) global_.push_back(fs[i]);
  global_size_.fetch_add(n, std::memory_order_release);
}

fiber_control* runtime_impl::pop_global(carrier* into, uint32_t batch) {
  if (global_empty()) return nullptr;
  fiber_control* moved[run_queue::kCapacity];
  uint32_t n_moved = 0;
  fiber_control* first;
  {
    mutex_lock l(&global_mu_);
    first = global_.pop_front();
    if (!first) return nullptr;
    if (into != nullptr) n_moved = global_.pop_front(moved, std::min(batch, run_queue::kCapacity));
    global_size_.fetch_sub(1 + n_moved, std::memory_order_release);
  }
  // Outside the lock: a full local queue spills into the carrier's backlog.
  for (uint32_t i = 0; i < n_moved; i++) into->push_local(moved[i], false);
  return first;
}

void runtime_impl::publish_idle(carrier* c) {
  {
    mutex_lock l(&idle_mu_);
    idle_.push_back(c);
    num_idle.fetch_add(1, std::memory_order_relaxed);
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);  // Dekker pair with wake_idle_carrier
}

bool runtime_impl::retract_idle(carrier* c) {
  mutex_lock l(&idle_mu_);
  auto it = std::find(idle_.begin(), idle_.end(), c);
  if (it == idle_.end()) return false;
  idle_.erase(it);
  num_idle.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

bool runtime_impl::any_work_visible(const carrier* asker) const {
  if (!global_empty() || stopping()) return true;
  for (const auto& c : carriers_) {
    if (c.get() == asker ? c->has_local_work() : c->worth_stealing_from(asker->clock_us())) return true;
  }
  return false;
}

void runtime_impl::unregister(fiber_control* f) {
  registry_shard& s = registry_[f->reg_shard];
  s.lock.lock();
  if (f->reg_prev) f->reg_prev->reg_next = f->reg_next; else s.head = f->reg_next;
  if (f->reg_next) f->reg_next->reg_prev = f->reg_prev;
  f->reg_prev = f->reg_next = nullptr;
  s.lock.unlock();
}

void runtime_impl::fiber_exited(fiber_control* f) {
  unregister(f);
  alive_.fetch_sub(1, std::memory_order_relaxed);
}

void runtime_impl::cancel_and_wait_for_fibers() {
  if (options_.shutdown_grace.count() <= 0) return;
  cancel_new_fibers_.store(true, std::memory_order_release);
  if (alive_.load(std::memory_order_acquire) == 0) return;
  const auto until = std::chrono::steady_clock::now() + options_.shutdown_grace;
  std::vector<fiber_control*> live;
  for (auto& s : registry_) {
    s.lock.lock();
    for (fiber_control* f = s.head; f; f = f->reg_next) {
      f->refs.fetch_add(1, std::memory_order_relaxed);  // it is registered, so it has not dropped its own
      live.push_back(f);
    }
    s.lock.unlock();
  }
  for (fiber_control* f : live) {
    request_cancel(f);
    release_ref(f);
  }
  while (alive_.load(std::memory_order_acquire) != 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void runtime_impl::report_abandoned(const std::vector<fiber_control*>& abandoned) const {
  constexpr size_t kNamed = 20;
  std::string text = absl::StrCat("bobbin: shutdown abandoned ", abandoned.size(), " fiber(s) still alive after ",
                                  options_.shutdown_grace.count(),
                                  " ms of grace (cancelled, they did not return; not unwound):\n");
  for (size_t i = 0; i < abandoned.size() && i < kNamed; i++) {
    const fiber_control* f = abandoned[i];
    const fiber_state st = f->state.load(std::memory_order_relaxed);
    absl::StrAppend(&text, "  fiber ", f->id, " \"", f->name, "\" ", state_name(st));
    if (st == fiber_state::parked) {
      absl::StrAppend(&text, " in ", std::string(to_string(f->reason.load(std::memory_order_relaxed))));
    }
    absl::StrAppend(&text, ", spawned at ", f->spawned_at.file_name(), ":", f->spawned_at.line(), "\n");
  }
  if (abandoned.size() > kNamed) absl::StrAppend(&text, "  ... and ", abandoned.size() - kNamed, " more\n");
  write_stderr(text);
}

void runtime_impl::shutdown() {
  if (stopped_.exchange(true)) return;
  BOBBIN_CHECK(current_carrier() == nullptr || current_carrier()->rt() != this,
               "bobbin: runtime::shutdown() called from one of its own fibers");
  runtime_stopping(this);  // BOBBIN_DUMP_AT_EXIT; no signal dumps from here on
  cancel_and_wait_for_fibers();
  stopping_.store(true, std::memory_order_release);
  if (monitor_) monitor_->stop();
  for (auto& c : carriers_) c->wake();
  for (auto& c : carriers_) c->join();
  // No fiber runs any more: no wait can be armed; fibers still parked on a
  // futex ring are abandoned below.
  for (auto& c : carriers_) c->close_futex_ring();
  // Offloaded calls still running finish; their fibers are abandoned below.
  if (offload_pool_) offload_pool_->shutdown();
  // Threads still inside ready() (see there) finish touching this runtime.
  while (outside_calls_.load(std::memory_order_acquire) != 0) std::this_thread::yield();

  // Step 3: abandon what is still alive.
  std::vector<fiber_control*> abandoned;
  for (auto& s : registry_) {
    s.lock.lock();
    for (fiber_control* f = s.head; f; f = f->reg_next) abandoned.push_back(f);
    s.head = nullptr;
    s.lock.unlock();
  }
  if (!abandoned.empty() && getenv("BOBBIN_QUIET_SHUTDOWN") == nullptr) report_abandoned(abandoned);
  for (fiber_control* f : abandoned) {
    f->reg_prev = f->reg_next = nullptr;
    // A fiber parked on a bobbin primitive stays linked in its wait list
    // through a waiter on its stack, which is kept. Settle that waiter, so
    // that a later notify, or the primitive's destructor, passes over it
    // rather than wake a fiber of a runtime that is gone (or read its freed
    // control block).
    if (waiter* w = f->parked_waiter.load(std::memory_order_acquire)) {
      wait_state expected = wait_state::waiting;
      w->state.compare_exchange_strong(expected, wait_state::timed_out, std::memory_order_acq_rel);
    }
    stacks_.leak(f->stack);
#if BOBBIN_ASAN
    __lsan_register_root_region(f->stack.low(), f->stack.size);
#endif
    f->body->error = std::make_exception_ptr(
        std::runtime_error("bobbin: fiber abandoned at runtime shutdown before it finished"));
    f->join_lock.lock();
    f->finished = true;
    std::vector<waiter*> woken;
    claim_all(f->joiners, 0, woken);
    f->join_lock.unlock();
    notify_all(woken);
    alive_.fetch_sub(1, std::memory_order_relaxed);
    release_ref(f);  // the running fiber's reference; a handle may keep it
  }
  // Drain the global queue of fibers that never ran (already counted above).
  {
    mutex_lock l(&global_mu_);
    global_.clear();
    global_size_.store(0);
  }
  carriers_.clear();  // closes rings
}

runtime_stats runtime_impl::stats() const {
  runtime_stats s;
  s.carriers = options_.carriers;
  s.backend = on_epoll_ ? io_backend::epoll : io_backend::io_uring;
  s.fibers_spawned = spawned_.load(std::memory_order_relaxed);
  s.fibers_alive = alive_.load(std::memory_order_relaxed);
  for (const auto& c : carriers_) {
    s.context_switches += c->switches.load(std::memory_order_relaxed);
    s.steals += c->steals.load(std::memory_order_relaxed);
    s.io_submitted += c->io().submitted.load(std::memory_order_relaxed);
    s.io_enter_calls += c->io().enters.load(std::memory_order_relaxed);
    s.io_registrations += c->io().fd_registrations();
    s.intercepted_parks += c->intercepted_parks.load(std::memory_order_relaxed);
  }
  s.carrier_wakeups = wakeups.load(std::memory_order_relaxed);
  s.stacks_mapped = stacks_.stacks_mapped();
  s.stacks_unguarded = stacks_.stacks_unguarded();
  if (monitor_) {
    s.pin_events = monitor_->events();
    s.pinned_ns = monitor_->pinned_ns();
    s.spare_carriers_active = monitor_->spares_active();
    s.spare_activations = monitor_->spare_activations();
    s.backlog_wakeups = monitor_->backlog_wakeups();
  }
  if (offload_pool_) s.offloaded_calls = offload_pool_->calls();
  for (auto& c : carriers_) {
    if (futex_ring* r = c->started_futex_ring()) {
      s.futex_parks += r->waits();
      s.futex_completions_reaped_by_monitor += r->reaped_by_monitor();
    }
  }
  s.futex_parks += futex_table_parks.load(std::memory_order_relaxed);
  s.os_condition_parks = os_condition_parks.load(std::memory_order_relaxed);
  return s;
}

void runtime_impl::futex_ring_failed(const absl::Status& why) {
  if (futex_ring_usable_.exchange(false, std::memory_order_relaxed)) {
    write_stderr(absl::StrCat(why.message(), "; OS lock waits park in bobbin's own futex table instead\n"));
  }
}

}  // namespace bobbin::internal
