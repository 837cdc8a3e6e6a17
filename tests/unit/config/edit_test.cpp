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
  const auto missing = plan_edit(request(json::object(), true, redact(current), true));
  ASSERT_FALSE(missing.errors.empty());
}

TEST(ConfigEdit, IsoTimestampHasMilliseconds) {
  const auto t =
      std::chrono::system_clock::time_point(std::chrono::milliseconds(1'764'892'800'123));
  EXPECT_EQ(iso_timestamp(t), "2025-12-05T00:00:00.123Z");
}

}  // namespace
}  // namespace drawbridge::config
