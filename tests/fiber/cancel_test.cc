// Cancellation (fiber::request_stop): every cancellable kind of wait (join's
// through fiber::wait_until), parked
// on two carriers, returns its "canceled" outcome promptly and leaves the
// object usable; a fiber cancelled before it waits does not park; the
// waits that are not interrupted (mutex::lock, join, ...) are not; libc
// calls a library makes on a fiber fail with ECANCELED; cancels racing
// notifies lose nothing; a queued offloaded call is taken back; runtime shutdown cancels parked fibers and their
// destructors run.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "bobbin/bobbin.h"
#include "tests/testing/runtime_fixture.h"

namespace {

using namespace std::chrono_literals;
using bobbin::channel_status;
using bobbin::testing::run_on;
using clock_type = std::chrono::steady_clock;

// Runs `wait` on a new fiber, lets it park, cancels it, and checks that
// it returned within `prompt` of the request and that `wait` saw the
// cancellation (it returns true when it did).
void expect_cancelled_promptly(const std::function<bool()>& wait, std::chrono::milliseconds prompt = 500ms) {
  std::atomic<bool> entered{false};
  auto f = bobbin::spawn([&] {
    entered = true;
    return wait();
  });
  while (!entered) bobbin::this_fiber::sleep_for(1ms);
  bobbin::this_fiber::sleep_for(30ms);  // let it park (on either carrier)
  const auto asked = clock_type::now();
  f.request_stop();
  const bool saw = f.join();
  EXPECT_TRUE(saw) << "the wait did not report the cancellation";
  EXPECT_LT(clock_type::now() - asked, prompt);
}

struct socket_pair {
  bobbin::tcp_listener listener;
  bobbin::tcp_stream client, server;
  socket_pair() {
    listener = bobbin::tcp_listener::bind(bobbin::socket_address::loopback(0)).value();
    client = bobbin::tcp_stream::connect(listener.local_address(), 2s).value();
    server = listener.accept(2s).value();
  }
};

bool is_canceled(std::error_code e) { return e == std::errc::operation_canceled; }

TEST(CancelTest, SocketReadReturnsOperationCanceledAndTheStreamStaysUsable) {
  run_on(2, [] {
    socket_pair p;
    char buf[16];
    expect_cancelled_promptly([&] {
      auto r = p.server.read_some(std::span<char>(buf));
      return !r && is_canceled(r.error);
    });
    // Usable afterwards, from a fiber that is not cancelled.
    ASSERT_TRUE(p.client.write_all("hello"));
    auto r = p.server.read_exact(std::span<char>(buf, 5), 2s);
    ASSERT_TRUE(r);
    EXPECT_EQ(std::string(buf, 5), "hello");
  });
}

TEST(CancelTest, AcceptReturnsOperationCanceledAndTheListenerStillAccepts) {
  run_on(2, [] {
    auto l = bobbin::tcp_listener::bind(bobbin::socket_address::loopback(0)).value();
    expect_cancelled_promptly([&] {
      auto s = l.accept();
      return !s && is_canceled(s.error());
    });
    auto c = bobbin::tcp_stream::connect(l.local_address(), 2s).value();
    EXPECT_TRUE(l.accept(2s).has_value());
  });
}

TEST(CancelTest, ConnectReturnsOperationCanceled) {
  run_on(2, [] {
    // A listener whose accept queue is full and never drained: the kernel
    // drops further SYNs, so a connect waits (retransmitting) until
    // something ends it.
    auto l = bobbin::tcp_listener::bind(bobbin::socket_address::loopback(0), /*backlog=*/0).value();
    std::vector<bobbin::tcp_stream> filling;
    bool blocked = false;
    for (int i = 0; i < 16 && !blocked; i++) {
      auto s = bobbin::tcp_stream::connect(l.local_address(), 200ms);
      if (s) filling.push_back(std::move(*s));
      else blocked = s.error() == std::errc::timed_out;
    }
    ASSERT_TRUE(blocked) << "could not fill the accept queue";
    expect_cancelled_promptly([&] {
      auto s = bobbin::tcp_stream::connect(l.local_address());
      return !s && is_canceled(s.error());
    });
  });
}

TEST(CancelTest, SleepReturnsEarly) {
  run_on(2, [] {
    expect_cancelled_promptly([] { return !bobbin::this_fiber::sleep_for(60s); });
  });
}

TEST(CancelTest, TimedMutexConditionSemaphoreLatchAndWaitGroupWaitsReturnFalse) {
  run_on(2, [] {
    bobbin::mutex mu;
    std::unique_lock held(mu);
    expect_cancelled_promptly([&] {
      const bool got = mu.try_lock_until(bobbin::deadline::never());
      return !got && bobbin::this_fiber::stop_requested();
    });
    held.unlock();
    // Usable: another fiber takes it at once.
    EXPECT_TRUE(bobbin::spawn([&] { return mu.try_lock_for(1s) && (mu.unlock(), true); }).join());

    bobbin::condition_variable cv;
    expect_cancelled_promptly([&] {
      std::unique_lock lk(mu);
      const auto s = cv.wait_until(lk, bobbin::deadline::never());
      const bool relocked = lk.owns_lock();
      return s == std::cv_status::timeout && relocked;
    });

    bobbin::semaphore sem(0);
    expect_cancelled_promptly([&] { return !sem.try_acquire_until(bobbin::deadline::never()); });
    sem.release();
    EXPECT_TRUE(bobbin::spawn([&] { return sem.try_acquire_for(1s); }).join());

    bobbin::latch latch(1);
    expect_cancelled_promptly([&] { return !latch.wait_until(bobbin::deadline::never()); });
    latch.count_down();
    EXPECT_TRUE(latch.try_wait());

    bobbin::wait_group wg;
    wg.add(1);
    expect_cancelled_promptly([&] { return !wg.wait_until(bobbin::deadline::never()); });
    wg.done();
    wg.wait();
  });
}

TEST(CancelTest, ChannelSendAndReceiveReturnCanceledAndTheValueStaysWithTheSender) {
  run_on(2, [] {
    bobbin::channel<std::unique_ptr<int>> ch(0);
    expect_cancelled_promptly([&] {
      auto p = std::make_unique<int>(5);
      const auto s = ch.send(std::move(p));
      return s == channel_status::canceled && p != nullptr && *p == 5;
    });
    expect_cancelled_promptly([&] {
      std::unique_ptr<int> out;
      return ch.receive(out) == channel_status::canceled && out == nullptr;
    });
    expect_cancelled_promptly([&] { return !ch.receive().has_value(); });
    // Usable: a rendezvous between two fibers that are not cancelled.
    auto rx = bobbin::spawn([&] { return ch.receive(); });
    ASSERT_EQ(ch.send(std::make_unique<int>(9), bobbin::deadline(2s)), channel_status::ok);
    auto got = rx.join();
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(**got, 9);
  });
}

TEST(CancelTest, WaitingForAFiberReturnsFalseAndTheHandleStaysJoinable) {
  run_on(2, [] {
    bobbin::latch release(1);
    auto worker = bobbin::spawn([&] {
      release.wait();
      return 42;
    });
    expect_cancelled_promptly([&] { return !worker.wait_until(bobbin::deadline::never()); });
    EXPECT_FALSE(worker.wait_until(bobbin::deadline(10ms)));  // a deadline too
    release.count_down();
    EXPECT_TRUE(worker.wait_until(bobbin::deadline(5s)));
    EXPECT_EQ(worker.join(), 42);
  });
}

TEST(CancelTest, AFiberCancelledBeforeItWaitsDoesNotPark) {
  run_on(2, [] {
    bobbin::latch go(1);
    bobbin::channel<int> ch(0);
    auto f = bobbin::spawn([&] {
      go.wait();  // not cancellable: the request arrives while it waits here
      const auto start = clock_type::now();
      int v;
      bool all = ch.receive(v, bobbin::deadline(10s)) == channel_status::canceled;
      all = all && !bobbin::this_fiber::sleep_for(10s);
      char b;
      int fds[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return false;
      all = all && ::read(fds[0], &b, 1) == -1 && errno == ECANCELED;
      ::close(fds[0]);
      ::close(fds[1]);
      return all && clock_type::now() - start < 1s && bobbin::this_fiber::stop_requested();
    });
    bobbin::this_fiber::sleep_for(20ms);
    f.request_stop();
    f.request_stop();  // idempotent
    go.count_down();
    EXPECT_TRUE(f.join());
  });
}

TEST(CancelTest, WaitsThatCannotReportItAreNotInterrupted) {
  run_on(2, [] {
    bobbin::mutex mu;
    bobbin::semaphore sem(0);
    std::unique_lock held(mu);
    std::atomic<int> stage{0};
    auto f = bobbin::spawn([&] {
      stage = 1;
      mu.lock();  // never interrupted: returns only when it holds the lock
      mu.unlock();
      stage = 2;
      sem.acquire();  // likewise: returns only with a permit
      stage = 3;
    });
    while (stage != 1) bobbin::this_fiber::sleep_for(1ms);
    bobbin::this_fiber::sleep_for(30ms);
    f.request_stop();
    bobbin::this_fiber::sleep_for(50ms);
    EXPECT_EQ(stage.load(), 1);
    held.unlock();
    while (stage != 2) bobbin::this_fiber::sleep_for(1ms);
    bobbin::this_fiber::sleep_for(50ms);
    EXPECT_EQ(stage.load(), 2);
    sem.release();
    f.join();
    EXPECT_EQ(stage.load(), 3);
  });
}

TEST(CancelTest, AQueuedOffloadIsTakenBackAndARunningOneFinishes) {
  auto rt = bobbin::runtime::start({.carriers = 2, .offload_threads = 1}).value();
  std::atomic<bool> running{false}, queued_ran{false};
  // The pool's one thread is busy with this call when the fiber is cancelled.
  auto busy = rt->spawn([&] {
    return bobbin::offload([&] {
      running = true;
      std::this_thread::sleep_for(300ms);
      return 7;
    });
  });
  while (!running) std::this_thread::sleep_for(1ms);
  auto queued = rt->spawn([&] {
    try {
      bobbin::offload([&] { queued_ran = true; });
      return false;
    } catch (const std::system_error& e) {
      return e.code() == std::errc::operation_canceled;
    }
  });
  std::this_thread::sleep_for(30ms);
  const auto asked = clock_type::now();
  queued.request_stop();
  EXPECT_TRUE(queued.join());
  EXPECT_LT(clock_type::now() - asked, 200ms);
  busy.request_stop();
  EXPECT_EQ(busy.join(), 7);  // a running call is not interrupted
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(queued_ran.load()) << "a withdrawn call ran anyway";
  // The pool still serves.
  EXPECT_EQ(rt->spawn([] { return bobbin::offload([] { return 3; }); }).join(), 3);
}

TEST(CancelTest, LibcCallsOnAFiberFailWithEcanceled) {
  run_on(2, [] {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    expect_cancelled_promptly([&] {
      char b;
      return ::read(fds[0], &b, 1) == -1 && errno == ECANCELED;
    });
    expect_cancelled_promptly([&] {
      pollfd p{fds[0], POLLIN, 0};
      return ::poll(&p, 1, -1) == -1 && errno == ECANCELED;
    });
    expect_cancelled_promptly([&] { return ::usleep(30'000'000) == -1 && errno == ECANCELED; });
    // The socket still works for a fiber that is not cancelled.
    ASSERT_EQ(::write(fds[1], "x", 1), 1);
    char b = 0;
    EXPECT_EQ(::read(fds[0], &b, 1), 1);
    EXPECT_EQ(b, 'x');
    ::close(fds[0]);
    ::close(fds[1]);
  });
}

TEST(CancelTest, TheFibersStopTokenIsStoppedWithIt) {
  run_on(2, [] {
    std::atomic<int> callbacks{0};
    auto f = bobbin::spawn([&] {
      std::stop_token t = bobbin::this_fiber::get_stop_token();
      std::stop_callback cb(t, [&] { callbacks++; });
      const bool before = t.stop_requested();
      bobbin::this_fiber::sleep_for(60s);
      return !before && t.stop_requested();
    });
    bobbin::this_fiber::sleep_for(30ms);
    f.request_stop();
    EXPECT_TRUE(f.join());
    EXPECT_EQ(callbacks.load(), 1);
    // Asked for after the cancellation: already stopped.
    auto g = bobbin::spawn([] {
      bobbin::this_fiber::sleep_for(60s);
      return bobbin::this_fiber::get_stop_token().stop_requested();
    });
    bobbin::this_fiber::sleep_for(20ms);
    g.request_stop();
    EXPECT_TRUE(g.join());
  });
  EXPECT_FALSE(bobbin::this_fiber::get_stop_token().stop_possible());  // off a fiber
}

TEST(CancelTest, CancellingFromAPlainThread) {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  bobbin::channel<int> ch(0);
  auto f = rt->spawn([&] {
    int v;
    return ch.receive(v);
  });
  std::this_thread::sleep_for(30ms);
  f.request_stop();
  EXPECT_EQ(f.join(), channel_status::canceled);
}

// The channel's capacity for the race below: rendezvous and buffered both.
std::size_t round_capacity() {
  static std::atomic<int> n{0};
  return n++ % 2 == 0 ? 0 : 4;
}

// Cancels race with hand-overs: senders and receivers on two carriers, a
// random half of them cancelled at random moments. Every value reported
// sent is received exactly once; a cancelled send keeps its value.
TEST(CancelTest, CancelsRacingNotifiesLoseNothing) {
  for (int round = 0; round < 5; round++) {
    run_on(2, [] {
      constexpr int kPairs = 200;
      bobbin::channel<int> ch(round_capacity());
      std::atomic<long> sent_sum{0}, received_sum{0};
      std::atomic<int> sent{0}, received{0};
      std::vector<bobbin::fiber<>> senders, receivers;
      for (int i = 0; i < kPairs; i++) {
        senders.push_back(bobbin::spawn([&, i] {
          for (int k = 0; k < 50; k++) {
            int v = i * 1000 + k + 1;
            if (ch.send(std::move(v)) != channel_status::ok) return;
            sent++;
            sent_sum += i * 1000 + k + 1;
          }
        }));
        receivers.push_back(bobbin::spawn([&] {
          for (;;) {
            int v;
            if (ch.receive(v, bobbin::deadline(200ms)) != channel_status::ok) return;
            received++;
            received_sum += v;
          }
        }));
      }
      std::mt19937 rng(42);
      for (int i = 0; i < kPairs; i++) {
        if (rng() % 2) senders[i].request_stop();
        if (rng() % 4 == 0) receivers[i].request_stop();
        if (i % 20 == 0) bobbin::this_fiber::yield();
      }
      for (auto& s : senders) s.join();
      for (auto& r : receivers) r.join();
      // Receivers that were not cancelled drain what is left.
      int v;
      while (ch.try_receive(v) == channel_status::ok) {
        received++;
        received_sum += v;
      }
      EXPECT_EQ(sent.load(), received.load());
      EXPECT_EQ(sent_sum.load(), received_sum.load());
    });
  }
}

struct counted {
  std::atomic<int>* destroyed;
  ~counted() { destroyed->fetch_add(1); }
};

TEST(CancelTest, ShutdownCancelsParkedFibersAndTheirDestructorsRun) {
  const int n = bobbin::testing::max_live_fibers(10000);
  std::atomic<int> destroyed{0}, parked{0};
  bobbin::channel<int> ch(0);
  bobbin::mutex mu;
  bobbin::condition_variable cv;
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  clock_type::time_point asked;
  {
    auto rt = bobbin::runtime::start({.carriers = 2, .shutdown_grace = 10s}).value();
    for (int i = 0; i < n; i++) {
      rt->spawn([&, i] {
          counted c{&destroyed};
          parked++;
          switch (i % 4) {
            case 0: {
              int v;
              (void)ch.receive(v);
              break;
            }
            case 1: bobbin::this_fiber::sleep_for(1h); break;
            case 2: {
              char b;
              (void)::read(fds[0], &b, 1);
              break;
            }
            case 3: {
              std::unique_lock lk(mu);
              (void)cv.wait_until(lk, bobbin::deadline::never());
              break;
            }
          }
        }).detach();
    }
    const auto until = clock_type::now() + 60s;
    while (parked < n && clock_type::now() < until) std::this_thread::sleep_for(1ms);
    ASSERT_EQ(parked.load(), n);
    std::this_thread::sleep_for(50ms);
    asked = clock_type::now();
  }  // ~runtime: shutdown
  EXPECT_EQ(destroyed.load(), n);
  EXPECT_LT(clock_type::now() - asked, 10s);
  ::close(fds[0]);
  ::close(fds[1]);
}

// Code often leaves through an exception once cancelled (`.value()` on an
// operation_canceled result throws). From a detached fiber that ends the
// fiber, not the process: quietly for operation_canceled, with a line on
// stderr for anything else.
TEST(CancelTest, ADetachedFiberLeavingByExceptionAfterCancellationDoesNotEndTheProcess) {
  testing::internal::CaptureStderr();
  std::atomic<int> started{0};
  {
    auto rt = bobbin::runtime::start({.carriers = 2}).value();
    auto l = std::make_shared<bobbin::tcp_listener>(
        bobbin::tcp_listener::bind(bobbin::socket_address::loopback(0)).value());
    rt->spawn([l, &started] {
        started++;
        auto conn = l->accept().value();  // throws system_error(operation_canceled) at shutdown
      }, {.name = "acceptor"}).detach();
    rt->spawn([&started] {
        started++;
        if (!bobbin::this_fiber::sleep_for(1h)) throw std::runtime_error("gave up on shutdown");
      }, {.name = "sleeper"}).detach();
    while (started < 2) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(30ms);
  }  // shutdown cancels both; the process goes on
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err.find("\"acceptor\""), std::string::npos) << err;
  EXPECT_NE(err.find("\"sleeper\" ended by an exception after it was cancelled: gave up on shutdown"),
            std::string::npos)
      << err;
  EXPECT_EQ(err.find("abandoned"), std::string::npos) << err;
}

TEST(CancelTest, ShutdownNamesTheFibersThatDidNotReturnInTime) {
  bobbin::mutex mu;
  std::unique_lock held(mu);
  testing::internal::CaptureStderr();
  {
    auto rt = bobbin::runtime::start({.carriers = 1, .shutdown_grace = 100ms}).value();
    rt->spawn([&] { std::lock_guard g(mu); }, {.name = "stuck-in-lock"}).detach();
    std::this_thread::sleep_for(30ms);
  }
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("shutdown abandoned 1 fiber(s)"), std::string::npos) << err;
  EXPECT_NE(err.find("\"stuck-in-lock\" parked in mutex"), std::string::npos) << err;
  held.unlock();
}

}  // namespace
