// The carrier thread: its scheduling loop, the switch between fibers, and its
// side of the sleep/wake protocol. See scheduler.cc for the overview.
#include "runtime/sched/carrier.h"
#include "runtime/intercept/libc.h"

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "runtime/fiber/cancel.h"
#include "runtime/park/futex_wait.h"
#include "runtime/sched/scheduler.h"
#include "runtime/util/check.h"

namespace bobbin::internal {

// initial-exec: libbobbin.so is loaded at program start (or preloaded), so
// its TLS can live in the static block, read with one %fs-relative load
// instead of a __tls_get_addr call. Every intercepted libc call reads it.
__thread carrier* tls_carrier __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {

// How often a run of direct fiber-to-fiber switches detours through the loop
// to submit, reap and look at the global queue (Go uses 61 for the latter).
constexpr uint32_t kPollInterval = 61;
// ... or sooner, once this long has passed since the loop last reaped: 61
// switches of fibers that each run a while (TLS handshakes: ~0.3 ms of CPU
// between two waits) kept a fired timer, and every completed read, waiting
// for tens of milliseconds. The clock is read at every switch, but only
// while the fibers run long: when the last stretch between two reaps
// averaged more than kPollAfterUs / kPollInterval (8 us) per switch, where
// a vDSO clock read is small beside the switch; reading it always, even
// every 8th switch, cost bobbin_yield 10% (34.7 -> 37.5 ns, scripts/bench
// --compare, every round). Measured with 200 fibers making HTTPS calls
// (perf/blocking, --client https, 3 interleaved rounds, 2026-12-06): a 5 ms
// bystander's p99 lateness 9-11 ms with a 500 us bound read at every
// switch, against 12-20 ms with a 1 ms bound read at every 8th (and 40-71
// ms with no bound at all); with a fiber whose sleep ended also run ahead
// of the queue (ready_from_timer), 6.9-8.2 ms against 15-23 ms (4 rounds).
// The same calls a second in all.
constexpr uint32_t kPollAfterUs = 500;
// The fewest switches poll_io judges fibers_run_long_ by.
constexpr uint32_t kSwitchesToJudge = 4;
// How many fibers in a row may come from the runnext slot. Fibers that wake
// each other (a channel ping-pong) refill it forever, and it is looked at
// first, so without a bound the run queue behind it never ran: a fiber
// readied by a timer waited more than a second behind such a pair. Go bounds
// the same chain with its time slice (sysmon preempts after 10 ms); bobbin
// does not preempt, so it counts: after this many, the runnext fiber goes to
// the back of the run queue and the queue's head runs.
constexpr uint32_t kMaxRunnextStreak = 64;
// How long an out-of-work carrier looks for work before it sleeps. Short:
// on a machine whose other cores are busy (the 2-core bench box, where the
// load generator shares a core), every spinning microsecond is taken from
// them; 20 us spins cost 16% of the CPU at 100 echo connections.
constexpr auto kSpinTime = std::chrono::microseconds(5);
// A carrier wakes an idle one only when its local queue holds more fibers
// than this, or its oldest queued fiber has waited longer than that: a
// shorter, younger queue it clears itself before a woken carrier would get
// going, and each wake-up costs an eventfd write, the sleeper's return from
// io_uring_enter, a steal that moves fibers off their warm caches, and a
// core that on a busy machine other threads need. Waking whenever 2 fibers
// were queued made 2 carriers slower than 1 (the echo bench at 100
// connections, where the load generator shares a core: 0.6x). Whoever
// queues work decides with wants_help() (ready, poll_io; a yield, in
// this_fiber::yield);
// push_local itself never wakes anyone.
constexpr uint32_t kHelpQueueLength = run_queue::kCapacity / 2;
constexpr uint32_t kHelpWaitUs = 1000;
}  // namespace

__attribute__((noinline)) carrier* current_carrier() noexcept {
  // The empty asm keeps the compiler from treating this as a pure function
  // and merging two calls around a switch.
  asm volatile("" ::: "memory");
  return tls_carrier;
}

__attribute__((noinline)) void set_current_carrier(carrier* c) noexcept {
  asm volatile("" ::: "memory");
  tls_carrier = c;
}

fiber_control* current_fiber_or_null() noexcept {
  carrier* c = current_carrier();
  return c != nullptr ? c->current() : nullptr;
}

carrier* current_fiber_carrier() noexcept {
  carrier* c = current_carrier();
  if (c == nullptr || c->current() == nullptr) return nullptr;
  return c->current()->pin_depth.load(std::memory_order_relaxed) == 0 ? c : nullptr;
}

fiber_control* current_pinned_fiber() noexcept {
  carrier* c = current_carrier();
  fiber_control* f = c != nullptr ? c->current() : nullptr;
  return f != nullptr && f->pin_depth.load(std::memory_order_relaxed) > 0 ? f : nullptr;
}

pinned_block_marker::pinned_block_marker(wait_reason reason) noexcept : fiber_(current_pinned_fiber()) {
  if (fiber_ != nullptr) fiber_->reason.store(reason, std::memory_order_relaxed);
}

pinned_block_marker::~pinned_block_marker() {
  if (fiber_ != nullptr) fiber_->reason.store(wait_reason::none, std::memory_order_relaxed);
}

void install_overflow_handler();  // overflow_handler.cc
void* make_alt_signal_stack();
void free_alt_signal_stack(void*);

carrier::carrier(runtime_impl* rt, unsigned index) : rt_(rt), index_(index) {}

carrier::~carrier() {
  join();
  close_futex_ring();
}

futex_ring* carrier::futex_ring_for_waits() {
  if (futex_ring* r = futex_ring_.load(std::memory_order_relaxed)) return r;  // written by this thread only
  if (!rt_->futex_rings_usable() || rt_->stopping()) return nullptr;
  auto r = std::make_unique<futex_ring>();
  if (absl::Status st = r->start(); !st.ok()) {
    rt_->futex_ring_failed(st);
    return nullptr;
  }
  futex_ring_owner_ = std::move(r);
  futex_ring_.store(futex_ring_owner_.get(), std::memory_order_release);
  return futex_ring_owner_.get();
}

void carrier::close_futex_ring() {
  if (futex_ring_owner_) futex_ring_owner_->close();
}

bool carrier::futex_completions_waiting() const {
  futex_ring* r = futex_ring_.load(std::memory_order_relaxed);
  return r != nullptr && r->has_completions();
}

void carrier::arm_wake_and_futex_poll() {
  io_.arm_wake();
  // A completion on the futex ring (a fiber woken) ends the sleep too.
  if (futex_ring* r = futex_ring_.load(std::memory_order_relaxed)) io_.arm_poll(r->fd());
}

absl::Status carrier::start() {
  thread_ = std::thread([this] { thread_main(); });
  // Wait until the ring is up, so start() reports ring failures.
  while (started_.load(std::memory_order_acquire) == 0) std::this_thread::yield();
  if (started_.load() < 0) {
    thread_.join();
    return start_status_;
  }
  return absl::OkStatus();
}

int64_t carrier::cpu_time_ns() const {
  timespec ts;
  if (!has_cpu_clock_ || clock_gettime(cpu_clock_, &ts) != 0) return -1;
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void carrier::join() {
  if (thread_.joinable()) thread_.join();
}

void carrier::thread_main() {
  has_cpu_clock_ = pthread_getcpuclockid(pthread_self(), &cpu_clock_) == 0;
  tid_.store(static_cast<pid_t>(bobbin::internal::libc::syscall(SYS_gettid)), std::memory_order_release);
  {
    // What `top -H`, perf and gdb show (15 characters at most).
    char name[16];
    if (is_spare()) {
      std::snprintf(name, sizeof name, "bobbin-spare%u", index_ - rt_->options().carriers);
    } else {
      std::snprintf(name, sizeof name, "bobbin-c%u", index_);
    }
    pthread_setname_np(pthread_self(), name);
  }
  start_status_ = io_.init(
      rt_->options().ring_entries, [](void* self) { static_cast<carrier*>(self)->poll_io(false); }, this,
      {rt_->options().io_workers_bounded, rt_->options().io_workers_unbounded}, rt_->on_epoll());
  if (!start_status_.ok()) {
    started_.store(-1, std::memory_order_release);
    return;
  }
  // The thread's own stack is where the scheduler loop runs; ASan needs its
  // bounds to follow switches back to it.
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* addr;
    size_t size;
    pthread_attr_getstack(&attr, &addr, &size);
    sched_ctx_.stack_low = addr;
    sched_ctx_.stack_size = size;
    pthread_attr_destroy(&attr);
  }
#if BOBBIN_TSAN
  sched_ctx_.tsan_fiber = __tsan_get_current_fiber();
#endif
  alt_stack_ = make_alt_signal_stack();
  install_overflow_handler();
  install_capture_handler();
  set_current_carrier(this);
  us_at_last_poll_ = read_clock_us();
  stack_cache_.reserve(stack_pool::kCarrierCacheSize);
  reaped_for_backlog_.reserve(2 * rt_->options().ring_entries);  // a full CQ
  started_.store(1, std::memory_order_release);

  loop();
  drain_at_shutdown();

  // Stacks cached here go back to the shared pool for the pool's teardown.
  while (!stack_cache_.empty()) {
    rt_->stacks().release(stack_cache_.back(), nullptr);
    stack_cache_.pop_back();
  }
  set_current_carrier(nullptr);
  free_alt_signal_stack(alt_stack_);
}

void carrier::loop() {
  while (!rt_->stopping()) {
    poll_io(false);
    if (has_remote_.load(std::memory_order_acquire)) handle_remote_requests();
    if (!active.load(std::memory_order_acquire)) {
      // Fibers bound here can run nowhere else, even on a retired spare.
      if (fiber_control* f = pop_bound()) {
        run(f);
        continue;
      }
      idle_as_inactive_spare();
      continue;
    }
    fiber_control* f = find_work(tick_ % kPollInterval == 0);
    if (f == nullptr) spin_for_work(&f);
    if (f != nullptr) {
      run(f);
      continue;
    }
    sleep_until_woken();
  }
}

void carrier::idle_as_inactive_spare() {
  // An inactive spare runs no fibers. Fibers its completions readied (I/O
  // they started while it was active) go to the global queue for the other
  // carriers; then it sleeps until more of its I/O completes or the monitor
  // activates it again (eventfd).
  fiber_control* batch[run_queue::kCapacity + 1];
  uint32_t n = 0;
  // Sleepers first, as they would have run here.
  while (fiber_control* f = take_timer()) {
    if (n == run_queue::kCapacity + 1) {
      rt_->push_global_batch(batch, n);
      n = 0;
    }
    batch[n++] = f;
  }
  if (n != 0) {
    rt_->push_global_batch(batch, n);
    rt_->wake_idle_carrier();
    n = 0;
  }
  if (fiber_control* f = runnext_.exchange(nullptr, std::memory_order_relaxed)) batch[n++] = f;
  while (fiber_control* f = runq_.pop()) batch[n++] = f;
  for (;;) {
    if (n != 0) {
      rt_->push_global_batch(batch, n);
      rt_->wake_idle_carrier();
    }
    n = take_from_backlog(batch, run_queue::kCapacity + 1);  // all of it, a batch at a time
    if (n == 0) break;
  }
  // A wakeup meant for work may have landed here: wake_idle_carrier() pops
  // whichever carrier published itself idle last, and a spare published
  // while active stays in the idle list until it runs again, even after the
  // monitor has retired it; and a spinning spare, retired mid-spin, leaves
  // the spin without the work it was counted on to find (wake_idle_carrier
  // wakes nobody while one spins). This carrier will not run that work, so
  // it passes the wakeup on; otherwise the work waits while every other
  // carrier sleeps (pinning_test hung so under ThreadSanitizer).
  if (!rt_->stopping() && rt_->any_work_visible(this)) rt_->wake_idle_carrier();
  if (io_.has_completions() || has_remote_.load(std::memory_order_acquire) || active.load(std::memory_order_acquire) ||
      has_bound() || futex_completions_waiting() || rt_->stopping()) {
    return;
  }
  arm_wake_and_futex_poll();
  sleeping.store(true, std::memory_order_relaxed);
  poll_io(true);
  sleeping.store(false, std::memory_order_relaxed);
}

void carrier::capture_from_signal(uintptr_t pc, uintptr_t sp) {
  if (capture_state.load(std::memory_order_acquire) != 1) return;
  fiber_control* f = current();
  // The interrupted code may be on the fiber's stack or (between fibers) on
  // the carrier's own; scan_stack() scans only if sp lies inside the chosen
  // one. (Under ThreadSanitizer the handler may run later than the signal,
  // with a stale sp from another stack.)
  uintptr_t low, high;
  if (f != nullptr) {
    low = reinterpret_cast<uintptr_t>(f->stack.low());
    high = reinterpret_cast<uintptr_t>(f->stack.top());
  } else {
    low = reinterpret_cast<uintptr_t>(sched_ctx_.stack_low);
    high = low + sched_ctx_.stack_size;
  }
  scan_stack(pc, sp, low, high, capture);
  captured_fiber = f;
  capture_state.store(2, std::memory_order_release);
}

const fiber_control* carrier::capture_by_signal(stack_capture& out, std::chrono::milliseconds wait) {
  // 2 left over: a handler that finished after its requester gave up.
  int s = capture_state.load(std::memory_order_acquire);
  if (s == 1 || !capture_state.compare_exchange_strong(s, 1, std::memory_order_acq_rel)) return nullptr;
  bobbin::internal::libc::syscall(SYS_tgkill, ::getpid(), tid(), capture_signal());
  // The handler runs as soon as the thread is scheduled; bound the wait.
  const auto give_up = std::chrono::steady_clock::now() + wait;
  while (capture_state.load(std::memory_order_acquire) != 2 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  const fiber_control* scanned = nullptr;
  if (capture_state.load(std::memory_order_acquire) == 2) {
    out = capture;
    scanned = captured_fiber;
  }
  // A late handler finds 0 and does nothing (capture_from_signal).
  capture_state.store(0, std::memory_order_release);
  return scanned;
}

void carrier::drain_at_shutdown() {
  // No fiber may run from here on. Wait until every carrier has stopped
  // running fibers, so that no fiber can post this carrier a request after
  // the final drain, then hand the ring's pending work (timeout removals
  // asked for by notified fibers) to the kernel and reap what it answers, so
  // that their records are freed.
  rt_->carriers_stopped.fetch_add(1, std::memory_order_acq_rel);
  const int all = static_cast<int>(rt_->carriers().size());
  for (;;) {
    const bool everyone_stopped = rt_->carriers_stopped.load(std::memory_order_acquire) == all;
    for (int round = 0; round < 4; round++) {
      if (has_remote_.load(std::memory_order_acquire)) handle_remote_requests();
      if (!io_.needs_enter() && !io_.has_completions()) break;
      poll_io(false);
    }
    if (everyone_stopped) break;
    std::this_thread::yield();
  }
  // Since Linux 6.13 an enter runs at most 20 deferred completions (task
  // work) and keeps the rest (runtime/io/ring.h), and under a steady load
  // of timed waits the removed timeouts' completions pile up there
  // (measured: ~90,000 per second of a 32-fiber channel stress). Ask for
  // them until none come, so that the records they own are freed.
  while (io_.collect_held_back()) poll_io(false);
}

void carrier::wait_out_pause() {
  // A poll: a dump lasts milliseconds, and 20 us naps cost nothing then.
  // Raw system calls: this runs inside a switch, where bobbin's own
  // nanosleep interceptor must not run.
  while (rt_->pause_requested()) {
    timespec nap{0, 20000};
    bobbin::internal::libc::syscall(SYS_nanosleep, &nap, nullptr);
  }
}

void carrier::run(fiber_control* f) {
  current_.store(f, std::memory_order_release);
  f->state.store(fiber_state::running, std::memory_order_relaxed);
  f->carrier.store(static_cast<int>(index_), std::memory_order_relaxed);
  bump(switches);
  if (rt_->pause_requested()) [[unlikely]] wait_out_pause();
  switch_action a{&sched_ctx_, switch_action::none, nullptr, nullptr, this};
  ctx::transfer_t t = switch_context(sched_ctx_, f->ctx, &a);
  complete_switch(t);
}

void carrier::switch_away(fiber_control* from, switch_action* action, bool via_scheduler) {
  fiber_control* next = nullptr;
  if (++tick_ % kPollInterval != 0 && !(kSanitizerSeesOnlyTheLoop && via_scheduler) && !poll_overdue()) {
    next = pop_local(/*allow_bound=*/!kSanitizerSeesOnlyTheLoop);
  }
  const bool ending = action->what == switch_action::exit;
  action->by = this;
  // `from` stays covered for a dump: current_ until leaving_ is set, then
  // leaving_ until complete_switch has saved its context.
  leaving_.store(from, std::memory_order_relaxed);
  if (next != nullptr) {
    current_.store(next, std::memory_order_release);
    next->state.store(fiber_state::running, std::memory_order_relaxed);
    next->carrier.store(static_cast<int>(index_), std::memory_order_relaxed);
    bump(switches);
    if (rt_->pause_requested()) [[unlikely]] wait_out_pause();
    ctx::transfer_t t = switch_context(from->ctx, next->ctx, action, ending);
    complete_switch(t);
  } else {
    current_.store(nullptr, std::memory_order_release);
    ctx::transfer_t t = switch_context(from->ctx, sched_ctx_, action, ending);
    complete_switch(t);
  }
  // Back on `from`, perhaps on another carrier: `this` may be stale here.
}

void complete_switch(ctx::transfer_t t) noexcept {
  auto* a = static_cast<switch_action*>(t.data);
  // Copy first: once the leaving fiber is published, its stack (holding *a)
  // may be reused by another carrier.
  exec_context* from_ctx = a->from_ctx;
  const switch_action::kind what = a->what;
  fiber_control* f = a->fiber;
  spin_lock* lock = a->lock;
  carrier* by = a->by;
  from_ctx->fctx = t.fctx;
  if (by != nullptr) by->clear_leaving();  // the context is saved: a dump may walk it
  switch (what) {
    case switch_action::none:
      break;
    case switch_action::requeue:
      // No wake-up to decide: with a carrier idle and others queued here,
      // yield() chose requeue_shared instead.
      f->state.store(fiber_state::runnable, std::memory_order_relaxed);
      current_carrier()->push_local(f, false);
      break;
    case switch_action::requeue_shared: {
      // Read first: once on the global queue `f` may run on another
      // carrier, end, and be freed by its joiner (ThreadSanitizer caught
      // the read of f->rt after the push in fiber_keys_test).
      runtime_impl* rt = f->rt;
      f->state.store(fiber_state::runnable, std::memory_order_relaxed);
      rt->push_global(f);
      rt->wake_idle_carrier();
      break;
    }
    case switch_action::requeue_bound:
      current_carrier()->push_bound(f);
      break;
    case switch_action::unlock:
      if (lock != nullptr) lock->unlock();
      break;
    case switch_action::publish_parked: {
      // *a is still safe to read here: the fiber cannot be resumed (and its
      // stack reused) before the exchange below publishes it. Read only in
      // this case, so the other switches do not pay for the two fields.
      std::atomic<uint32_t>* handshake = a->handshake;
      const bool resume_here = a->resume_here;
      if (handshake->exchange(switch_action::kHandshakeParked, std::memory_order_acq_rel) ==
          switch_action::kHandshakeCompleted) {
        if (resume_here) {
          current_carrier()->push_bound(f);
        } else {
          f->rt->ready(f, /*next=*/false);
        }
      }
      break;
    }
    case switch_action::exit: {
      carrier* c = current_carrier();
      runtime_impl* rt = f->rt;
      // The carrier that ran `f` no longer has it as current (switch_away
      // stored that); if the monitor announced it is reading `f`, wait for
      // it. Dekker pair with pin_monitor::read_fiber().
      std::atomic_thread_fence(std::memory_order_seq_cst);
      while (rt->monitor_reading.load(std::memory_order_acquire) == f) __builtin_ia32_pause();
#if BOBBIN_TSAN
      __tsan_destroy_fiber(f->ctx.tsan_fiber);
#endif
      rt->stacks().release(f->stack, c->rt() == rt ? c->stack_cache() : nullptr);
      f->stack = fiber_stack{};
      release_ref(f);
      break;
    }
  }
}

void carrier::push_local(fiber_control* f, bool next) {
  if (next) {
    // acq_rel: a thief may take runnext from a blocked carrier (steal_into).
    fiber_control* old = runnext_.exchange(f, std::memory_order_acq_rel);
    if (old == nullptr) return;
    // The displaced one (a fiber just spawned or woken) joins the ring. If
    // it is full, the ring's oldest half moves to the back of the backlog,
    // and this one with it (Go's runqputslow, into the carrier's own
    // backlog): the ring keeps the most recently readied fibers, so a tree
    // of fibers that spawn and join runs closer to depth first, with far
    // fewer alive at once (skynet 1M: 0.8 us per fiber, against 2.1 in
    // strict order).
    if (runq_.push(old, clock_us_)) return;
    fiber_control* batch[run_queue::kCapacity / 2 + 1];
    uint32_t n = runq_.take_half(batch);
    batch[n++] = old;
    push_backlog(batch, n);
    return;
  }
  // Anything else (a yield, a spawn from elsewhere, a steal) queues in
  // strict order: behind a backlog, or in it when the ring is full. A free
  // slot in the ring must not let it overtake the backlog.
  if (backlog_size_.load(std::memory_order_relaxed) == 0 && runq_.push(f, clock_us_)) return;
  push_backlog(&f, 1);
}

void carrier::push_bound(fiber_control* f, bool first) {
  f->state.store(fiber_state::runnable, std::memory_order_relaxed);
  if (first) bound_sleepers_.push_back(f);
  else bound_.push_back(f);
}

fiber_control* carrier::pop_bound() {
  if (bound_sleepers_streak_ < kMaxRunnextStreak || bound_.empty()) {
    if (fiber_control* f = bound_sleepers_.pop_front()) {
      bound_sleepers_streak_++;
      return f;
    }
  }
  bound_sleepers_streak_ = 0;
  return bound_.pop_front();
}

void carrier::yield_bound(fiber_control* self) {
  // Queued by the context that arrives, once self's context is saved (it
  // runs on this same carrier thread).
  switch_action a{&self->ctx, switch_action::requeue_bound, self, nullptr};
  switch_away(self, &a, /*via_scheduler=*/true);
}

fiber_control* carrier::pop_local(bool allow_bound) {
  if (runnext_.load(std::memory_order_relaxed) != nullptr) {
    fiber_control* f = runnext_.exchange(nullptr, std::memory_order_acq_rel);
    if (f != nullptr) {
      if (++runnext_streak_ < kMaxRunnextStreak ||
          (!queued_work_waiting(allow_bound) && timers_size_.load(std::memory_order_relaxed) == 0)) {
        return f;
      }
      // The chain has had its turn: to the back of the queue, behind the
      // fibers that waited for it (strict order, as a yield).
      runnext_streak_ = 0;
      push_local(f, /*next=*/false);
    }
  } else {
    runnext_streak_ = 0;
  }
  // Sleepers whose time came. Only reaps add to them, but sleepers that
  // fire again by the next reap could keep them full: after
  // kMaxRunnextStreak in a row, the queue behind gets a turn.
  if (timers_size_.load(std::memory_order_relaxed) != 0 &&
      (timers_streak_ < kMaxRunnextStreak || !queued_work_waiting(allow_bound))) {
    if (fiber_control* f = take_timer()) {
      timers_streak_++;
      return f;
    }
  }
  timers_streak_ = 0;
  if (!allow_bound || !has_bound()) return pop_runq();
  // Bound fibers and the run queue take turns, so a stream of completions
  // for one kind cannot starve the other.
  prefer_bound_ = !prefer_bound_;
  if (prefer_bound_) {
    if (fiber_control* f = pop_bound()) return f;
    return pop_runq();
  }
  if (fiber_control* f = pop_runq()) return f;
  return pop_bound();
}

uint32_t carrier::steal_into(carrier& thief) {
  fiber_control* batch[run_queue::kCapacity / 2 + 1];
  uint32_t n = runq_.take_half(batch);
  if (n == 0) n = take_from_backlog(batch, run_queue::kCapacity / 2);
  if (n == 0 && blocked.load(std::memory_order_relaxed)) {
    // A blocked carrier will not run its runnext fiber any time soon.
    if (fiber_control* f = runnext_.exchange(nullptr, std::memory_order_acq_rel)) batch[n++] = f;
    // Nor its sleepers.
    while (n < run_queue::kCapacity / 2 + 1) {
      fiber_control* f = take_timer();
      if (f == nullptr) break;
      batch[n++] = f;
    }
  }
  for (uint32_t i = 0; i < n; i++) thief.push_local(batch[i], false);
  return n;
}

fiber_control* carrier::find_work(bool check_global_first) {
  const uint32_t batch = run_queue::kCapacity / 4;
  if (check_global_first) {
    if (fiber_control* f = rt_->pop_global(this, batch)) return f;
    // The backlog too: a run queue kept full by fibers that yield or wake
    // each other would otherwise never let it refill the ring.
    fiber_control* oldest;
    if (backlog_size_.load(std::memory_order_relaxed) != 0 && take_from_backlog(&oldest, 1) == 1) return oldest;
  }
  if (fiber_control* f = pop_local()) return f;
  if (fiber_control* f = rt_->pop_global(this, batch)) return f;
  auto& all = rt_->carriers();
  const size_t n = all.size();
  for (size_t i = 1; i < n; i++) {
    carrier& victim = *all[(index_ + i) % n];
    if (!victim.worth_stealing_from(clock_us_)) continue;
    uint32_t got = victim.steal_into(*this);
    if (got != 0) {
      bump(steals, got);
      return pop_local();
    }
  }
  return nullptr;
}

bool carrier::spin_for_work(fiber_control** out) {
  // Spin only while fewer than half of the busy carriers spin: more would
  // burn CPU the busy ones need.
  const int busy = static_cast<int>(rt_->carriers().size()) - rt_->num_idle.load(std::memory_order_relaxed);
  if (rt_->num_spinning.load(std::memory_order_relaxed) * 2 >= busy) return false;
  rt_->num_spinning.fetch_add(1, std::memory_order_seq_cst);
  const auto until = std::chrono::steady_clock::now() + kSpinTime;
  fiber_control* f = nullptr;
  do {
    if (io_.has_completions() || io_.needs_enter() || has_remote_.load(std::memory_order_relaxed) ||
        futex_completions_waiting()) {
      break;
    }
    f = find_work(false);
    if (f != nullptr || rt_->stopping()) break;
    for (int i = 0; i < 32; i++) __builtin_ia32_pause();
  } while (std::chrono::steady_clock::now() < until);
  if (rt_->num_spinning.fetch_sub(1, std::memory_order_seq_cst) == 1 && f != nullptr) {
    // The last spinner found work: there may be more, so get someone else
    // looking (Go's resetspinning).
    rt_->wake_idle_carrier();
  }
  *out = f;
  return f != nullptr;
}

void carrier::sleep_until_woken() {
  rt_->publish_idle(this);
  if (rt_->any_work_visible(this) || io_.has_completions() || has_remote_.load(std::memory_order_acquire) ||
      futex_completions_waiting()) {
    rt_->retract_idle(this);
    return;
  }
  arm_wake_and_futex_poll();
  sleeping.store(true, std::memory_order_relaxed);
  poll_io(true);
  sleeping.store(false, std::memory_order_relaxed);
  rt_->retract_idle(this);
}

void carrier::poll_io(bool wait) {
  io_.submit_and_collect(wait);
  read_clock_us();  // once per loop turn, after any sleep: enough to age the run queue
  // Whether switches since the last reap averaged over 8 us (poll_overdue).
  // A stretch without a switch (the carrier slept) says nothing, and starts
  // the next one. Nor does a stretch of a few: a fiber that ran for a
  // microsecond and parked, its operation submitted at once, says nothing
  // of the fibers queued behind it; judged alone, it made a carrier whose
  // fibers ran 200 us each poll only every 61st switch, and a sleeper whose
  // timer had fired waited 50 of their turns (scheduler_test,
  // AFiberWhoseSleepEndedRunsBeforeTheQueue, on epoll).
  const uint32_t switches = tick_ - tick_at_last_poll_;
  if (switches == 0) {
    us_at_last_poll_ = clock_us_;
  } else if (switches >= kSwitchesToJudge) {
    fibers_run_long_ =
        static_cast<uint64_t>(clock_us_ - us_at_last_poll_) * kPollInterval > uint64_t{kPollAfterUs} * switches;
    tick_at_last_poll_ = tick_;
    us_at_last_poll_ = clock_us_;
  }
  // Fibers whose I/O completed join the run queue in completion order. If
  // fibers already wait in this carrier's backlog, the new ones go behind
  // them rather than into the run queue ahead of them; when the run queue
  // fills, the rest of the batch follows the same way. Spilling the run
  // queue's oldest half to the global queue instead let fresh completions
  // overtake fibers that had waited longest: at 10,000 echo connections on
  // one carrier that made p99.9 6x the raw loop's. The backlog is the
  // carrier's own, not the global queue, so that fibers stay where their
  // stacks are warm unless another carrier is idle enough to steal them.
  reaping_to_backlog_ = backlog_size_.load(std::memory_order_relaxed) != 0;
  io_.reap();  // each completion's fn readies its fiber (ready_from_completion, ...)
  reaping_to_backlog_ = false;
  if (!reaped_for_backlog_.empty()) {
    push_backlog(reaped_for_backlog_.data(), static_cast<uint32_t>(reaped_for_backlog_.size()));
    reaped_for_backlog_.clear();
  }
  // Fibers woken from futex waits (futex_wait.h: this carrier reaps its own
  // futex ring; the monitor does when it does not).
  if (futex_ring* r = futex_ring_.load(std::memory_order_relaxed)) r->reap_if_free();
  // Completions readied fibers here; let an idle carrier help with them.
  if (wants_help()) rt_->wake_idle_carrier();
}

bool carrier::wants_help() {
  if (runq_.size() > kHelpQueueLength || backlog_size_.load(std::memory_order_relaxed) != 0) return true;
  if (runq_.oldest_wait_us(clock_us_) <= kHelpWaitUs) return false;
  // An old queue means help only if this carrier was on the CPU all along,
  // so really overloaded. If the OS ran something else on its core
  // meanwhile (a busy machine), another carrier would compete for the same
  // cores and slow everything (the 2-core bench box with its load
  // generator on one core: 0.6x at 100 echo connections). Checked at most
  // once per kHelpWaitUs: reading the thread's CPU clock is a system call.
  if (clock_us_ - overdue_check_us_ < kHelpWaitUs) return false;
  const int64_t cpu_ns = cpu_time_ns();
  const int64_t wall_ns = static_cast<int64_t>(clock_us_ - overdue_check_us_) * 1000;
  const bool had_the_cpu = cpu_ns >= 0 && (cpu_ns - overdue_check_cpu_ns_) * 10 >= wall_ns * 9;
  overdue_check_us_ = clock_us_;
  overdue_check_cpu_ns_ = cpu_ns;
  return had_the_cpu;
}

bool carrier::worth_stealing_from(uint32_t now_us) const {
  return runq_.size() > kHelpQueueLength || backlog_size_.load(std::memory_order_relaxed) != 0 ||
         runq_.oldest_wait_us(now_us) > kHelpWaitUs || blocked.load(std::memory_order_relaxed);
}

bool carrier::poll_overdue() const {
  if (!fibers_run_long_) return false;
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const auto now_us = static_cast<uint32_t>(static_cast<uint64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000);
  return now_us - clock_us_ > kPollAfterUs;  // clock_us_: read by the last poll_io (or at the carrier's start)
}

uint32_t carrier::read_clock_us() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  clock_us_ = static_cast<uint32_t>(static_cast<uint64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000);
  clock_ms_ = static_cast<uint64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
  return clock_us_;
}

void carrier::ready_from_completion(fiber_control* f) {
  f->state.store(fiber_state::runnable, std::memory_order_relaxed);
  if (!reaping_to_backlog_) {
    if (runq_.push(f, clock_us_)) return;
    reaping_to_backlog_ = true;  // full: this one and the rest of the batch go behind
  }
  reaped_for_backlog_.push_back(f);
}

void carrier::ready_from_timer(fiber_control* f) {
  f->state.store(fiber_state::runnable, std::memory_order_relaxed);
  // Go readies a goroutine whose timer fired into runnext, but there
  // several timers fired in one reap would each push the one before to the
  // back of the queue (the mix test has 25 fibers sleeping 1 ms in a loop
  // beside its 5 ms sleeper): they queue, in order, ahead of the run queue
  // instead.
  backlog_lock_.lock();
  timers_.push_back(f);
  timers_size_.store(timers_size_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  backlog_lock_.unlock();
}

fiber_control* carrier::take_timer() {
  if (timers_size_.load(std::memory_order_relaxed) == 0) return nullptr;
  backlog_lock_.lock();
  fiber_control* f = timers_.pop_front();
  if (f != nullptr) timers_size_.store(timers_size_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  backlog_lock_.unlock();
  return f;
}

void carrier::push_backlog(fiber_control* const* fs, uint32_t n) {
  backlog_lock_.lock();
  for (uint32_t i = 0; i < n; i++) backlog_.push_back(fs[i]);
  backlog_size_.fetch_add(n, std::memory_order_release);
  backlog_lock_.unlock();
}

uint32_t carrier::take_from_backlog(fiber_control** out, uint32_t max) {
  backlog_lock_.lock();
  const uint32_t n = backlog_.pop_front(out, max);
  backlog_size_.fetch_sub(n, std::memory_order_relaxed);
  backlog_lock_.unlock();
  return n;
}

fiber_control* carrier::pop_runq() {
  if (fiber_control* f = runq_.pop()) return f;
  if (backlog_size_.load(std::memory_order_relaxed) == 0) return nullptr;
  // Refill half the run queue from the backlog, oldest first.
  fiber_control* batch[run_queue::kCapacity / 2];
  const uint32_t n = take_from_backlog(batch, run_queue::kCapacity / 2);
  if (n == 0) return nullptr;
  for (uint32_t i = 1; i < n; i++) runq_.push(batch[i], clock_us_);  // room: the queue was empty
  return batch[0];
}

void carrier::cancel_here(uint64_t user_data) {
  if (!io_.try_cancel(user_data)) post({remote_request::cancel_user_data, -1, user_data, nullptr});
}

void carrier::post(const remote_request& r) {
  remote_lock_.lock();
  remote_.push_back(r);
  has_remote_.store(true, std::memory_order_release);
  remote_lock_.unlock();
  wake();
}

void carrier::handle_remote_requests() {
  std::vector<remote_request> todo;
  remote_lock_.lock();
  todo.swap(remote_);
  has_remote_.store(false, std::memory_order_relaxed);
  remote_lock_.unlock();
  for (const remote_request& r : todo) {
    if (r.what == remote_request::cancel_fiber_op) {
      cancel_ring_op_here(this, reinterpret_cast<fiber_control*>(r.target_user_data));
      continue;
    }
    if (r.what == remote_request::resume_bound) {
      push_bound(reinterpret_cast<fiber_control*>(r.target_user_data));
      continue;
    }
    if (r.what == remote_request::cancel_fd) {
      io_.cancel_fd(r.fd, r.done);
    } else if (r.what == remote_request::cancel_user_data) {
      io_.cancel(r.target_user_data, r.done);
    } else {
      io_.remove_timeout(r.target_user_data, r.done);
    }
  }
}

}  // namespace bobbin::internal
