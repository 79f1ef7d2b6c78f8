// Per-fiber storage against per-thread storage, one access per iteration:
//   thread_local_access        ++ on a thread_local long, on a plain thread
//                              (the compiler computes its address once, as
//                              in any user's loop)
//   fiber_local_get/fiber:1    ++ on a bobbin::fiber_local<long> on a fiber
//                              (1 carrier): one call into the runtime each
//   fiber_local_get/fiber:0    the same on a plain thread (its per-thread
//                              value)
//   fiber_local_first_get      spawn + join of a fiber that makes its value
//                              (allocates it and the fiber's table) and
//                              destroys it at its end
//   spawn_join_without_local   the same fiber without the fiber_local, in the
//                              same binary: the difference is what a first
//                              get() costs
#include <benchmark/benchmark.h>

#include "bobbin/bobbin.h"

namespace {

thread_local long tls_counter = 0;

void thread_local_access(benchmark::State& state) {
  for (auto _ : state) {
    long& v = tls_counter;
    ++v;
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(thread_local_access);

bobbin::fiber_local<long> fiber_counter;

void fiber_local_get(benchmark::State& state) {
  auto body = [&] {
    for (auto _ : state) {
      long& v = *fiber_counter;  // one get() per iteration
      ++v;
      benchmark::DoNotOptimize(v);
    }
  };
  if (state.range(0) == 0) {
    body();
  } else {
    bobbin::runtime_options o;
    o.carriers = 1;
    bobbin::run(body, o);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(fiber_local_get)->Arg(1)->Arg(0)->ArgName("fiber")->UseRealTime();

void fiber_local_first_get(benchmark::State& state) {
  bobbin::runtime_options o;
  o.carriers = 1;
  bobbin::run(
      [&] {
        for (auto _ : state) {
          bobbin::spawn([] { benchmark::DoNotOptimize(++*fiber_counter); }).join();
        }
      },
      o);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(fiber_local_first_get)->UseRealTime();

void spawn_join_without_local(benchmark::State& state) {
  bobbin::runtime_options o;
  o.carriers = 1;
  long counter = 0;
  bobbin::run(
      [&] {
        for (auto _ : state) {
          bobbin::spawn([&] { benchmark::DoNotOptimize(++counter); }).join();
        }
      },
      o);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(spawn_join_without_local)->UseRealTime();

}  // namespace
