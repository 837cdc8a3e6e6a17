#include "runtime/token_check.h"

#include <gtest/gtest.h>

namespace drawbridge::runtime {
namespace {

TEST(TokenCheck, KnownExamplesAreWeakWhateverTheirCase) {
  for (const char* t : {"change-me", "changeme", "secret", "password", "token", "test", "example",
                        "Change-Me", " CHANGEME "}) {
    auto problem = weak_token_problem(t);
    ASSERT_TRUE(problem) << t;
    EXPECT_EQ(*problem, "is a well-known example value") << t;
  }
}

TEST(TokenCheck, ShorterThanSixteenCharactersIsWeak) {
  EXPECT_EQ(weak_token_problem("e2e-token"), "is shorter than 16 characters");
  EXPECT_EQ(weak_token_problem("0123456789abcde"), "is shorter than 16 characters");
  EXPECT_FALSE(weak_token_problem("0123456789abcdef"));
  EXPECT_FALSE(weak_token_problem("4b1d0c6f3a9e8d7c2b5a4f3e"));
}

TEST(TokenCheck, NoTokenIsNotWeakOneIsGenerated) {
  EXPECT_FALSE(weak_token_problem(""));
  EXPECT_FALSE(weak_token_warning(""));
}

TEST(TokenCheck, TheWarningNamesTheProblemNeverTheToken) {
  for (const char* t : {"change-me", "hunter2x", "short-one"}) {
    auto w = weak_token_warning(t);
    ASSERT_TRUE(w) << t;
    EXPECT_EQ(w->find(t), std::string::npos) << *w;
    EXPECT_NE(w->find("weak gateway token"), std::string::npos) << *w;
  }
}

}  // namespace
}  // namespace drawbridge::runtime
