// bobbin::scope: join waits for every child; the first failure cancels the
// siblings and is rethrown, with every failure kept; a deadline cancels the
// children and join() reports it; nested scopes inherit the deadline and
// the cancellation; cancel() from a plain thread; cancelling the owner; a
// block left by an exception; many scopes on two carriers.
#include "bobbin/scope.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/bobbin.h"
#include "tests/testing/runtime_fixture.h"

namespace {

using namespace std::chrono_literals;
using bobbin::testing::run_on;
using clock_type = std::chrono::steady_clock;

// A child that waits for a long time unless cancelled; counts both.
void wait_long(std::atomic<int>& cancelled) {
  if (!bobbin::this_fiber::sleep_for(60s)) cancelled++;
}

TEST(ScopeTest, JoinWaitsForEveryChildIncludingThoseSpawnedMeanwhile) {
  run_on(2, [] {
    std::atomic<int> done{0};
    bobbin::scope s;
    for (int i = 0; i < 50; i++) {
      s.spawn([&, i] {
        bobbin::this_fiber::sleep_for(std::chrono::milliseconds(i % 5));
        if (i % 10 == 0) {
          s.spawn([&] {
            bobbin::this_fiber::sleep_for(5ms);
            done++;
          });
        }
        done++;
      });
    }
    s.join();
    EXPECT_EQ(done.load(), 55);
    EXPECT_TRUE(s.exceptions().empty());
    EXPECT_FALSE(s.cancelled());
  });
}

// What a child captured is gone when join() returns, whichever carrier the
// child ended on; and a child that ends before spawn() has returned to the
// spawner (it ran on the other carrier at once) is accounted for.
TEST(ScopeTest, ChildCapturesAreDestroyedBeforeJoinReturns) {
  run_on(2, [] {
    for (int round = 0; round < 200; round++) {
      auto alive = std::make_shared<std::atomic<int>>(0);
      struct token {
        std::shared_ptr<std::atomic<int>> n;
        explicit token(std::shared_ptr<std::atomic<int>> p) : n(std::move(p)) { (*n)++; }
        token(const token& o) : n(o.n) { (*n)++; }
        token(token&& o) noexcept : n(o.n) { (*n)++; }
        ~token() { (*n)--; }
      };
      {
        bobbin::scope s;
        for (int i = 0; i < 8; i++) {
          s.spawn([t = token(alive), i] {
            if (i % 2) bobbin::this_fiber::yield();
          });
        }
        s.join();
        EXPECT_EQ(alive->load(), 0) << "a child's capture outlived join()";
      }
    }
  });
}

TEST(ScopeTest, TheFirstFailureCancelsTheSiblingsAndIsRethrownWithAllFailuresKept) {
  run_on(2, [] {
    std::atomic<int> cancelled{0};
    bobbin::scope s;
    for (int i = 0; i < 8; i++) s.spawn([&] { wait_long(cancelled); });
    // Two siblings that throw once they see the cancellation.
    for (int i = 0; i < 2; i++) {
      s.spawn([&] {
        if (!bobbin::this_fiber::sleep_for(60s)) throw std::runtime_error("cancelled sibling");
      });
    }
    s.spawn([] {
      bobbin::this_fiber::sleep_for(20ms);
      throw std::logic_error("first");
    });
    const auto start = clock_type::now();
    try {
      s.join();
      ADD_FAILURE() << "join() did not rethrow";
    } catch (const std::logic_error& e) {
      EXPECT_STREQ(e.what(), "first");
    }
    EXPECT_LT(clock_type::now() - start, 5s);
    EXPECT_EQ(cancelled.load(), 8);
    EXPECT_TRUE(s.cancelled());
    const auto all = s.exceptions();
    ASSERT_EQ(all.size(), 3u);
    EXPECT_THROW(std::rethrow_exception(all[0]), std::logic_error);  // in the order they ended
    EXPECT_THROW(std::rethrow_exception(all[1]), std::runtime_error);
    EXPECT_THROW(std::rethrow_exception(all[2]), std::runtime_error);
  });
}

TEST(ScopeTest, TheDeadlineCancelsTheChildrenAndJoinReportsTimedOut) {
  run_on(2, [] {
    std::atomic<int> cancelled{0};
    std::atomic<int> read_canceled{0};
    auto l = bobbin::tcp_listener::bind(bobbin::socket_address::loopback(0)).value();
    auto client = bobbin::tcp_stream::connect(l.local_address(), 2s).value();
    auto server = l.accept(2s).value();
    const auto start = clock_type::now();
    bobbin::scope s(bobbin::deadline(100ms));
    for (int i = 0; i < 4; i++) s.spawn([&] { wait_long(cancelled); });
    s.spawn([&] {
      char b[8];
      auto r = server.read_some(std::span<char>(b));
      if (!r && r.error == std::errc::operation_canceled) read_canceled++;
    });
    try {
      s.join();
      ADD_FAILURE() << "join() did not report the deadline";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out);
    }
    const auto took = clock_type::now() - start;
    EXPECT_GE(took, 90ms);
    EXPECT_LT(took, 3s);
    EXPECT_EQ(cancelled.load(), 4);
    EXPECT_EQ(read_canceled.load(), 1);
  });
}

TEST(ScopeTest, ADeadlineThatPassesAfterTheChildrenEndedIsNotReported) {
  run_on(1, [] {
    bobbin::scope s(bobbin::deadline(30ms));
    s.spawn([] {});
    bobbin::this_fiber::sleep_for(80ms);
    s.join();  // no throw: nothing was running when it passed
  });
}

TEST(ScopeTest, NestedScopesInheritTheDeadlineAndTheCancellation) {
  run_on(2, [] {
    std::atomic<int> cancelled{0};
    bobbin::scope outer(bobbin::deadline(150ms));
    for (int i = 0; i < 3; i++) {
      outer.spawn([&] {
        bobbin::scope inner;  // no deadline of its own
        EXPECT_FALSE(inner.until().is_never());
        EXPECT_LE(inner.until().time(), outer.until().time());
        for (int k = 0; k < 3; k++) inner.spawn([&] { wait_long(cancelled); });
        inner.join();
      });
    }
    const auto start = clock_type::now();
    // Whichever timer fires first (the outer scope's, or an inner scope's
    // at the inherited deadline), the outer join reports a timeout.
    try {
      outer.join();
      ADD_FAILURE() << "join() did not report the deadline";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::timed_out);
    }
    EXPECT_LT(clock_type::now() - start, 3s);
    EXPECT_EQ(cancelled.load(), 9);
  });
}

TEST(ScopeTest, CancelFromAPlainThread) {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  std::atomic<bobbin::scope*> shared{nullptr};
  std::atomic<int> cancelled{0};
  auto f = rt->spawn([&] {
    bobbin::scope s;
    for (int i = 0; i < 10; i++) s.spawn([&] { wait_long(cancelled); });
    shared = &s;
    s.join();  // returns normally: cancel() is not a failure
    shared = nullptr;
    return s.cancelled();
  });
  while (shared.load() == nullptr) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(20ms);
  shared.load()->cancel();
  EXPECT_TRUE(f.join());
  EXPECT_EQ(cancelled.load(), 10);
}

TEST(ScopeTest, CancellingTheOwnerCancelsItsScopesAndTheirDescendants) {
  run_on(2, [] {
    std::atomic<int> cancelled{0};
    std::atomic<bool> ready{false};
    auto owner = bobbin::spawn([&] {
      bobbin::scope s;
      for (int i = 0; i < 4; i++) {
        s.spawn([&] {
          bobbin::scope grandchildren;
          for (int k = 0; k < 4; k++) grandchildren.spawn([&] { wait_long(cancelled); });
          grandchildren.join();
        });
      }
      ready = true;
      s.join();
    });
    while (!ready) bobbin::this_fiber::sleep_for(1ms);
    bobbin::this_fiber::sleep_for(30ms);
    const auto asked = clock_type::now();
    owner.request_stop();
    owner.join();
    EXPECT_LT(clock_type::now() - asked, 3s);
    EXPECT_EQ(cancelled.load(), 16);
  });
}

TEST(ScopeTest, ABlockLeftByAnExceptionCancelsAndJoinsItsChildren) {
  run_on(2, [] {
    std::atomic<int> cancelled{0};
    std::atomic<int> destroyed{0};
    struct counted {
      std::atomic<int>* n;
      ~counted() { (*n)++; }
    };
    try {
      bobbin::scope::run([&](bobbin::scope& s) {
        for (int i = 0; i < 5; i++) {
          s.spawn([&] {
            counted c{&destroyed};
            wait_long(cancelled);
          });
        }
        bobbin::this_fiber::sleep_for(10ms);
        throw std::runtime_error("the block failed");
      });
      ADD_FAILURE() << "the exception did not propagate";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "the block failed");
    }
    EXPECT_EQ(cancelled.load(), 5);
    EXPECT_EQ(destroyed.load(), 5);
  });
}

TEST(ScopeTest, AScopeCreatedByACancelledFiberStartsCancelled) {
  run_on(1, [] {
    auto f = bobbin::spawn([] {
      bobbin::this_fiber::sleep_for(60s);  // cancelled here
      bobbin::scope s;
      std::atomic<bool> saw{false};
      s.spawn([&] { saw = !bobbin::this_fiber::sleep_for(60s); });
      s.join();
      return s.cancelled() && saw.load();
    });
    bobbin::this_fiber::sleep_for(20ms);
    f.request_stop();
    EXPECT_TRUE(f.join());
  });
}

// Many scopes at once on two carriers, each with children that fail at
// random (cancelling their siblings), while a plain thread cancels a third
// of the owners (which cancels their scopes): every join returns, and every
// child ends exactly once.
TEST(ScopeTest, ManyScopesRacingFailuresAndCancels) {
  for (int round = 0; round < 3; round++) {
    auto rt = bobbin::runtime::start({.carriers = 2}).value();
    constexpr int kScopes = 100, kChildren = 20;
    std::atomic<int> ended{0}, joined{0}, failed_joins{0};
    std::vector<bobbin::fiber<>> owners;
    for (int i = 0; i < kScopes; i++) {
      owners.push_back(rt->spawn([&, i] {
        bobbin::scope s;
        for (int k = 0; k < kChildren; k++) {
          s.spawn([&, i, k] {
            struct end_count {
              std::atomic<int>* n;
              ~end_count() { (*n)++; }
            } count{&ended};
            if ((i * 7 + k + round) % 13 == 0) {
              bobbin::this_fiber::sleep_for(std::chrono::milliseconds(k % 3));
              throw std::runtime_error("child failed");
            }
            bobbin::this_fiber::sleep_for(std::chrono::milliseconds(5 + k % 7));
          });
        }
        try {
          s.join();
        } catch (const std::runtime_error&) {
          failed_joins++;
        }
        joined++;
      }));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2 + round * 2));
    for (int i = 0; i < kScopes; i += 3) owners[i].request_stop();
    for (auto& o : owners) o.join();
    EXPECT_EQ(joined.load(), kScopes);
    EXPECT_EQ(ended.load(), kScopes * kChildren);
    EXPECT_GT(failed_joins.load(), 0);
  }
}

}  // namespace
