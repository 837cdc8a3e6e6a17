#include "runtime/log_redaction.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

namespace drawbridge::runtime {
namespace {

TEST(RedactSecrets, ReplacesEveryOccurrenceOfEverySecret) {
  EXPECT_EQ(redact_secrets("token s3cr3t-token, again s3cr3t-token; key sk-abc123",
                           {"s3cr3t-token", "sk-abc123"}),
            "token ***, again ***; key ***");
  EXPECT_EQ(redact_secrets("nothing here", {"s3cr3t-token"}), "nothing here");
  EXPECT_EQ(redact_secrets("aaaa", {"aa"}), "******");
}

TEST(RedactSecrets, TheLongerSecretIsHiddenWholeWhenItContainsAShorterOne) {
  const auto secrets = redactable({"abcd", "abcd-efgh-ijkl"});
  EXPECT_EQ(redact_secrets("x abcd-efgh-ijkl y abcd", secrets), "x *** y ***");
}

TEST(Redactable, DropsSecretsShorterThanFourCharactersAndAddsTheJsonSpelling) {
  const auto secrets = redactable({"abc", "", "tok\"en\\1", "good-secret"});
  EXPECT_EQ(std::count(secrets.begin(), secrets.end(), "abc"), 0);
  EXPECT_EQ(std::count(secrets.begin(), secrets.end(), ""), 0);
  EXPECT_EQ(std::count(secrets.begin(), secrets.end(), "good-secret"), 1);
  EXPECT_EQ(std::count(secrets.begin(), secrets.end(), "tok\"en\\1"), 1);
  // Inside a dumped JSON document the secret is escaped.
  EXPECT_EQ(std::count(secrets.begin(), secrets.end(), "tok\\\"en\\\\1"), 1);
  EXPECT_EQ(redact_secrets(R"({"token":"tok\"en\\1"})", secrets), R"({"token":"***"})");
}

TEST(RedactingSink, EveryChildSinkGetsTheRedactedLineAndTheSecretsCanChange) {
  auto ring = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(10);
  ring->set_pattern("%v");
  auto sink = std::make_shared<RedactingSink>(std::vector<spdlog::sink_ptr>{ring});
  spdlog::logger log("redaction-test", sink);
  log.set_level(spdlog::level::trace);

  sink->set_secrets({"first-token-1234", "sk-live-abcdef", "xyz"});
  log.info("auth token: {}", "first-token-1234");
  log.debug("config error near '\"sk-live-abcdef' and xyz");
  sink->set_secrets({"second-token-5678"});
  log.warn("old first-token-1234, new second-token-5678");

  const auto lines = ring->last_formatted();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "auth token: ***\n");
  // "xyz" is too short to hide: it stays (the gateway warns about it instead).
  EXPECT_EQ(lines[1], "config error near '\"***' and xyz\n");
  EXPECT_EQ(lines[2], "old first-token-1234, new ***\n");
}

TEST(RedactingSink, SinksAddedLaterAreBehindItToo) {
  auto sink = std::make_shared<RedactingSink>();
  spdlog::logger log("redaction-test-2", sink);
  sink->set_secrets({"bundle-secret"});
  auto ring = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(10);
  ring->set_pattern("%v");
  sink->add_sink(ring);
  log.error("watchdog saw bundle-secret");
  ASSERT_EQ(ring->last_formatted().size(), 1u);
  EXPECT_EQ(ring->last_formatted()[0], "watchdog saw ***\n");
  sink->remove_sink(ring);
  log.error("after bundle-secret");
  EXPECT_EQ(ring->last_formatted().size(), 1u);
}

}  // namespace
}  // namespace drawbridge::runtime
