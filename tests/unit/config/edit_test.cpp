#include "config/edit.h"

#include <gtest/gtest.h>

#include "config/document.h"

namespace drawbridge::config {
namespace {

using nlohmann::json;

EditRequest request(json current, bool exists, json change, bool whole = false) {
  return {std::move(current), exists, std::move(change), whole, "2026-12-05T00:00:00.000Z", "9.9"};
}

TEST(ConfigEdit, MergesThePatchAndStampsMeta) {
  const auto plan = plan_edit(request({{"gateway", {{"port", 1}}}}, true,
                                      {{"gateway", {{"bind", "lan"}}}}));
  ASSERT_TRUE(plan.errors.empty());
  EXPECT_FALSE(plan.unchanged);
  EXPECT_EQ(plan.document["gateway"], json({{"port", 1}, {"bind", "lan"}}));
  EXPECT_EQ(plan.document["meta"]["lastTouchedAt"], "2026-12-05T00:00:00.000Z");
  EXPECT_EQ(plan.document["meta"]["lastTouchedVersion"], "9.9");
  EXPECT_EQ(plan.text, serialize(plan.document));
}

TEST(ConfigEdit, AChangeOfMetaAloneIsNoChange) {
  const auto plan = plan_edit(request({{"a", 1}, {"meta", {{"x", 1}}}}, true,
                                      {{"meta", {{"x", 2}}}}));
  EXPECT_TRUE(plan.errors.empty());
  EXPECT_TRUE(plan.unchanged);
}

TEST(ConfigEdit, APlaceholderForASecretTheFileLacksIsLeftOutNotRefused) {
  const json current = {{"logging", {{"level", "info"}}}};
  json whole = current;
  whole["logging"]["level"] = "debug";
  whole["gateway"]["auth"]["token"] = std::string(kRedacted);  // generated, not in the file
  const auto plan = plan_edit(request(current, true, whole, true));
  ASSERT_TRUE(plan.errors.empty());
  EXPECT_EQ(plan.dropped_placeholders, std::vector<std::string>{"gateway.auth.token"});
  EXPECT_FALSE(plan.document["gateway"]["auth"].contains("token"));
  EXPECT_EQ(plan.text.find(kRedacted), std::string::npos);
  EXPECT_EQ(plan.document["logging"]["level"], "debug");
}

TEST(ConfigEdit, AnEqualDocumentIsWrittenWhenNoFileExists) {
  const auto plan = plan_edit(request(json::object(), false, json::object()));
  EXPECT_FALSE(plan.unchanged);
  EXPECT_TRUE(plan.document.contains("meta"));
}

TEST(ConfigEdit, AWholeDocumentThatIsNotAnObjectIsRefused) {
  const auto plan = plan_edit(request(json::object(), true, json::array(), true));
  ASSERT_EQ(plan.errors.size(), 1u);
  EXPECT_EQ(plan.errors[0].message, "the resulting config is not an object");
  EXPECT_TRUE(plan.text.empty());
}

TEST(ConfigEdit, RedactedSecretsAreRestoredFromTheCurrentDocument) {
  const json current = {{"gateway", {{"auth", {{"token", "s3cret-value"}}}}}};
  const auto plan = plan_edit(request(current, true, redact(current), true));
  EXPECT_TRUE(plan.errors.empty());
  EXPECT_TRUE(plan.unchanged);
  // Not in the file (a generated token): left out of what is written, and named.
  const auto missing = plan_edit(request(json::object(), true, redact(current), true));
  EXPECT_TRUE(missing.errors.empty());
  EXPECT_EQ(missing.dropped_placeholders, std::vector<std::string>{"gateway.auth.token"});
}

TEST(ConfigEdit, IsoTimestampHasMilliseconds) {
  const auto t =
      std::chrono::system_clock::time_point(std::chrono::milliseconds(1'764'892'800'123));
  EXPECT_EQ(iso_timestamp(t), "2025-12-05T00:00:00.123Z");
}

}  // namespace
}  // namespace drawbridge::config
