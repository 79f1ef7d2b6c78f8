// Built outside the tree against an installed bobbin, with nothing but
// `pkg-config --cflags --libs bobbin` (scripts/test does it). 100,000 fibers
// each sleep, lock a shared mutex, and exchange a message with a server
// fiber over channels. Then 1,000 fibers on 2 carriers call the plain libc
// usleep(): linked through pkg-config and nothing else, the calls park the
// fibers (bobbin/blocking_calls.h), so they take about one sleep, not 500.
#include <bobbin/bobbin.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

int main() {
  using namespace std::chrono_literals;
  constexpr int kFibers = 100000;
  struct request {
    int value;
    bobbin::channel<int>* reply;
  };
  long total = bobbin::run([] {
    bobbin::channel<request> requests(bobbin::unbounded);
    auto server = bobbin::spawn([&] {
      while (auto r = requests.receive()) r->reply->send(r->value * 2);
    });
    bobbin::mutex mu;
    long locked_sum = 0;
    bobbin::wait_group wg;
    for (int i = 0; i < kFibers; i++) {
      wg.add(1);
      bobbin::spawn([&, i] {
        bobbin::this_fiber::sleep_for(10ms);
        {
          std::lock_guard l(mu);
          locked_sum += 1;
        }
        bobbin::channel<int> reply(1);
        requests.send(request{i, &reply});
        if (auto v = reply.receive(); !v || *v != i * 2) std::abort();
        wg.done();
      }).detach();
    }
    wg.wait();
    requests.close();
    server.join();
    return locked_sum;
  });
  std::printf("consumer: %ld fibers slept, locked and exchanged a message\n", total);
  if (total != kFibers) return 1;

  bobbin::runtime_options two;
  two.carriers = 2;
  auto rt = bobbin::runtime::start(two).value();
  const auto start = std::chrono::steady_clock::now();
  std::vector<bobbin::fiber<void>> sleepers;
  for (int i = 0; i < 1000; i++) sleepers.push_back(rt->spawn([] { usleep(20000); }));
  for (auto& f : sleepers) f.join();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const auto parks = rt->stats().intercepted_parks;
  std::printf("consumer: 1000 fibers in plain usleep(20 ms) took %.0f ms on 2 carriers (%llu parked)\n", ms,
              static_cast<unsigned long long>(parks));
  return parks >= 1000 && ms < 2000 ? 0 : 1;
}
