// The pinning monitor: Go's sysmon, for fibers.
//
// What counts as pinned: a carrier that has been running the same fiber,
// without any switch, for longer than the threshold (20 ms by default, as the
// JDK's jdk.VirtualThreadPinned event). The monitor needs nothing from the
// carriers' hot path: every mount increments carrier::switches and sets
// carrier::current; the monitor samples both every threshold/4 and an
// episode is a run of samples in which neither changed. Its duration is
// measured from the first such sample, so it is under-reported by at most one
// interval.
//
// A carrier that is runnable but not running (preempted by the OS) is not
// pinned by its fiber: "on the CPU" is reported only once the carrier thread
// has used the threshold's worth of CPU time in the episode (its thread CPU
// clock), so an oversubscribed machine does not blame innocent fibers.
//
// Why it is pinned, from the kernel's view of the carrier thread:
//   /proc/self/task/<tid>/stat says R (running) or S/D (blocked);
//   /proc/self/task/<tid>/syscall names the system call and gives the stack
//   and program counters at its entry.
// A fiber inside a declared pinned region is reported as `declared`, with
// the wait it is blocked on (pinned_block_marker) when it is blocked.
//
// The report carries a symbolized stack captured at detection: by signal for
// a carrier on the CPU, by scanning from the /proc stack pointer for one
// blocked in the kernel (stack_capture.h). The end of an episode is reported
// too, with its total duration.
//
// Compensation: while a carrier is blocked (in the kernel, or declared), a
// spare carrier is activated for it; it steals the blocked carrier's run
// queue (its runnext slot included, see carrier::steal_into) and takes new
// work. When the episode ends the spare is deactivated: it hands any fibers
// it still has to the global queue and sleeps until its own in-flight I/O is
// done. Fibers woken on a blocked carrier that must resume there (from an
// OS mutex or condition variable, runtime/intercept/fiber_calls.h says why)
// cannot run meanwhile, so their wakes are passed on to the next waiter at
// once.
// With runtime_options::spares_for_cpu_hogs, a carrier that has run one
// fiber for a whole interval with fibers queued behind it gets a spare too,
// when no idle carrier can be woken for them (backlog help, below): the
// spare competes with it for the same cores, and that is the point, since
// fibers are not preempted: the kernel then divides the cores between the
// hog and the queued fibers, as it does between threads. It is off by
// default because more fibers than carriers then run at once (a runtime of
// one carrier is no longer single-threaded; with it on, scheduler_test's
// FIFO test on one carrier saw its queue run out of order under load). What
// it changed in perf/blocking's four-library mix, where each TLS handshake
// holds a carrier for milliseconds: README "Compensation". The spare steals
// only the run queue: runnext and the sleepers' lane stay for the carrier,
// which will run them at its next switch; a hog is not blocked, so wakes
// are not passed on.
//
// Futex completions: each carrier reaps its own futex ring; one that has
// not reaped a completion for a whole interval gets it reaped here, so a
// fiber woken from an OS lock while its carrier is stuck resumes elsewhere
// (or has its wake passed on) within about two intervals
// (runtime/park/futex_wait.h). Without a futex ring (epoll, older kernels)
// the waits are in bobbin's futex table, whose bound wakes stuck on the
// carrier are passed on the same way (runtime/park/futex_table.h).
//
// Backlog help: a carrier wakes an idle one when its run queue grows long
// or old (carrier::wants_help), but it checks only between fibers, so a
// fiber that hogs the CPU would keep the fibers queued behind it waiting
// while other carriers sleep (fibers are not preempted). Every interval the
// monitor looks for a carrier that has run the same fiber since the last
// look with fibers queued, and wakes an idle carrier to steal them, or, with
// none idle and spares_for_cpu_hogs on, brings a spare online (above). The
// wake runs even with pin detection off (which leaves no spares).
//
// Reading a fiber's fields from another thread is safe only while the fiber
// cannot be freed: the monitor publishes the fiber in
// runtime_impl::monitor_reading, then re-checks that it is still the
// carrier's current one; a fiber that ends waits in its exit switch action
// until the monitor is done with it (carrier.cc, complete_switch).
#include "runtime/pinning/monitor.h"

#include <dlfcn.h>

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/park/futex_table.h"
#include "runtime/park/futex_wait.h"
#include "runtime/fiber/fiber_control.h"
#include "runtime/pinning/stack_capture.h"
#include "runtime/util/mutex_lock.h"
#include "runtime/sched/carrier.h"
#include "runtime/sched/scheduler.h"
#include "runtime/sync/os_cond.h"
#include "runtime/util/check.h"

namespace bobbin::internal {

namespace {
constexpr int kTraceBurst = 10;  // stderr lines per second, at most
}

pin_monitor::pin_monitor(runtime_impl* rt, std::chrono::milliseconds threshold, unsigned max_spares)
    : rt_(rt),
      threshold_(threshold),
      interval_(threshold.count() <= 0
                    ? std::chrono::microseconds(5000)
                    : std::clamp<std::chrono::microseconds>(threshold / 4, std::chrono::microseconds(500),
                                                            std::chrono::microseconds(10000))),
      max_spares_(max_spares) {
  if (const char* env = std::getenv("BOBBIN_TRACE_PINNED")) {
    if (std::strcmp(env, "full") == 0) trace_ = trace::full;
    else if (std::strcmp(env, "short") == 0 || std::strcmp(env, "1") == 0) trace_ = trace::brief;
  }
}

void pin_monitor::start() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "bobbin-monitor");
    run();
  });
}

void pin_monitor::stop() {
  {
    std::lock_guard l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void pin_monitor::set_listener(pin_listener l) {
  std::lock_guard lock(mu_);
  listener_ = std::move(l);
}

void pin_monitor::run() {
  auto& all = rt_->carriers();
  const size_t primaries = rt_->options().carriers;
  std::vector<watch> watches(all.size());
  std::unique_lock l(mu_);
  while (!stop_) {
    cv_.wait_for(l, interval_, [this] { return stop_; });
    if (stop_) break;
    l.unlock();
    auto now = std::chrono::steady_clock::now();
    for (size_t i = 0; i < all.size(); i++) {
      // Inactive spares run nothing; active ones can be pinned like any.
      if (i >= primaries && !all[i]->active.load(std::memory_order_relaxed) && !watches[i].reported) continue;
      if (threshold_.count() > 0) sample(all[i].get(), watches[i], now);
      help_if_backlogged(all[i].get(), watches[i]);
    }
    // Futex completions a carrier will not reap soon: every tick for one
    // marked blocked, else those left for a whole tick (it runs one fiber
    // for long). Fibers woken there may then run elsewhere.
    for (auto& c : all) {
      futex_ring* r = c->started_futex_ring();
      if (r == nullptr) continue;
      if (c->blocked.load(std::memory_order_relaxed)) {
        if (r->has_completions()) r->reap_for_stuck_carrier();
      } else {
        r->reap_if_stalled();
      }
    }
    deadlocks_.tick(now);
    l.lock();
  }
  l.unlock();
  for (size_t i = 0; i < all.size(); i++) {
    if (watches[i].reported) end_episode(all[i].get(), watches[i], std::chrono::steady_clock::now());
  }
}

void pin_monitor::help_if_backlogged(carrier* c, watch& w) {
  const uint64_t switches = c->switches.load(std::memory_order_relaxed);
  const bool stuck = switches == w.help_switches && c->current_acquire() != nullptr && c->has_local_work();
  w.help_switches = switches;
  if (!stuck) return;
  // A no-op when no carrier is idle or one is spinning (it will steal).
  if (rt_->wake_idle_carrier()) {
    backlog_wakeups_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // Every carrier is busy: a spare takes the queue, and the kernel shares
  // the cores between the fiber holding this carrier and the fibers queued
  // behind it, as it would between threads. A carrier the OS kept off the
  // CPU meanwhile (other processes on the cores) counts too: its queue waits
  // either way, and the spare gets it a thread's share of the cores, as a
  // thread per caller would have (in perf/blocking's mix, asking for a
  // quarter of the interval on the CPU first kept less than half the gain).
  // It retires when the carrier switches (sample(); with detection off there
  // are no spares).
  if (rt_->options().spares_for_cpu_hogs && c->has_stealable_work()) activate_spare(w);
}

void pin_monitor::sample(carrier* c, watch& w, std::chrono::steady_clock::time_point now) {
  const uint64_t tick = c->switches.load(std::memory_order_relaxed);
  fiber_control* f = c->current_acquire();
  if (f == nullptr || tick != w.tick || f != w.fiber) {
    if (w.reported || w.spare != nullptr) end_episode(c, w, now);
    w.tick = tick;
    w.fiber = f;
    w.since = now;
    w.cpu_since_ns = f != nullptr ? c->cpu_time_ns() : -1;
    return;
  }
  if (w.reported || now - w.since < threshold_) return;

  // Pinned for longer than the threshold: find out why.
  thread_syscall_state ks = read_thread_state(c->tid());
  const bool kernel_blocked = ks.state != 'R' && ks.nr >= 0 && ks.nr != 426;  // not io_uring_enter
  if (!kernel_blocked && w.cpu_since_ns >= 0) {
    // On the CPU only counts once the thread has used the threshold's worth
    // of CPU: a carrier the OS preempted (an oversubscribed machine, other
    // processes) is not held by its fiber.
    const int64_t used = c->cpu_time_ns() - w.cpu_since_ns;
    if (used >= 0 && used < std::chrono::duration_cast<std::chrono::nanoseconds>(threshold_).count()) return;
  }
  pin_event e;
  if (!describe(c, f, kernel_blocked, ks.nr, ks.sp, e)) return;  // it moved on meanwhile
  e.duration = now - w.since;
  w.event = e;
  w.reported = true;
  const bool declared = e.reason == pin_reason::declared;
  if ((kernel_blocked || declared) && ks.state != 'R') {
    c->blocked.store(true, std::memory_order_relaxed);
    if (futex_ring* r = c->started_futex_ring()) {
      r->reap_for_stuck_carrier();  // it will not: wakes consumed meanwhile are passed on below
      r->pass_on_wakes_stuck_on(c);
    }
    futex_table_pass_on_wakes_stuck_on(c);
    os_cond::pass_on_wakes_stuck_on(c);
    activate_spare(w);
  }
  events_.fetch_add(1, std::memory_order_relaxed);
  emit(e);
}

bool pin_monitor::describe(carrier* c, fiber_control* f, bool kernel_blocked, long nr, uintptr_t sp, pin_event& e) {
  // Announce the read, then confirm `f` is still current (see the header).
  rt_->monitor_reading.store(f, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (c->current_acquire() != f) {
    rt_->monitor_reading.store(nullptr, std::memory_order_release);
    return false;
  }
  e.fiber_id = f->id;
  e.fiber_name = f->name;
  e.carrier = static_cast<int>(c->index());
  const int depth = f->pin_depth.load(std::memory_order_relaxed);
  const char* why = f->pin_why.load(std::memory_order_relaxed);
  const wait_reason blocked_on = f->reason.load(std::memory_order_relaxed);
  const uintptr_t stack_low = reinterpret_cast<uintptr_t>(f->stack.low());
  const uintptr_t stack_top = reinterpret_cast<uintptr_t>(f->stack.top());

  stack_capture cap;
  {
    mutex_lock one_capture(&capture_mutex());
    refresh_code_ranges();
    if (kernel_blocked) {
      // The thread sits in the kernel: its stack does not change; scan it and
      // check it is still blocked at the same place afterwards.
      scan_stack(0, sp, stack_low, stack_top, cap);
      thread_syscall_state again = read_thread_state(c->tid());
      if (again.nr == nr && again.sp == sp) {
        cap.frames[0] = again.pc;
      } else {
        cap.count = 0;
      }
    } else {
      // Only the stack of `f` itself: it may have switched away meanwhile.
      if (c->capture_by_signal(cap, std::chrono::milliseconds(50)) != f) cap.count = 0;
    }
  }
  rt_->monitor_reading.store(nullptr, std::memory_order_release);

  if (depth > 0) {
    e.reason = pin_reason::declared;
    e.detail = absl::StrCat("in pinned region \"", why ? why : "", "\", ");
    if (kernel_blocked) {
      absl::StrAppend(&e.detail, "blocked");
      if (blocked_on != wait_reason::none) absl::StrAppend(&e.detail, " on ", std::string(to_string(blocked_on)));
      absl::StrAppend(&e.detail, " in ", syscall_name(nr));
    } else {
      absl::StrAppend(&e.detail, "running on the CPU");
    }
  } else if (kernel_blocked) {
    e.reason = pin_reason::syscall;
    e.detail = absl::StrCat("blocked in the kernel in ", syscall_name(nr));
    if (nr == 35 || nr == 230) absl::StrAppend(&e.detail, " (a sleep)");
  } else {
    e.reason = pin_reason::cpu;
    e.detail = "running on the CPU without parking";
  }
  e.stack = symbolize(cap);
  if (depth == 0 && kernel_blocked && nr == 202 && cap.count > 0) {
    // A futex wait that was not taken over (runtime/intercept/futex_calls.cc
    // and thread_calls.cc list what is): say where it was made.
    Dl_info info{};
    const char* lib = ::dladdr(reinterpret_cast<void*>(cap.frames[0]), &info) != 0 && info.dli_fname != nullptr
                          ? info.dli_fname
                          : "";
    const char* base = std::strrchr(lib, '/');
    base = base != nullptr ? base + 1 : lib;
    const bool via_syscall = info.dli_sname != nullptr && std::strcmp(info.dli_sname, "syscall") == 0;
    if (std::strncmp(base, "libc.so", 7) == 0 && !via_syscall) {
      absl::StrAppend(&e.detail,
                      " inside glibc, a wait bobbin does not take over: a FILE's lock (stdio), malloc's arena "
                      "lock, the resolver or the dynamic linker, pthread_timedjoin_np, a process-shared or robust "
                      "mutex, or an OS lock with interception off");
    } else {
      absl::StrAppend(&e.detail, " (a futex wait bobbin does not take over: Abseil's waits, a process-shared or "
                                 "robust mutex, or a wait with interception off)");
    }
  }
  return true;
}

void pin_monitor::end_episode(carrier* c, watch& w, std::chrono::steady_clock::time_point now) {
  c->blocked.store(false, std::memory_order_relaxed);
  retire_spare(w);
  if (w.reported) {
    pin_event e = w.event;
    e.ended = true;
    e.duration = now - w.since;
    e.stack.clear();
    pinned_ns_.fetch_add(static_cast<uint64_t>(std::chrono::nanoseconds(e.duration).count()),
                         std::memory_order_relaxed);
    emit(e);
  }
  w.reported = false;
}

void pin_monitor::activate_spare(watch& w) {
  if (w.spare != nullptr) return;
  auto& all = rt_->carriers();
  for (size_t i = rt_->options().carriers; i < all.size() && i < rt_->options().carriers + max_spares_; i++) {
    carrier* s = all[i].get();
    bool expected = false;
    if (s->is_spare() && s->active.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
      w.spare = s;
      spares_active_.fetch_add(1, std::memory_order_relaxed);
      spare_activations_.fetch_add(1, std::memory_order_relaxed);
      s->wake();
      return;
    }
  }
}

void pin_monitor::retire_spare(watch& w) {
  if (w.spare == nullptr) return;
  w.spare->active.store(false, std::memory_order_release);
  w.spare->wake();  // so it notices, hands off its work and sleeps
  w.spare = nullptr;
  spares_active_.fetch_sub(1, std::memory_order_relaxed);
}

void pin_monitor::emit(const pin_event& e) {
  {
    std::lock_guard l(mu_);
    if (listener_) listener_(e);
  }
  if (trace_ == trace::off) return;
  auto now = std::chrono::steady_clock::now();
  if (now - window_start_ >= std::chrono::seconds(1)) {
    window_start_ = now;
    window_lines_ = 0;
  }
  if (window_lines_ >= kTraceBurst) {
    suppressed_++;
    return;
  }
  window_lines_++;
  std::string text = format_pin_event(e, trace_ == trace::full);
  if (suppressed_ != 0) {
    text = absl::StrCat("bobbin: (", suppressed_, " pinning reports suppressed: at most ", kTraceBurst,
                        " a second)\n", text);
    suppressed_ = 0;
  }
  write_stderr(text);
}

}  // namespace bobbin::internal
