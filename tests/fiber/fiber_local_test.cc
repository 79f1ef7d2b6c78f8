// bobbin::fiber_local<T> (bobbin/fiber_local.h): one value per fiber, made
// on first use, destroyed when the fiber ends; one per thread off a fiber.
#include "bobbin/fiber_local.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/fiber.h"
#include "bobbin/runtime.h"
#include "bobbin/this_fiber.h"
#include "tests/testing/runtime_fixture.h"

namespace {

using namespace std::chrono_literals;

// Counts live instances, and records destruction order by tag.
struct counted {
  static inline std::atomic<int> made{0};
  static inline std::atomic<int> destroyed{0};
  int tag = 0;
  counted() { made++; }
  explicit counted(int t) : tag(t) { made++; }
  counted(const counted& o) : tag(o.tag) { made++; }
  ~counted() { destroyed++; }
  static void reset_counts() {
    made = 0;
    destroyed = 0;
  }
};

TEST(FiberLocalTest, EachFiberKeepsItsOwnValueAcrossParksOnSeveralCarriers) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  bobbin::fiber_local<long> mine;
  std::atomic<int> wrong{0};
  std::atomic<int> moved{0};  // fibers that resumed on another carrier at least once
  std::vector<bobbin::fiber<>> fs;
  for (long i = 0; i < 200; i++) {
    fs.push_back(rt->spawn([&, i] {
      EXPECT_EQ(*mine, 0) << "not value-initialized";
      *mine = i;
      const int first = bobbin::this_fiber::carrier_index();
      bool seen_other = false;
      for (int j = 0; j < 50; j++) {
        if (j % 2 == 0) {
          bobbin::this_fiber::yield();
        } else {
          bobbin::this_fiber::sleep_for(50us);
        }
        seen_other |= bobbin::this_fiber::carrier_index() != first;
        if (mine.get() != i) wrong++;
      }
      if (seen_other) moved++;
    }));
  }
  for (auto& f : fs) f.join();
  EXPECT_EQ(wrong.load(), 0);
  RecordProperty("fibers_that_changed_carrier", moved.load());
}

TEST(FiberLocalTest, MadeOnFirstUseAndDestroyedBeforeJoinReturns) {
  counted::reset_counts();
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  bobbin::fiber_local<counted> local;
  std::vector<bobbin::fiber<>> fs;
  for (int i = 0; i < 20; i++) {
    fs.push_back(rt->spawn([&, i] {
      if (i % 2 == 0) return;  // never touches it: nothing is made
      EXPECT_FALSE(local.has_value());
      local->tag = i;
      EXPECT_TRUE(local.has_value());
      bobbin::this_fiber::sleep_for(1ms);
      EXPECT_EQ(local->tag, i);
    }));
  }
  for (auto& f : fs) f.join();
  EXPECT_EQ(counted::made.load(), 10);
  EXPECT_EQ(counted::destroyed.load(), 10) << "a value outlived its fiber's join";
}

TEST(FiberLocalTest, InitialValueIsMadeOnTheFiberAndAThrowStoresNothing) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  std::atomic<int> calls{0};
  std::atomic<bool> fail{true};
  bobbin::fiber_local<std::string> local([&] {
    calls++;
    bobbin::this_fiber::sleep_for(100us);  // an initializer may park
    if (fail.exchange(false)) throw std::runtime_error("first try fails");
    return std::string("fiber ") + std::to_string(bobbin::this_fiber::id());
  });
  auto r = rt->spawn([&] {
          bool threw = false;
          try {
            local.get();
          } catch (const std::runtime_error&) {
            threw = true;
          }
          const bool empty_after_throw = !local.has_value();
          const std::string v = *local;  // made now
          return std::make_tuple(threw, empty_after_throw, v == "fiber " + std::to_string(bobbin::this_fiber::id()));
        }).join();
  EXPECT_TRUE(std::get<0>(r));
  EXPECT_TRUE(std::get<1>(r));
  EXPECT_TRUE(std::get<2>(r));
  EXPECT_EQ(calls.load(), 2);
}

TEST(FiberLocalTest, OffAFiberItIsOneValuePerThreadDestroyedAtThreadExit) {
  counted::reset_counts();
  bobbin::fiber_local<counted> local;
  local->tag = -1;  // this thread's
  std::vector<std::thread> ts;
  std::atomic<int> wrong{0};
  for (int i = 0; i < 4; i++) {
    ts.emplace_back([&, i] {
      if (local->tag != 0) wrong++;
      local->tag = i + 1;
      std::this_thread::sleep_for(1ms);
      if (local->tag != i + 1) wrong++;
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(local->tag, -1);
  EXPECT_EQ(counted::made.load(), 5);
  EXPECT_EQ(counted::destroyed.load(), 4) << "each thread's value goes with its thread";
  local.reset();
  EXPECT_EQ(counted::destroyed.load(), 5);
  EXPECT_FALSE(local.has_value());
}

bobbin::fiber_local<counted> exit_local;  // used by thread_local destructors below

struct uses_exit_local_at_exit {
  ~uses_exit_local_at_exit() { exit_local->tag = 9; }
};

TEST(FiberLocalTest, AThreadLocalsDestructorMayUseAFiberLocalAtThreadExit) {
  // A C++ thread_local made before the thread's first fiber_local value is
  // destroyed after anything made later: its destructor still finds the
  // thread's value, which is destroyed after it, once.
  counted::reset_counts();
  std::thread t([] {
    thread_local uses_exit_local_at_exit early;
    (void)early;
    exit_local->tag = 1;
  });
  t.join();
  EXPECT_EQ(counted::made.load(), 1) << "the destructor found no table and made another value";
  EXPECT_EQ(counted::destroyed.load(), 1);
}

TEST(FiberLocalTest, ValuesAreDestroyedLastMadeFirstAndDestructorsMayUseOthers) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  std::vector<int> order;  // one fiber at a time touches it
  struct logger {
    std::vector<int>* log = nullptr;
    int tag = 0;
    ~logger() {
      if (log != nullptr) log->push_back(tag);
    }
  };
  bobbin::fiber_local<logger> a, b;
  bobbin::fiber_local<logger> late;  // made by b's destructor
  struct uses_late {
    bobbin::fiber_local<logger>* late = nullptr;
    std::vector<int>* log = nullptr;
    ~uses_late() {
      if (late != nullptr) {
        (*late)->log = log;
        (*late)->tag = 3;
      }
    }
  };
  bobbin::fiber_local<uses_late> c;
  rt->spawn([&] {
      *b = logger{nullptr, 2};
      b->log = &order;
      *a = logger{nullptr, 1};
      a->log = &order;
      c->late = &late;
      c->log = &order;
    }).join();
  // Made b, a, c: destroyed c (which makes `late`), then late, a, b.
  EXPECT_EQ(order, (std::vector<int>{3, 1, 2}));
}

TEST(FiberLocalTest, AReusedSlotNeverShowsADestroyedFiberLocalsValue) {
  counted::reset_counts();
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  auto first = std::make_unique<bobbin::fiber_local<counted>>();
  std::atomic<int> stage{0};
  auto f = rt->spawn([&] {
    (*first)->tag = 7;
    stage = 1;
    while (stage.load() != 2) bobbin::this_fiber::sleep_for(1ms);
    return std::make_pair(0, 0);
  });
  while (stage.load() != 1) std::this_thread::sleep_for(1ms);
  first.reset();  // the fiber still holds its value
  bobbin::fiber_local<counted> second;  // takes the freed slot
  auto g = rt->spawn([&] {
    // A fresh fiber: nothing in the slot.
    return second->tag;
  });
  EXPECT_EQ(g.join(), 0);
  stage = 2;
  f.join();
  EXPECT_EQ(counted::made.load(), 2);
  EXPECT_EQ(counted::destroyed.load(), 2) << "the destroyed fiber_local's value was not freed with its fiber";
}

TEST(FiberLocalTest, AStaleValueInAReusedSlotIsDestroyedWhenTheNewOneIsMade) {
  counted::reset_counts();
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  auto first = std::make_unique<bobbin::fiber_local<counted>>();
  std::unique_ptr<bobbin::fiber_local<counted>> second;
  std::atomic<int> stage{0};
  auto f = rt->spawn([&] {
    (*first)->tag = 7;
    stage = 1;
    while (stage.load() != 2) bobbin::this_fiber::sleep_for(1ms);
    const int destroyed_before = counted::destroyed.load();
    const int tag = (*second)->tag;  // same slot, another fiber_local: a new value, the old one freed
    return std::make_tuple(tag, destroyed_before, counted::destroyed.load());
  });
  while (stage.load() != 1) std::this_thread::sleep_for(1ms);
  first.reset();
  second = std::make_unique<bobbin::fiber_local<counted>>();
  stage = 2;
  const auto [tag, before, after] = f.join();
  EXPECT_EQ(tag, 0);
  EXPECT_EQ(before, 0);
  EXPECT_EQ(after, 1);
  EXPECT_EQ(counted::destroyed.load(), 2);
}

}  // namespace
