// Creating concurrency, side by side.
//   spawn_join/*          start an empty unit of work and wait for it:
//                         bobbin fiber (1 carrier), std::thread, Boost.Fiber
//   skynet_*              the skynet benchmark: a 10-ary tree of fibers whose
//                         leaves return their number, summed up the tree;
//                         bobbin (each node joins its children) and
//                         Boost.Fiber (one thread), per fiber created
#include <benchmark/benchmark.h>

#include <boost/fiber/all.hpp>
#include <thread>
#include <vector>

#include "bobbin/bobbin.h"

namespace {

void spawn_join_bobbin(benchmark::State& state) {
  bobbin::runtime_options o;
  o.carriers = 1;
  bobbin::run([&] {
    for (auto _ : state) bobbin::spawn([] {}).join();
  }, o);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(spawn_join_bobbin)->UseRealTime();

void spawn_join_std_thread(benchmark::State& state) {
  for (auto _ : state) std::thread([] {}).join();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(spawn_join_std_thread)->UseRealTime();

void spawn_join_boost_fiber(benchmark::State& state) {
  for (auto _ : state) boost::fibers::fiber([] {}).join();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(spawn_join_boost_fiber)->UseRealTime();

long skynet_bobbin(long num, long size, long div) {
  if (size == 1) return num;
  std::vector<bobbin::fiber<long>> children;
  children.reserve(static_cast<size_t>(div));
  const long sub = size / div;
  for (long i = 0; i < div; i++) {
    children.push_back(bobbin::spawn([=] { return skynet_bobbin(num + i * sub, sub, div); }));
  }
  long sum = 0;
  for (auto& c : children) sum += c.join();
  return sum;
}

long skynet_sum(long leaves) { return leaves * (leaves - 1) / 2; }
long skynet_fibers(long leaves) {
  long n = 0;
  for (long level = leaves; level >= 1; level /= 10) n += level;
  return n;
}

void skynet_bobbin(benchmark::State& state) {
  const long leaves = state.range(0);
  bobbin::runtime_options o;
  o.carriers = static_cast<unsigned>(state.range(1));
  o.stack_size = 16 * 1024;  // leaves are tiny; Boost.Fiber gets the same below
  bobbin::run([&] {
    for (auto _ : state) {
      long sum = skynet_bobbin(0, leaves, 10);
      if (sum != skynet_sum(leaves)) state.SkipWithError("wrong sum");
    }
  }, o);
  state.SetItemsProcessed(state.iterations() * skynet_fibers(leaves));
}
BENCHMARK(skynet_bobbin)
    ->Args({100000, 1})
    ->Args({1000000, 1})
    ->Args({1000000, 2})
    ->ArgNames({"leaves", "carriers"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Boost.Fiber's own pooled allocator, so that it reuses stacks as bobbin's
// pool does (its default fixedsize_stack maps and unmaps one per fiber).
boost::fibers::pooled_fixedsize_stack& boost_stacks() {
  static boost::fibers::pooled_fixedsize_stack pool(16 * 1024);
  return pool;
}

long skynet_boost(long num, long size, long div) {
  if (size == 1) return num;
  std::vector<boost::fibers::fiber> children;
  std::vector<long> results(static_cast<size_t>(div));
  children.reserve(static_cast<size_t>(div));
  const long sub = size / div;
  for (long i = 0; i < div; i++) {
    children.emplace_back(std::allocator_arg, boost_stacks(),
                          [&results, i, num, sub, div] { results[static_cast<size_t>(i)] = skynet_boost(num + i * sub, sub, div); });
  }
  long sum = 0;
  for (long i = 0; i < div; i++) {
    children[static_cast<size_t>(i)].join();
    sum += results[static_cast<size_t>(i)];
  }
  return sum;
}

// 100,000 leaves only: on this machine Boost.Fiber needs 50-90 s for the
// 1,000,000-leaf tree (time grows faster than the fiber count), which does
// not fit scripts/bench's budget. Compare per fiber at 100,000 leaves.
void skynet_boost_fiber(benchmark::State& state) {
  const long leaves = state.range(0);
  for (auto _ : state) {
    long sum = skynet_boost(0, leaves, 10);
    if (sum != skynet_sum(leaves)) state.SkipWithError("wrong sum");
  }
  state.SetItemsProcessed(state.iterations() * skynet_fibers(leaves));
}
BENCHMARK(skynet_boost_fiber)->Arg(100000)->ArgName("leaves")->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
