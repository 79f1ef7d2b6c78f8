// Shared by the tests: a pool of plain threads that fulfils each submitted
// value's promise (with value + 1) a fixed delay after it was handed over:
// what a fiber gets back from a thread pool doing blocking work, or from a
// library's own worker threads.
#ifndef BOBBIN_TESTS_TESTING_DELAYED_POOL_H_
#define BOBBIN_TESTS_TESTING_DELAYED_POOL_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

namespace bobbin::testing {

class delayed_pool {
 public:
  delayed_pool(int threads, std::chrono::milliseconds delay) : delay_(delay) {
    for (int i = 0; i < threads; i++) threads_.emplace_back([this] { run(); });
  }
  ~delayed_pool() {
    {
      std::lock_guard l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  delayed_pool(const delayed_pool&) = delete;
  delayed_pool& operator=(const delayed_pool&) = delete;

  // A future that becomes `v + 1` about `delay` from now.
  std::future<long> submit(long v) {
    std::promise<long> p;
    auto f = p.get_future();
    {
      std::lock_guard l(mu_);
      jobs_.push_back(job{std::chrono::steady_clock::now() + delay_, v, std::move(p)});
    }
    cv_.notify_one();
    return f;
  }

 private:
  struct job {
    std::chrono::steady_clock::time_point due;
    long value;
    std::promise<long> promise;
  };
  void run() {
    std::unique_lock l(mu_);
    for (;;) {
      cv_.wait(l, [&] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job j = std::move(jobs_.front());
      jobs_.pop_front();
      l.unlock();
      std::this_thread::sleep_until(j.due);
      j.promise.set_value(j.value + 1);
      l.lock();
    }
  }

  std::chrono::milliseconds delay_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<job> jobs_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace bobbin::testing

#endif  // BOBBIN_TESTS_TESTING_DELAYED_POOL_H_
