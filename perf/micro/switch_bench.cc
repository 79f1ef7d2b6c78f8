// Context switch, side by side: one iteration is a round trip between two
// execution contexts (two switches) in every variant.
//   bobbin_yield           two fibers yielding to each other on one carrier
//   boost_context_resume   raw Boost.Context fibers resuming each other: the
//                          floor under any stackful runtime built on it
//   boost_fiber_yield      Boost.Fiber, two fibers yielding on one thread
//   cxx20_coroutine        two stackless coroutines handing control back and
//                          forth by symmetric transfer
//   thread_semaphore       two OS threads waking each other through
//                          std::binary_semaphore (futex), /same_core or /cross_core
#include <benchmark/benchmark.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <boost/context/fiber.hpp>
#include <boost/fiber/all.hpp>
#include <coroutine>
#include <semaphore>
#include <thread>

#include "bobbin/bobbin.h"

namespace {

void bobbin_yield(benchmark::State& state) {
  bobbin::runtime_options o;
  o.carriers = 1;
  bobbin::run([&] {
    std::atomic<bool> stop{false};
    auto partner = bobbin::spawn([&] {
      while (!stop.load(std::memory_order_relaxed)) bobbin::this_fiber::yield();
    });
    bobbin::this_fiber::yield();  // let the partner start
    for (auto _ : state) bobbin::this_fiber::yield();
    stop = true;
    partner.join();
  }, o);
  state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK(bobbin_yield)->UseRealTime();

void boost_context_resume(benchmark::State& state) {
  namespace ctx = boost::context;
  bool stop = false;
  ctx::fiber partner{[&](ctx::fiber&& back) {
    while (!stop) back = std::move(back).resume();
    return std::move(back);
  }};
  partner = std::move(partner).resume();  // started; parked in its loop
  for (auto _ : state) partner = std::move(partner).resume();
  stop = true;
  partner = std::move(partner).resume();
  state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK(boost_context_resume)->UseRealTime();

void boost_fiber_yield(benchmark::State& state) {
  std::atomic<bool> stop{false};
  boost::fibers::fiber partner([&] {
    while (!stop.load(std::memory_order_relaxed)) boost::this_fiber::yield();
  });
  boost::this_fiber::yield();
  for (auto _ : state) boost::this_fiber::yield();
  stop = true;
  partner.join();
  state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK(boost_fiber_yield)->UseRealTime();

// A minimal coroutine that suspends by transferring to a peer.
struct pingpong_task {
  struct promise_type {
    pingpong_task get_return_object() { return {std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() {}
    void unhandled_exception() { std::terminate(); }
  };
  std::coroutine_handle<promise_type> handle;
};

struct transfer_to {
  std::coroutine_handle<> target;
  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<>) const noexcept { return target; }
  void await_resume() const noexcept {}
};

struct coroutine_pair {
  std::coroutine_handle<> ping, pong, driver_return = std::noop_coroutine();
  long rounds = 0;
};

// ping: for each round, hand control to pong; at the end, to noop (returns
// to the resumer). pong: forever hand control back to ping.
pingpong_task ping_side(coroutine_pair& p) {
  for (long i = 0; i < p.rounds; i++) co_await transfer_to{p.pong};
}
pingpong_task pong_side(coroutine_pair& p) {
  for (;;) co_await transfer_to{p.ping};
}

void cxx20_coroutine(benchmark::State& state) {
  for (auto _ : state) {
    state.PauseTiming();
    coroutine_pair p;
    p.rounds = 1000;
    pingpong_task a = ping_side(p), b = pong_side(p);
    p.ping = a.handle;
    p.pong = b.handle;
    state.ResumeTiming();
    a.handle.resume();  // runs 1000 round trips, then suspends finally
    state.PauseTiming();
    a.handle.destroy();
    b.handle.destroy();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * 2 * 1000);
}
// Timed in batches of 1000 round trips: per-iteration pause/resume of the
// timer costs more than the switches it would time.
BENCHMARK(cxx20_coroutine)->UseRealTime();

void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

void thread_semaphore(benchmark::State& state) {
  const bool cross = state.range(0) != 0;
  const int ncpu = static_cast<int>(std::thread::hardware_concurrency());
  std::binary_semaphore to_partner{0}, to_main{0};
  std::atomic<bool> stop{false};
  pin_to(0);
  std::thread partner([&] {
    pin_to(cross && ncpu > 1 ? 1 : 0);
    for (;;) {
      to_partner.acquire();
      if (stop.load(std::memory_order_relaxed)) return;
      to_main.release();
    }
  });
  for (auto _ : state) {
    to_partner.release();
    to_main.acquire();
  }
  stop = true;
  to_partner.release();
  partner.join();
  cpu_set_t all;
  CPU_ZERO(&all);
  for (int i = 0; i < ncpu; i++) CPU_SET(i, &all);
  pthread_setaffinity_np(pthread_self(), sizeof all, &all);
  state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK(thread_semaphore)->Arg(0)->Arg(1)->ArgName("cross_core")->UseRealTime();

}  // namespace
