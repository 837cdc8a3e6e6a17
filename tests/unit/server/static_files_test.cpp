// The Control UI's static files: which file answers a request, and that nothing outside the
// folder ever does.

#include "server/static_files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "unit/store/temp_dir.h"

namespace drawbridge::server {
namespace {

namespace fs = std::filesystem;

// Inline scripts of the fixture's index.html, and their CSP hashes (openssl dgst -sha256).
constexpr const char* kInlineScript = "var x = 1;";
constexpr const char* kInlineScriptHash = "sha256-9nfWt3DNT14o+tZCP3YilfLwTrhLI98eqbN689B7ajY=";
constexpr const char* kSecondScriptHash = "sha256-gHAzIVRaQxzYNNimjwLbjxxQL8U3ofFkNNb+igm7dTw=";

const std::string kIndex = std::string(R"(<!doctype html>
<html><head>
<link rel="icon" href="./favicon.ico" />
<script data-cfasync="false">)") +
                           kInlineScript + R"(</script>
<script type="module" crossorigin src="./assets/app-Ab12Cd34.js"></script>
<link rel="stylesheet" href="./assets/style-Zz99Yy88.css">
</head><body><SCRIPT>
var x = 1;
</SCRIPT></body></html>
)";

class StaticFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.path / "ui";
    write("index.html", kIndex);
    write("assets/app-Ab12Cd34.js", "console.log('app');");
    write("assets/app-Ab12Cd34.js.br", "BROTLI");
    write("assets/app-Ab12Cd34.js.gz", "GZIP");
    write("assets/style-Zz99Yy88.css", "body{}");
    write("assets/style-Zz99Yy88.css.gz", "GZIPPED-CSS");
    write("favicon.ico", "ICO");
    write("fonts/a.woff2", "WOFF2");
    write("themes/dark.css", ".dark{}");
    write("manifest.webmanifest", "{}");
    write("sw.js", "self;");
    write("notes.md", "# not served");
    write(".install-stamp", "secret stamp");
    write("../outside/secret.txt", "SECRET");
    settings_.root = root_.string();
    settings_.assistant_name = "Bridget";
    settings_.server_version = "9.9.9";
  }

  void write(const std::string& relative, const std::string& content) {
    const auto path = root_ / relative;
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
  }

  StaticResponse get(const std::string& target, const std::string& accept_encoding = "",
                     const std::string& accept = "*/*", const std::string& method = "GET") {
    auto r = serve_control_ui(settings_, {method, target, accept, accept_encoding});
    EXPECT_TRUE(r.has_value()) << method << " " << target;
    return r.value_or(StaticResponse{});
  }

  static std::string header(const StaticResponse& r, std::string_view name) {
    const auto* v = r.header(name);
    return v ? *v : "<absent>";
  }

  store::test_support::TempDir dir_;
  fs::path root_;
  ControlUiSettings settings_;
};

TEST_F(StaticFilesTest, RootAndAppRoutesGetIndexWithAbsoluteAssetReferences) {
  for (const char* target : {"/", "/index.html", "/chat/main", "/settings/advanced",
                             "/settings/advanced/", "/chat/main?session=x#frag"}) {
    auto r = get(target);
    EXPECT_EQ(r.status, 200) << target;
    EXPECT_EQ(header(r, "Content-Type"), "text/html; charset=utf-8") << target;
    EXPECT_EQ(header(r, "Cache-Control"), "no-cache") << target;
    EXPECT_NE(r.body.find(R"(src="/assets/app-Ab12Cd34.js")"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find(R"(href="/assets/style-Zz99Yy88.css")"), std::string::npos);
    EXPECT_NE(r.body.find(R"(href="/favicon.ico")"), std::string::npos);
    EXPECT_EQ(r.body.find("\"./"), std::string::npos) << "a relative reference is left";
    EXPECT_EQ(r.content_length, r.body.size());
  }
}

TEST_F(StaticFilesTest, IndexCspAllowsItsOwnInlineScriptsAndNoOthers) {
  auto r = get("/");
  const auto csp = header(r, "Content-Security-Policy");
  EXPECT_NE(csp.find(std::string("script-src 'self' '") + kInlineScriptHash + "' '" +
                     kSecondScriptHash + "';"),
            std::string::npos)
      << csp;
  const auto scripts = csp.substr(csp.find("script-src"));
  EXPECT_EQ(scripts.substr(0, scripts.find(';')).find("unsafe"), std::string::npos) << csp;
  EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("connect-src 'self' ws: wss:"), std::string::npos) << csp;
  // A file's policy has no hashes: only the page's own scripts run inline.
  EXPECT_EQ(header(get("/sw.js"), "Content-Security-Policy"), control_ui_csp());
}

TEST_F(StaticFilesTest, EveryAnswerCarriesTheSecurityHeaders) {
  std::vector<StaticResponse> answers = {get("/"), get("/assets/app-Ab12Cd34.js"),
                                         get("/control-ui-config.json"), get("/missing.js"),
                                         get("/../x.js")};
  answers.push_back(*serve_control_ui(settings_, {"POST", "/", "", ""}));
  for (const auto& r : answers) {
    EXPECT_FALSE(header(r, "Content-Security-Policy").empty()) << r.status;
    EXPECT_EQ(header(r, "X-Content-Type-Options"), "nosniff") << r.status;
    EXPECT_EQ(header(r, "X-Frame-Options"), "DENY") << r.status;
    EXPECT_EQ(header(r, "Referrer-Policy"), "no-referrer") << r.status;
  }
}

TEST_F(StaticFilesTest, DeepLinkedAssetsMapToTheRootAssetsFolder) {
  for (const char* target : {"/assets/app-Ab12Cd34.js", "/settings/assets/app-Ab12Cd34.js",
                             "/chat/main/assets/app-Ab12Cd34.js"}) {
    auto r = get(target);
    EXPECT_EQ(r.status, 200) << target;
    EXPECT_EQ(r.body, "console.log('app');") << target;
    EXPECT_EQ(header(r, "Content-Type"), "application/javascript; charset=utf-8");
    EXPECT_EQ(header(r, "Cache-Control"), "public, max-age=31536000, immutable");
  }
}

TEST_F(StaticFilesTest, QueryStringsAreIgnored) {
  auto r = get("/fonts/a.woff2?v=2026.9.6-build");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "WOFF2");
  EXPECT_EQ(header(r, "Content-Type"), "font/woff2");
  // Not under assets/: not fingerprinted, revalidated.
  EXPECT_EQ(header(r, "Cache-Control"), "no-cache");
  EXPECT_EQ(get("/themes/dark.css?v=1").body, ".dark{}");
}

TEST_F(StaticFilesTest, BrotliIsPreferredThenGzipThenIdentity) {
  auto br = get("/assets/app-Ab12Cd34.js", "gzip, deflate, br");
  EXPECT_EQ(br.body, "BROTLI");
  EXPECT_EQ(header(br, "Content-Encoding"), "br");
  EXPECT_EQ(header(br, "Vary"), "Accept-Encoding");
  EXPECT_EQ(header(br, "Content-Type"), "application/javascript; charset=utf-8");

  auto gz = get("/assets/app-Ab12Cd34.js", "gzip");
  EXPECT_EQ(gz.body, "GZIP");
  EXPECT_EQ(header(gz, "Content-Encoding"), "gzip");

  auto refused = get("/assets/app-Ab12Cd34.js", "br;q=0, gzip;q=0.5");
  EXPECT_EQ(refused.body, "GZIP");
  auto any = get("/assets/app-Ab12Cd34.js", "*");
  EXPECT_EQ(any.body, "BROTLI");
  auto none = get("/assets/app-Ab12Cd34.js", "identity");
  EXPECT_EQ(none.body, "console.log('app');");
  EXPECT_EQ(header(none, "Content-Encoding"), "<absent>");
  EXPECT_EQ(header(none, "Vary"), "Accept-Encoding");

  // Only a gzip sibling: a br-only client gets the file itself.
  auto css = get("/assets/style-Zz99Yy88.css", "br");
  EXPECT_EQ(css.body, "body{}");
  EXPECT_EQ(header(css, "Content-Encoding"), "<absent>");
  EXPECT_EQ(get("/assets/style-Zz99Yy88.css", "br, gzip").body, "GZIPPED-CSS");
}

TEST_F(StaticFilesTest, PrecompressedSiblingsAreNotServedUnderTheirOwnNames) {
  EXPECT_EQ(get("/assets/app-Ab12Cd34.js.br").status, 404);
  EXPECT_EQ(get("/assets/app-Ab12Cd34.js.gz").status, 404);
}

TEST_F(StaticFilesTest, ContentTypesByExtension) {
  EXPECT_EQ(header(get("/favicon.ico"), "Content-Type"), "image/x-icon");
  EXPECT_EQ(header(get("/manifest.webmanifest"), "Content-Type"),
            "application/manifest+json; charset=utf-8");
  EXPECT_EQ(header(get("/assets/style-Zz99Yy88.css"), "Content-Type"), "text/css; charset=utf-8");
  EXPECT_EQ(header(get("/control-ui-config.json"), "Content-Type"),
            "application/json; charset=utf-8");
}

TEST_F(StaticFilesTest, UnknownExtensionsAndMissingFilesAre404) {
  EXPECT_EQ(get("/notes.md").status, 404);  // present, but not a UI file type
  EXPECT_EQ(get("/missing.js").status, 404);
  EXPECT_EQ(get("/assets/missing-00000000.js").status, 404);
  EXPECT_EQ(get("/db.sqlite").status, 404);
  // A browser navigating to an app route with a dot in it (a session key) gets the app.
  auto nav = get("/chat/agent:main:irc:x.y", "", "text/html,application/xhtml+xml");
  EXPECT_EQ(nav.status, 200);
  EXPECT_EQ(header(nav, "Content-Type"), "text/html; charset=utf-8");
  // Not a navigation: no app in place of a file.
  EXPECT_EQ(get("/chat/agent:main:irc:x.y", "", "*/*").status, 404);
}

TEST_F(StaticFilesTest, TraversalAttemptsAre404) {
  for (const char* target :
       {"/../outside/secret.txt", "/assets/../../outside/secret.txt", "/%2e%2e/outside/secret.txt",
        "/%2E%2E/outside/secret.txt", "/assets/%2e%2e/index.html", "/..%2foutside%2fsecret.txt",
        "/assets/..%2f..%2foutside/secret.txt", "/..\\outside\\secret.txt",
        "/%5c..%5coutside/secret.txt", "/x%00.js", "/favicon.ico%00.txt", "/%zz.js", "/%2",
        "/./favicon.ico", "//etc/passwd.txt", "/.install-stamp", "/%2einstall-stamp",
        "http://evil/favicon.ico", "*"}) {
    auto r = get(target);
    EXPECT_EQ(r.status, 404) << target;
    EXPECT_EQ(r.body.find("SECRET"), std::string::npos) << target;
  }
}

TEST_F(StaticFilesTest, SymlinkOutOfTheFolderIs404AndOneWithinIsServed) {
  fs::create_symlink(dir_.path / "outside" / "secret.txt", root_ / "leak.txt");
  fs::create_directory_symlink(dir_.path / "outside", root_ / "linked");
  fs::create_symlink(root_ / "assets" / "app-Ab12Cd34.js", root_ / "alias.js");
  EXPECT_EQ(get("/leak.txt").status, 404);
  EXPECT_EQ(get("/linked/secret.txt").status, 404);
  auto alias = get("/alias.js");
  EXPECT_EQ(alias.status, 200);
  EXPECT_EQ(alias.body, "console.log('app');");
}

TEST_F(StaticFilesTest, ARootThatIsASymlinkServesItsFiles) {
  fs::create_directory_symlink(root_, dir_.path / "current");
  settings_.root = (dir_.path / "current").string();
  EXPECT_EQ(get("/favicon.ico").body, "ICO");
}

TEST_F(StaticFilesTest, DirectoriesAndFifosAreNotFiles) {
  fs::create_directories(root_ / "dir.js");
  EXPECT_EQ(get("/dir.js").status, 404);
  ASSERT_EQ(::mkfifo((root_ / "pipe.js").c_str(), 0600), 0);
  EXPECT_EQ(get("/pipe.js").status, 404);  // answered at once: nothing blocks on the FIFO
}

TEST_F(StaticFilesTest, FilesAboveTheSizeCapAreRefusedWithoutReadingThem) {
  settings_.max_file_bytes = 1024 * 1024;
  write("assets/huge-00000000.js", std::string(1024 * 1024 + 1, 'x'));
  write("assets/fits-00000000.js", std::string(1024 * 1024, 'y'));
  auto huge = get("/assets/huge-00000000.js");
  EXPECT_EQ(huge.status, 500);
  EXPECT_NE(huge.body.find("larger than the 1 MiB"), std::string::npos) << huge.body;
  EXPECT_EQ(get("/assets/huge-00000000.js", "", "*/*", "HEAD").status, 500);
  EXPECT_EQ(get("/assets/fits-00000000.js").body.size(), 1024u * 1024u);
  // The same for index.html.
  write("index.html", std::string(1024 * 1024 + 1, 'z'));
  EXPECT_EQ(get("/").status, 500);
}

TEST_F(StaticFilesTest, HeadTellsTheLengthOfTheGetWithoutABody) {
  auto head = get("/assets/app-Ab12Cd34.js", "br", "*/*", "HEAD");
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(head.body.empty());
  EXPECT_EQ(head.content_length, std::string("BROTLI").size());
  EXPECT_EQ(header(head, "Content-Encoding"), "br");
  auto index = get("/", "", "*/*", "HEAD");
  EXPECT_TRUE(index.body.empty());
  EXPECT_EQ(index.content_length, get("/").body.size());
}

TEST_F(StaticFilesTest, OtherMethodsAre405OnUiPathsAndLeftAloneElsewhere) {
  for (const char* target : {"/", "/chat/main", "/favicon.ico", "/control-ui-config.json"}) {
    auto r = serve_control_ui(settings_, {"POST", target, "", ""});
    ASSERT_TRUE(r.has_value()) << target;
    EXPECT_EQ(r->status, 405) << target;
    EXPECT_EQ(header(*r, "Allow"), "GET, HEAD");
  }
  // A webhook path that matched nothing: the gateway's own 404, not the UI's.
  EXPECT_FALSE(serve_control_ui(settings_, {"POST", "/missing.js", "", ""}).has_value());
  EXPECT_FALSE(serve_control_ui(settings_, {"DELETE", "/../x.js", "", ""}).has_value());
}

TEST_F(StaticFilesTest, ConfigJsonNamesTheAssistantAndTheServer) {
  auto r = get("/control-ui-config.json");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(header(r, "Cache-Control"), "no-cache");
  auto body = nlohmann::json::parse(r.body);
  EXPECT_EQ(body["basePath"], "");
  EXPECT_EQ(body["assistantName"], "Bridget");
  EXPECT_TRUE(body["assistantAvatar"].is_null());
  EXPECT_EQ(body["serverVersion"], "9.9.9");
  EXPECT_EQ(body["terminalEnabled"], false);
}

TEST_F(StaticFilesTest, AMissingFolderOrIndexIs503ThatSaysWhatToDo) {
  fs::remove(root_ / "index.html");
  auto no_index = get("/chat/main");
  EXPECT_EQ(no_index.status, 503);
  EXPECT_NE(no_index.body.find("install-control-ui.sh"), std::string::npos) << no_index.body;
  settings_.root = (dir_.path / "nowhere").string();
  EXPECT_EQ(get("/").status, 503);
  EXPECT_EQ(get("/favicon.ico").status, 503);
  // The config is not a file: still answered.
  EXPECT_EQ(get("/control-ui-config.json").status, 200);
}

}  // namespace
}  // namespace drawbridge::server
