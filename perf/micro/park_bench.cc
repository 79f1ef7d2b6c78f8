// Park and wake, side by side. One iteration is a round trip: a message sent
// and its answer received, each side parking in between.
//   bobbin_channel/carriers:1  both fibers on one carrier
//   bobbin_channel/carriers:2  pinger and ponger free to run on two carriers
//   boost_fiber_channel        Boost.Fiber buffered_channel, one thread
//   bobbin_mutex_contended     N fibers on 2 carriers contending for one
//                              bobbin::mutex for 100 ms, a short critical
//                              section each; per lock/unlock pair (items)
//   std_mutex_contended        the same with a std::mutex, which bobbin's
//                              interposer (runtime/sync/os_mutex.h) parks
//                              fibers on (issue 29)
//   std_mutex_contended_threads the same with 16 plain threads
//   shared_mutex_contended     16 fibers on 2 carriers sharing one
//                              std::shared_mutex for 100 ms, 19 of every 20
//                              sections shared (a read of the guarded value),
//                              the 20th exclusive (a write); per section.
//                              bobbin's own rwlock (runtime/sync/os_rwlock.h)
//   shared_mutex_contended_threads the same with 16 plain threads
//   std_mutex_uncontended_*    lock + unlock of a free std::mutex on a fiber
//                              and on a plain thread (both through the
//                              interposer, as in any program linking bobbin)
//   std_condvar_ping_pong      a turn passed back and forth between two
//                              fibers through a std::mutex and a
//                              std::condition_variable (bobbin's own since
//                              issue 30: runtime/sync/os_cond.h), on 1 and
//                              2 carriers; per round trip
//   bobbin_condvar_ping_pong   the same with bobbin::mutex and
//                              bobbin::condition_variable
//   std_condvar_ping_pong_threads  the same between two plain threads
//   atomic_wake_latency        one-way wake latency: a plain thread stores and
//                              notify_one()s a std::atomic<int> that a
//                              waiter sleeps in wait() on (a private futex);
//                              waiter:0 a fiber on 1 carrier (parked through
//                              bobbin's syscall interposer, issue 32),
//                              waiter:1 a plain thread; per wake, from the
//                              store to the waiter running (manual time)
//   future_wake_latency        the same through std::promise::set_value and
//                              std::future::get (a shared futex)
//   bobbin_socket_ping_pong    one byte back and forth over a socketpair
//                              between two fibers on one carrier: each read
//                              finds nothing and parks on an io_uring
//                              operation (the I/O wait, cancellable)
#include <benchmark/benchmark.h>

#include <sys/socket.h>

#include <atomic>
#include <boost/fiber/all.hpp>
#include <condition_variable>
#include <future>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "bobbin/bobbin.h"

namespace {

void bobbin_channel(benchmark::State& state) {
  bobbin::runtime_options o;
  o.carriers = static_cast<unsigned>(state.range(0));
  bobbin::run([&] {
    bobbin::channel<int> ping(1), pong(1);
    auto ponger = bobbin::spawn([&] {
      while (auto v = ping.receive()) pong.send(*v);
    });
    for (auto _ : state) {
      ping.send(1);
      (void)pong.receive();
    }
    ping.close();
    ponger.join();
  }, o);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bobbin_channel)->Arg(1)->Arg(2)->ArgName("carriers")->UseRealTime();

void bobbin_socket_ping_pong(benchmark::State& state) {
  bobbin::runtime_options o;
  o.carriers = 1;
  bobbin::run([&] {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      state.SkipWithError("socketpair failed");
      return;
    }
    bobbin::tcp_stream a(sv[0]), b(sv[1]);
    auto echo = bobbin::spawn([&] {
      char c;
      while (b.read_some(std::span(&c, 1)).bytes == 1) {
        if (!b.write_all(std::string_view(&c, 1))) break;
      }
    });
    char c = 'x';
    for (auto _ : state) {
      (void)a.write_all(std::string_view(&c, 1));
      (void)a.read_some(std::span(&c, 1));
    }
    (void)a.shutdown(bobbin::tcp_stream::shutdown_how::both);
    echo.join();
  }, o);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bobbin_socket_ping_pong)->UseRealTime();

void boost_fiber_channel(benchmark::State& state) {
  // buffered_channel needs a power-of-two capacity of at least 2.
  boost::fibers::buffered_channel<int> ping(2), pong(2);
  boost::fibers::fiber ponger([&] {
    int v;
    while (ping.pop(v) == boost::fibers::channel_op_status::success) pong.push(v);
  });
  for (auto _ : state) {
    ping.push(1);
    int v;
    pong.pop(v);
  }
  ping.close();
  ponger.join();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(boost_fiber_channel)->UseRealTime();

template <class Mutex>
void mutex_contended(benchmark::State& state) {
  // The shape of perf/go's go_mutex, so the two compare: N contenders take
  // the lock in a loop for a fixed window; the figure is the window (start,
  // contention and join included) divided by the locks taken in it.
  const int contenders = static_cast<int>(state.range(0));
  constexpr auto kWindow = std::chrono::milliseconds(100);
  bobbin::runtime_options o;
  o.carriers = 2;
  auto rt = bobbin::runtime::start(o).value();
  Mutex mu;
  long shared = 0;
  long total = 0;
  for (auto _ : state) {
    std::atomic<bool> stop{false};
    std::atomic<long> locks{0};
    std::vector<bobbin::fiber<>> fs;
    for (int i = 0; i < contenders; i++) {
      fs.push_back(rt->spawn([&] {
        long n = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          std::lock_guard l(mu);
          shared++;
          n++;
        }
        locks.fetch_add(n, std::memory_order_relaxed);
      }));
    }
    // The window is timed on this plain thread: the contenders never park
    // while they win the lock, so a fiber's timer would wait for a carrier.
    std::this_thread::sleep_for(kWindow);
    stop.store(true, std::memory_order_relaxed);
    for (auto& f : fs) f.join();
    total += locks.load();
  }
  benchmark::DoNotOptimize(shared);
  state.SetItemsProcessed(total);
}
void bobbin_mutex_contended(benchmark::State& state) { mutex_contended<bobbin::mutex>(state); }
BENCHMARK(bobbin_mutex_contended)->Arg(2)->Arg(16)->ArgName("fibers")->UseRealTime();
void std_mutex_contended(benchmark::State& state) { mutex_contended<std::mutex>(state); }
BENCHMARK(std_mutex_contended)->Arg(2)->Arg(16)->ArgName("fibers")->UseRealTime();

// The same window with N plain threads on the same 2 cores: what a
// contended std::mutex costs without bobbin.
void std_mutex_contended_threads(benchmark::State& state) {
  const int contenders = static_cast<int>(state.range(0));
  std::mutex mu;
  long shared = 0;
  long total = 0;
  for (auto _ : state) {
    std::atomic<bool> stop{false};
    std::atomic<long> locks{0};
    std::vector<std::thread> ts;
    for (int i = 0; i < contenders; i++) {
      ts.emplace_back([&] {
        long n = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          std::lock_guard l(mu);
          shared++;
          n++;
        }
        locks.fetch_add(n, std::memory_order_relaxed);
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    stop.store(true, std::memory_order_relaxed);
    for (auto& t : ts) t.join();
    total += locks.load();
  }
  benchmark::DoNotOptimize(shared);
  state.SetItemsProcessed(total);
}
BENCHMARK(std_mutex_contended_threads)->Arg(16)->ArgName("threads")->UseRealTime();

// 95% readers: sections [0, 19) of each 20 are shared, the 20th exclusive.
template <class Spawn, class Join>
long shared_mutex_window(int contenders, Spawn spawn, Join join_all, long& shared) {
  std::shared_mutex mu;
  std::atomic<bool> stop{false};
  std::atomic<long> sections{0};
  for (int i = 0; i < contenders; i++) {
    spawn([&] {
      long n = 0;
      long seen = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        if (n % 20 == 19) {
          std::unique_lock l(mu);
          shared++;
        } else {
          std::shared_lock l(mu);
          seen += shared;
        }
        n++;
      }
      benchmark::DoNotOptimize(seen);
      sections.fetch_add(n, std::memory_order_relaxed);
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  stop.store(true, std::memory_order_relaxed);
  join_all();
  return sections.load();
}

void shared_mutex_contended(benchmark::State& state) {
  bobbin::runtime_options o;
  o.carriers = 2;
  auto rt = bobbin::runtime::start(o).value();
  long shared = 0, total = 0;
  for (auto _ : state) {
    std::vector<bobbin::fiber<>> fs;
    total += shared_mutex_window(
        static_cast<int>(state.range(0)), [&](auto body) { fs.push_back(rt->spawn(body)); },
        [&] {
          for (auto& f : fs) f.join();
        },
        shared);
  }
  benchmark::DoNotOptimize(shared);
  state.SetItemsProcessed(total);
}
BENCHMARK(shared_mutex_contended)->Arg(16)->ArgName("fibers")->UseRealTime();

void shared_mutex_contended_threads(benchmark::State& state) {
  long shared = 0, total = 0;
  for (auto _ : state) {
    std::vector<std::thread> ts;
    total += shared_mutex_window(
        static_cast<int>(state.range(0)), [&](auto body) { ts.emplace_back(body); },
        [&] {
          for (auto& t : ts) t.join();
        },
        shared);
  }
  benchmark::DoNotOptimize(shared);
  state.SetItemsProcessed(total);
}
BENCHMARK(shared_mutex_contended_threads)->Arg(16)->ArgName("threads")->UseRealTime();

// One side of a condition-variable ping-pong: hands the turn to `to` and
// waits until it comes back to `me`. Notified outside the lock, as
// recommended: the woken side does not then find the mutex taken.
template <class Mutex, class Cv>
bool pass_turn(Mutex& mu, Cv& cv, int& turn, int me, int to, const bool& done) {
  {
    std::lock_guard l(mu);
    turn = to;
  }
  cv.notify_one();
  std::unique_lock l(mu);
  cv.wait(l, [&] { return turn == me || done; });
  return !done;
}

template <class Mutex, class Cv>
void condvar_ping_pong(benchmark::State& state) {
  bobbin::runtime_options o;
  o.carriers = static_cast<unsigned>(state.range(0));
  auto rt = bobbin::runtime::start(o).value();
  Mutex mu;
  Cv cv;
  int turn = 0;
  bool done = false;
  auto ponger = rt->spawn([&] {
    {
      std::unique_lock l(mu);
      cv.wait(l, [&] { return turn == 1 || done; });
    }
    while (!done && pass_turn(mu, cv, turn, 1, 0, done)) {
    }
  });
  rt->spawn([&] {
      for (auto _ : state) {
        {
          std::lock_guard l(mu);
          turn = 1;
        }
        cv.notify_one();
        std::unique_lock l(mu);
        cv.wait(l, [&] { return turn == 0; });
      }
      {
        std::lock_guard l(mu);
        done = true;
      }
      cv.notify_all();
    }).join();
  ponger.join();
  state.SetItemsProcessed(state.iterations());
}
void std_condvar_ping_pong(benchmark::State& state) {
  condvar_ping_pong<std::mutex, std::condition_variable>(state);
}
BENCHMARK(std_condvar_ping_pong)->Arg(1)->Arg(2)->ArgName("carriers")->UseRealTime();
void bobbin_condvar_ping_pong(benchmark::State& state) {
  condvar_ping_pong<bobbin::mutex, bobbin::condition_variable>(state);
}
BENCHMARK(bobbin_condvar_ping_pong)->Arg(1)->Arg(2)->ArgName("carriers")->UseRealTime();

void std_condvar_ping_pong_threads(benchmark::State& state) {
  std::mutex mu;
  std::condition_variable cv;
  int turn = 0;
  bool done = false;
  std::thread ponger([&] {
    {
      std::unique_lock l(mu);
      cv.wait(l, [&] { return turn == 1 || done; });
    }
    while (!done && pass_turn(mu, cv, turn, 1, 0, done)) {
    }
  });
  for (auto _ : state) {
    {
      std::lock_guard l(mu);
      turn = 1;
    }
    cv.notify_one();
    std::unique_lock l(mu);
    cv.wait(l, [&] { return turn == 0; });
  }
  {
    std::lock_guard l(mu);
    done = true;
  }
  cv.notify_all();
  ponger.join();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(std_condvar_ping_pong_threads)->UseRealTime();

// A free std::mutex locked and unlocked on a fiber (bobbin's fiber-side
// protocol) and on a plain thread (glibc's, behind the interposer's one
// branch): the uncontended path costs what a thread's does.
void std_mutex_uncontended_fiber(benchmark::State& state) {
  bobbin::runtime_options o;
  o.carriers = 1;
  auto rt = bobbin::runtime::start(o).value();
  std::mutex mu;
  long shared = 0;
  rt->spawn([&] {
      for (auto _ : state) {
        mu.lock();
        shared++;
        mu.unlock();
      }
    }).join();
  benchmark::DoNotOptimize(shared);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(std_mutex_uncontended_fiber)->UseRealTime();

void std_mutex_uncontended_thread(benchmark::State& state) {
  std::mutex mu;
  long shared = 0;
  for (auto _ : state) {
    mu.lock();
    shared++;
    mu.unlock();
  }
  benchmark::DoNotOptimize(shared);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(std_mutex_uncontended_thread)->UseRealTime();

// lock() + unlock() of a free mutex on one fiber: the fast path, which lock
// cycle detection (bobbin/sync/mutex.h) adds a flag load to (and, when on,
// a holder store and count).
void bobbin_mutex_uncontended(benchmark::State& state) {
  bobbin::runtime_options o;
  o.carriers = 1;
  auto rt = bobbin::runtime::start(o).value();
  bobbin::mutex mu;
  long shared = 0;
  rt->spawn([&] {
      for (auto _ : state) {
        mu.lock();
        shared++;
        mu.unlock();
      }
    }).join();
  benchmark::DoNotOptimize(shared);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bobbin_mutex_uncontended)->UseRealTime();

// One-way wake latency of a waiter (a fiber, or a plain thread) that sleeps
// in `Channel::wait` until the benchmark's thread calls `signal`. Each round
// the waiter announces that it is about to wait; the waker gives it 50 µs to
// get there (into the kernel, or parked on the futex ring), stamps the
// time, signals, and waits for the waiter to report when it ran.
struct atomic_channel {
  std::atomic<int> word{0};
  void prepare() { word.store(0); }
  void wait() { word.wait(0); }
  void signal() {
    word.store(1);
    word.notify_one();
  }
};
struct future_channel {
  std::promise<void> promise;
  std::future<void> future;
  void prepare() {
    promise = std::promise<void>();
    future = promise.get_future();
  }
  void wait() { future.get(); }
  void signal() { promise.set_value(); }
};

template <class Channel>
void wake_latency(benchmark::State& state) {
  const bool fiber = state.range(0) == 0;
  Channel ch;
  std::atomic<long> round{0}, ready{0}, done{-1};
  std::atomic<int64_t> stamp{0}, latency_ns{0};
  auto now_ns = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  auto waiter = [&](auto yield) {
    for (long seen = 0;;) {
      long r;
      while ((r = round.load(std::memory_order_acquire)) == seen) yield();
      if (r < 0) return;
      seen = r;
      ready.store(r, std::memory_order_release);
      ch.wait();
      latency_ns.store(now_ns() - stamp.load(std::memory_order_acquire), std::memory_order_relaxed);
      done.store(r, std::memory_order_release);
    }
  };
  std::unique_ptr<bobbin::runtime> rt;
  std::thread thread_waiter;
  bobbin::fiber<void> fiber_waiter;
  if (fiber) {
    bobbin::runtime_options o;
    o.carriers = 1;
    rt = bobbin::runtime::start(o).value();
    fiber_waiter = rt->spawn([&] { waiter([] { bobbin::this_fiber::yield(); }); });
  } else {
    thread_waiter = std::thread([&] { waiter([] { std::this_thread::yield(); }); });
  }
  long r = 0;
  for (auto _ : state) {
    ch.prepare();
    round.store(++r, std::memory_order_release);
    while (ready.load(std::memory_order_acquire) != r) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    stamp.store(now_ns(), std::memory_order_release);
    ch.signal();
    while (done.load(std::memory_order_acquire) != r) std::this_thread::yield();
    state.SetIterationTime(static_cast<double>(latency_ns.load(std::memory_order_relaxed)) * 1e-9);
  }
  round.store(-1, std::memory_order_release);
  if (fiber) fiber_waiter.join();
  else thread_waiter.join();
  state.SetItemsProcessed(state.iterations());
}
void atomic_wake_latency(benchmark::State& state) { wake_latency<atomic_channel>(state); }
BENCHMARK(atomic_wake_latency)->Arg(0)->Arg(1)->ArgName("waiter")->UseManualTime();
void future_wake_latency(benchmark::State& state) { wake_latency<future_channel>(state); }
BENCHMARK(future_wake_latency)->Arg(0)->Arg(1)->ArgName("waiter")->UseManualTime();

}  // namespace
