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
//   openssl_state/alive:N      N fibers alive at once (1 carrier), each
//                              raising and clearing an OpenSSL error, which
//                              makes OpenSSL's per-thread state, kept per
//                              fiber (its pthread keys are: README
//                              "Thread-locals on fibers"), and ends; per
//                              fiber: the state's making and its destructors
//                              at the fiber's end. Against
//   spawn_alive/alive:N        the same fibers without touching OpenSSL.
//                              Whether the cost per fiber grows with N shows
//                              whether OpenSSL's bookkeeping of live
//                              threads scales to many fibers.
#include <benchmark/benchmark.h>

#include <vector>

#include "bobbin/bobbin.h"
#if BOBBIN_HAVE_LIBCRYPTO
#include <openssl/err.h>
#endif

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

template <bool kTouchOpenSsl>
void spawn_alive(benchmark::State& state) {
  const auto n = static_cast<int>(state.range(0));
  bobbin::runtime_options o;
  o.carriers = 1;
  bobbin::run(
      [&] {
        std::vector<bobbin::fiber<>> fs;
        fs.reserve(n);
        for (auto _ : state) {
          bobbin::latch all_touched(n);
          bobbin::latch release(1);
          for (int i = 0; i < n; i++) {
            fs.push_back(bobbin::spawn([&] {
#if BOBBIN_HAVE_LIBCRYPTO
              if constexpr (kTouchOpenSsl) {
                ERR_raise(ERR_LIB_USER, 1);
                ERR_clear_error();
              }
#endif
              all_touched.count_down();
              release.wait();
            }));
          }
          all_touched.wait();
          release.count_down();
          for (auto& f : fs) f.join();
          fs.clear();
        }
      },
      o);
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(spawn_alive<false>)->Name("spawn_alive")->Arg(100)->Arg(1000)->Arg(10000)->ArgName("alive")->UseRealTime();
#if BOBBIN_HAVE_LIBCRYPTO
BENCHMARK(spawn_alive<true>)->Name("openssl_state")->Arg(100)->Arg(1000)->Arg(10000)->ArgName("alive")->UseRealTime();
#endif

}  // namespace
