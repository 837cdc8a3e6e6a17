#include "runtime/asio_executor.h"

#include <chrono>
#include <vector>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

namespace drawbridge::runtime {
namespace {

// Two timers due at the same moment complete in one pass of the loop: when the first one's
// work cancels the second, the second's completion is already queued (not aborted). It must
// not run: cancel is final, as on ManualExecutor, which the units are tested with.
TEST(AsioExecutor, ATimerCancelledAfterItExpiredButBeforeItRanDoesNotRun) {
  boost::asio::io_context io;
  AsioExecutor ex(io);
  std::vector<int> ran;
  core::TimerId second = 0;
  ex.schedule(core::Duration(0), [&] {
    ran.push_back(1);
    ex.cancel(second);
  });
  second = ex.schedule(core::Duration(0), [&] { ran.push_back(2); });
  io.run();
  EXPECT_EQ(ran, (std::vector<int>{1}));
}

TEST(AsioExecutor, TimersRunOnTheLoopAndCancelledOnesDoNot) {
  boost::asio::io_context io;
  AsioExecutor ex(io);
  std::vector<int> ran;
  ex.schedule(core::Duration(2), [&] { ran.push_back(2); });
  const auto cancelled = ex.schedule(core::Duration(1), [&] { ran.push_back(1); });
  ex.post([&] { ran.push_back(0); });
  ex.cancel(cancelled);
  io.run();  // returns once nothing is left: the cancelled timer holds nothing
  EXPECT_EQ(ran, (std::vector<int>{0, 2}));
}

}  // namespace
}  // namespace drawbridge::runtime
