#include "config/document.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>

namespace drawbridge::config {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

ino_t inode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_ino;
}

class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

 private:
  mode_t old_;
};

TEST(ConfigDocumentHash, EmptyInputMatchesTheKnownVector) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(content_hash(""), sha256_hex(""));
}

TEST(ConfigDocumentHash, AbcMatchesTheKnownVector) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ConfigDocumentHash, HashesEmbeddedNulBytes) {
  EXPECT_EQ(sha256_hex(std::string_view("\0", 1)),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
}

TEST(ConfigDocumentParse, AcceptsComments) {
  std::string error;
  const auto doc =
      parse_json_text("// top\n{\n  /* port */ \"gateway\": {\"port\": 1}\n}\n", error);
  ASSERT_TRUE(doc);
  EXPECT_EQ(error, "");
  EXPECT_EQ(*doc, json::parse(R"({"gateway": {"port": 1}})"));
}

TEST(ConfigDocumentParse, DoesNotValidate) {
  std::string error;
  const auto doc = parse_json_text(R"({"gateway": {"prot": "x"}})", error);
  ASSERT_TRUE(doc);
  EXPECT_EQ((*doc)["gateway"]["prot"], "x");
}

TEST(ConfigDocumentParse, ErrorNamesLineAndColumn) {
  std::string error;
  const auto doc = parse_json_text("{\n  \"a\": 1,\n  x\n}", error);
  EXPECT_FALSE(doc);
  EXPECT_EQ(error.rfind("line 3, column 3: syntax error while parsing object key", 0), 0u) << error;
  EXPECT_EQ(error.find("json.exception"), std::string::npos) << error;
}

TEST(ConfigDocumentParse, EmptyTextIsAnError) {
  std::string error;
  EXPECT_FALSE(parse_json_text("", error));
  EXPECT_EQ(error.rfind("line 1, column 1: ", 0), 0u) << error;
}

TEST(ConfigDocumentMergePatch, Rfc7396AppendixA) {
  struct Case {
    const char* target;
    const char* patch;
    const char* result;
  };
  const Case cases[] = {
      {R"({"a":"b"})", R"({"a":"c"})", R"({"a":"c"})"},
      {R"({"a":"b"})", R"({"b":"c"})", R"({"a":"b","b":"c"})"},
      {R"({"a":"b"})", R"({"a":null})", R"({})"},
      {R"({"a":"b","b":"c"})", R"({"a":null})", R"({"b":"c"})"},
      {R"({"a":["b"]})", R"({"a":"c"})", R"({"a":"c"})"},
      {R"({"a":"c"})", R"({"a":["b"]})", R"({"a":["b"]})"},
      {R"({"a":{"b":"c"}})", R"({"a":{"b":"d","c":null}})", R"({"a":{"b":"d"}})"},
      {R"({"a":[{"b":"c"}]})", R"({"a":[1]})", R"({"a":[1]})"},
      {R"(["a","b"])", R"(["c","d"])", R"(["c","d"])"},
      {R"({"a":"b"})", R"(["c"])", R"(["c"])"},
      {R"({"a":"foo"})", R"(null)", R"(null)"},
      {R"({"a":"foo"})", R"("bar")", R"("bar")"},
      {R"({"e":null})", R"({"a":1})", R"({"e":null,"a":1})"},
      {R"([1,2])", R"({"a":"b","c":null})", R"({"a":"b"})"},
      {R"({})", R"({"a":{"bb":{"ccc":null}}})", R"({"a":{"bb":{}}})"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(merge_patch(json::parse(c.target), json::parse(c.patch)), json::parse(c.result))
        << c.target << " + " << c.patch;
  }
}

TEST(ConfigDocumentMergePatch, NullDeletesNestedKeys) {
  const json target = json::parse(R"({"gateway": {"port": 1, "bind": "lan"}, "logging": {}})");
  EXPECT_EQ(merge_patch(target, json::parse(R"({"gateway": {"bind": null}, "logging": null})")),
            json::parse(R"({"gateway": {"port": 1}})"));
}

TEST(ConfigDocumentMergePatch, ArraysReplaceWhole) {
  const json target = json::parse(R"({"agents": {"sh": {"command": ["a", "b", "c"]}}})");
  EXPECT_EQ(merge_patch(target, json::parse(R"({"agents": {"sh": {"command": ["d"]}}})")),
            json::parse(R"({"agents": {"sh": {"command": ["d"]}}})"));
}

TEST(ConfigDocumentMergePatch, LeavesTheTargetAlone) {
  const json target = json::parse(R"({"a": 1})");
  EXPECT_EQ(merge_patch(target, json::parse(R"({"a": null, "b": 2})")), json::parse(R"({"b": 2})"));
  EXPECT_EQ(target, json::parse(R"({"a": 1})"));
}

TEST(ConfigDocumentSerialize, TwoSpaceIndentAndFinalNewline) {
  EXPECT_EQ(serialize(json::parse(R"({"gateway": {"port": 1}, "x": [1]})")),
            "{\n  \"gateway\": {\n    \"port\": 1\n  },\n  \"x\": [\n    1\n  ]\n}\n");
  EXPECT_EQ(serialize(json::object()), "{}\n");
}

TEST(ConfigDocumentSerialize, LastGoodPathAppendsASuffix) {
  EXPECT_EQ(last_good_path("/etc/drawbridge.json"), "/etc/drawbridge.json.last-good");
  EXPECT_EQ(last_good_path("c.json"), "c.json.last-good");
}

class ConfigDocumentFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "drawbridge-document-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }

  fs::path write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }

  std::set<std::string> names_in(const fs::path& folder) {
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(folder)) {
      names.insert(entry.path().filename().string());
    }
    return names;
  }

  fs::path dir_;
};

TEST_F(ConfigDocumentFiles, WritesANewFile) {
  const fs::path p = dir_ / "drawbridge.json";
  const auto out = write_atomic(p.string(), "{\"a\": 1}\n");
  EXPECT_TRUE(out.ok);
  EXPECT_EQ(out.error, "");
  EXPECT_EQ(read_text(p), "{\"a\": 1}\n");
}

TEST_F(ConfigDocumentFiles, ReplacesAnExistingFile) {
  const fs::path p = write("drawbridge.json", "old old old old\n");
  EXPECT_TRUE(write_atomic(p.string(), "new").ok);
  EXPECT_EQ(read_text(p), "new");
}

TEST_F(ConfigDocumentFiles, WritesEmptyAndLargeContent) {
  const fs::path p = dir_ / "c.json";
  EXPECT_TRUE(write_atomic(p.string(), "").ok);
  EXPECT_EQ(read_text(p), "");
  const std::string big(3 * 1024 * 1024 + 7, 'x');
  EXPECT_TRUE(write_atomic(p.string(), big).ok);
  EXPECT_EQ(read_text(p), big);
}

TEST_F(ConfigDocumentFiles, KeepsTheModeOfAnExistingFile) {
  const fs::path p = write("drawbridge.json", "{}");
  ASSERT_EQ(::chmod(p.c_str(), 0640), 0);
  ScopedUmask umask(077);  // the old bits win over the umask
  EXPECT_TRUE(write_atomic(p.string(), "{\"a\": 1}").ok);
  EXPECT_EQ(mode_of(p), 0640u);
  EXPECT_EQ(read_text(p), "{\"a\": 1}");
}

TEST_F(ConfigDocumentFiles, NewFileIsOwnerOnly) {
  ScopedUmask umask(0);
  const fs::path p = dir_ / "drawbridge.json";
  EXPECT_TRUE(write_atomic(p.string(), "{}").ok);
  EXPECT_EQ(mode_of(p), 0600u);
}

TEST_F(ConfigDocumentFiles, LeavesNoTempFileBehind) {
  const fs::path p = write("drawbridge.json", "{}");
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(write_atomic(p.string(), std::to_string(i)).ok);
  EXPECT_EQ(names_in(dir_), std::set<std::string>{"drawbridge.json"});
}

TEST_F(ConfigDocumentFiles, ReadOnlyFolderFailsAndKeepsTheOldFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores folder permissions";
  const fs::path p = write("drawbridge.json", "old");
  ASSERT_EQ(::chmod(dir_.c_str(), 0500), 0);
  const auto out = write_atomic(p.string(), "new");
  ASSERT_EQ(::chmod(dir_.c_str(), 0700), 0);
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.error, "cannot write " + p.string() + ": Permission denied");
  EXPECT_EQ(read_text(p), "old");
  EXPECT_EQ(names_in(dir_), std::set<std::string>{"drawbridge.json"});
}

TEST_F(ConfigDocumentFiles, MissingFolderFails) {
  const fs::path p = dir_ / "nope" / "drawbridge.json";
  const auto out = write_atomic(p.string(), "x");
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.error, "cannot write " + p.string() + ": No such file or directory");
}

TEST_F(ConfigDocumentFiles, PathThatIsAFolderFailsAndCleansUp) {
  fs::create_directories(dir_ / "c.json");
  const auto out = write_atomic((dir_ / "c.json").string(), "x");
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.error, "cannot write " + (dir_ / "c.json").string() + ": Is a directory");
  EXPECT_EQ(names_in(dir_), std::set<std::string>{"c.json"});
}

TEST_F(ConfigDocumentFiles, SymlinkedConfigStaysASymlink) {
  const fs::path target = write("real/drawbridge.json", "old");
  ASSERT_EQ(::chmod(target.c_str(), 0640), 0);
  const fs::path link = dir_ / "drawbridge.json";
  fs::create_symlink("real/drawbridge.json", link);  // relative, as dotfile managers make them
  const auto out = write_atomic(link.string(), "new");
  EXPECT_TRUE(out.ok) << out.error;
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(link)));
  EXPECT_EQ(fs::read_symlink(link), fs::path("real/drawbridge.json"));
  EXPECT_EQ(read_text(target), "new");
  EXPECT_EQ(mode_of(target), 0640u);
  EXPECT_EQ(names_in(dir_ / "real"), std::set<std::string>{"drawbridge.json"});
  EXPECT_EQ(names_in(dir_), (std::set<std::string>{"drawbridge.json", "real"}));
}

TEST_F(ConfigDocumentFiles, DanglingSymlinkCreatesItsTarget) {
  fs::create_directories(dir_ / "real");
  const fs::path link = dir_ / "drawbridge.json";
  fs::create_symlink("real/new.json", link);
  EXPECT_TRUE(write_atomic(link.string(), "x").ok);
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(link)));
  EXPECT_EQ(read_text(dir_ / "real" / "new.json"), "x");
  EXPECT_EQ(mode_of(dir_ / "real" / "new.json"), 0600u);
}

TEST_F(ConfigDocumentFiles, SaveLastGoodCreatesTheCopy) {
  const fs::path p = write("drawbridge.json", "{}");
  const auto out = save_last_good(p.string(), "{\"a\": 1}\n");
  EXPECT_TRUE(out.ok) << out.error;
  EXPECT_EQ(read_text(dir_ / "drawbridge.json.last-good"), "{\"a\": 1}\n");
  EXPECT_EQ(read_text(p), "{}");
}

TEST_F(ConfigDocumentFiles, SaveLastGoodDoesNotRewriteAnUnchangedCopy) {
  const fs::path p = dir_ / "drawbridge.json";
  const fs::path copy = dir_ / "drawbridge.json.last-good";
  ASSERT_TRUE(save_last_good(p.string(), "same").ok);
  const ino_t before = inode_of(copy);
  EXPECT_TRUE(save_last_good(p.string(), "same").ok);
  EXPECT_EQ(inode_of(copy), before);  // write_atomic always makes a new inode
  EXPECT_TRUE(save_last_good(p.string(), "changed").ok);
  EXPECT_NE(inode_of(copy), before);
  EXPECT_EQ(read_text(copy), "changed");
}

const json kSecretDoc = json::parse(R"({
  "gateway": {"port": 18789, "auth": {"mode": "token", "token": "s3cret"}},
  "channels": {"telegram": {"botToken": "123:abc", "enabled": true}},
  "agents": {
    "default": "x",
    "x": {"type": "openai", "model": "gpt", "apiKey": "sk-1", "env": {"FOO": "bar", "N": "1"}}
  }
})");

TEST(ConfigDocumentRedact, HidesSecretsAndKeepsTheRest) {
  const std::string r(kRedacted);
  EXPECT_EQ(redact(kSecretDoc), json::parse(R"({
    "gateway": {"port": 18789, "auth": {"mode": "token", "token": ")" +
                                            r + R"("}},
    "channels": {"telegram": {"botToken": ")" +
                                            r + R"(", "enabled": true}},
    "agents": {
      "default": "x",
      "x": {"type": "openai", "model": "gpt", "apiKey": ")" +
                                            r + R"(",
            "env": {"FOO": ")" + r + R"(", "N": ")" +
                                            r + R"("}}
    }
  })"));
}

TEST(ConfigDocumentRedact, MatchesSecretKeysCaseInsensitively) {
  for (const char* key : {"token", "TOKEN", "apiKey", "apikey", "botToken", "password", "secret",
                          "authToken", "clientSecret", "adminPassword", "openaiApiKey"}) {
    const json doc = {{"x", {{key, "v"}}}};
    EXPECT_EQ(redact(doc)["x"][key], std::string(kRedacted)) << key;
    EXPECT_TRUE(has_secrets(doc)) << key;
  }
  for (const char* key :
       {"tokens", "tokenizer", "maxTokens", "secrets", "passwords", "key", "apiKeys", "mode"}) {
    const json doc = {{"x", {{key, "v"}}}};
    EXPECT_EQ(redact(doc), doc) << key;
    EXPECT_FALSE(has_secrets(doc)) << key;
  }
}

TEST(ConfigDocumentRedact, RecursesIntoObjectsUnderSecretKeys) {
  const json doc = json::parse(R"({"secret": {"name": "n", "password": "p"}, "token": null})");
  EXPECT_EQ(redact(doc), json::parse(R"({"secret": {"name": "n", "password": ")" +
                                     std::string(kRedacted) + R"("}, "token": null})"));
}

TEST(ConfigDocumentRedact, HidesOtherScalarsAndArrayElements) {
  const json doc = json::parse(R"({"token": 42, "secret": false, "apiKey": ["a", {"b": "c"}]})");
  const std::string r(kRedacted);
  EXPECT_EQ(redact(doc), json::parse(R"({"token": ")" + r + R"(", "secret": ")" + r +
                                     R"(", "apiKey": [")" + r + R"(", {"b": "c"}]})"));
}

TEST(ConfigDocumentRedact, EnvIsSecretOnlyUnderAnAgent) {
  const json doc = json::parse(R"({"env": {"A": "1"}, "channels": {"c": {"env": {"A": "1"}}}})");
  EXPECT_EQ(redact(doc), doc);
  EXPECT_FALSE(has_secrets(doc));
}

TEST(ConfigDocumentRedact, HasSecrets) {
  EXPECT_TRUE(has_secrets(kSecretDoc));
  EXPECT_FALSE(has_secrets(redact(kSecretDoc)));
  EXPECT_FALSE(has_secrets(json::parse(R"({"gateway": {"port": 1}})")));
  EXPECT_TRUE(has_secrets(json::parse(R"({"agents": {"a": {"env": {"K": "v"}}}})")));
  EXPECT_FALSE(has_secrets(json::parse(R"({"agents": {"a": {"env": {}}}})")));
  EXPECT_FALSE(has_secrets(json("token")));
}

TEST(ConfigDocumentRedact, RestoreBringsBackEverySecret) {
  json doc = redact(kSecretDoc);
  doc["gateway"]["port"] = 1;
  const auto restored = restore_redacted(doc, kSecretDoc);
  EXPECT_TRUE(restored.errors.empty());
  EXPECT_TRUE(restored.dropped.empty());
  json expected = kSecretDoc;
  expected["gateway"]["port"] = 1;
  EXPECT_EQ(doc, expected);
}

TEST(ConfigDocumentRedact, RestoreWorksOnAPatch) {
  json patch = json::parse(R"({"agents": {"x": {"model": "gpt-5", "apiKey": ")" +
                           std::string(kRedacted) + R"("}}})");
  EXPECT_TRUE(restore_redacted(patch, kSecretDoc).errors.empty());
  EXPECT_EQ(patch, json::parse(R"({"agents": {"x": {"model": "gpt-5", "apiKey": "sk-1"}}})"));
}

TEST(ConfigDocumentRedact, RestoreFollowsArrayIndexes) {
  const json current = json::parse(R"({"apiKey": ["a", "b"]})");
  json doc = redact(current);
  EXPECT_TRUE(restore_redacted(doc, current).errors.empty());
  EXPECT_EQ(doc, current);
}

TEST(ConfigDocumentRedact, APlaceholderUnderASecretKeyWithoutAValueIsDroppedAndNamed) {
  const std::string r(kRedacted);
  // A form sends back the effective config: a generated token and an env value the file does
  // not hold come back as placeholders.
  json doc = json::parse(R"({"agents": {"ai": {"apiKey": ")" + r + R"(", "model": "m",
                                                "env": {"K": ")" + r + R"("}}},
                             "gateway": {"auth": {"token": ")" + r + R"("}, "port": 1}})");
  const json current = json::parse(R"({"gateway": {"port": 2}})");
  const auto restored = restore_redacted(doc, current);
  EXPECT_TRUE(restored.errors.empty());
  EXPECT_EQ(restored.dropped,
            (std::vector<std::string>{"agents.ai.apiKey", "agents.ai.env.K", "gateway.auth.token"}));
  EXPECT_EQ(doc, json::parse(R"({"agents": {"ai": {"model": "m", "env": {}}},
                                 "gateway": {"auth": {}, "port": 1}})"));
}

TEST(ConfigDocumentRedact, APlaceholderWithoutAValueElsewhereIsAnErrorNamingThePath) {
  const std::string r(kRedacted);
  json doc = json::parse(R"({"agents": {"e": {"prefix": ")" + r + R"("}},
                             "gateway": {"auth": {"token": ")" + r + R"("}},
                             "list": [1, ")" + r + R"("]})");
  const json current = json::parse(R"({"gateway": {"auth": {"token": "t"}}, "list": [1]})");
  const auto restored = restore_redacted(doc, current);
  ASSERT_EQ(restored.errors.size(), 2u);
  EXPECT_EQ(restored.errors[0].pointer, "/agents/e/prefix");
  EXPECT_EQ(restored.errors[0].to_string(),
            "agents.e.prefix: the redacted placeholder has no value to restore; send the secret "
            "itself");
  EXPECT_EQ(restored.errors[1].pointer, "/list/1");
  EXPECT_EQ(restored.errors[1].path, "list[1]");
  EXPECT_TRUE(restored.dropped.empty());
  // Restored where possible; the rest keeps the placeholder.
  EXPECT_EQ(doc["gateway"]["auth"]["token"], "t");
  EXPECT_EQ(doc["agents"]["e"]["prefix"], r);
}

TEST(ConfigDocumentRedact, RestoreRefusesAPlaceholderInCurrent) {
  const json current = {{"token", std::string(kRedacted)}};
  json doc = current;
  const auto restored = restore_redacted(doc, current);
  ASSERT_EQ(restored.errors.size(), 1u);
  EXPECT_EQ(restored.errors[0].path, "token");
}

}  // namespace
}  // namespace drawbridge::config
