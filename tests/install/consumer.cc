// Built outside the tree against an installed bobbin, with nothing but
// `pkg-config --cflags --libs bobbin` (scripts/test does it). 100,000 fibers
// each sleep, lock a shared mutex, and exchange a message with a server
// fiber over channels.
#include <bobbin/bobbin.h>

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
  return total == kFibers ? 0 : 1;
}
