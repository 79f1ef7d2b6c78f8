// Park and wake, side by side. One iteration is a round trip: a message sent
// and its answer received, each side parking in between.
//   bobbin_channel/carriers:1  both fibers on one carrier
//   bobbin_channel/carriers:2  pinger and ponger free to run on two carriers
//   boost_fiber_channel        Boost.Fiber buffered_channel, one thread
//   bobbin_mutex_handoff       N fibers on 2 carriers contending for one
//                              bobbin::mutex, a short critical section each
//                              (items: every fiber's lock/unlock pairs;
//                              an iteration: each fiber locks 2,000 times)
#include <benchmark/benchmark.h>

#include <atomic>
#include <boost/fiber/all.hpp>
#include <mutex>
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

void bobbin_mutex_handoff(benchmark::State& state) {
  const int contenders = static_cast<int>(state.range(0));
  constexpr long kLocksEach = 2000;
  bobbin::runtime_options o;
  o.carriers = 2;
  bobbin::run([&] {
    bobbin::mutex mu;
    long shared = 0;
    for (auto _ : state) {
      // All contenders start together and each takes the lock kLocksEach
      // times; the iteration ends when the last one is done.
      std::vector<bobbin::fiber<>> fs;
      for (int i = 0; i < contenders; i++) {
        fs.push_back(bobbin::spawn([&] {
          for (long n = 0; n < kLocksEach; n++) {
            std::lock_guard l(mu);
            shared++;
          }
        }));
      }
      for (auto& f : fs) f.join();
    }
    benchmark::DoNotOptimize(shared);
  }, o);
  state.SetItemsProcessed(state.iterations() * contenders * kLocksEach);
}
BENCHMARK(bobbin_mutex_handoff)->Arg(2)->Arg(16)->ArgName("fibers")->UseRealTime();

}  // namespace
