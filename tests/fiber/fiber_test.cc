#include "bobbin/fiber.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "bobbin/runtime.h"
#include "bobbin/this_fiber.h"

namespace {

using namespace std::chrono_literals;

TEST(FiberTest, RunReturnsMainFiberResult) {
  int v = bobbin::run([] { return 42; }, {.carriers = 2});
  EXPECT_EQ(v, 42);
}

TEST(FiberTest, SpawnJoinReturnsValue) {
  int v = bobbin::run([] {
    auto f = bobbin::spawn([] { return 7; });
    return f.join() * 6;
  }, {.carriers = 2});
  EXPECT_EQ(v, 42);
}

}  // namespace
