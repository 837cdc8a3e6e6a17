// OpenClaw's Control UI served by the gateway from gateway.controlUi.root, on its own port,
// beside its own routes.

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>

#include "e2e/harness.h"

namespace drawbridge::e2e {
namespace {

// A Control UI folder as OpenClaw ships it: relative references in index.html, hashed assets.
void write_ui(const fs::path& root) {
  fs::create_directories(root / "assets");
  std::ofstream(root / "index.html") << R"(<!doctype html><html><head>
<script>var early = 1;</script>
<script type="module" crossorigin src="./assets/index-Ab12Cd34.js"></script>
<link rel="stylesheet" crossorigin href="./assets/core-Zz99Yy88.css">
</head><body><openclaw-app></openclaw-app></body></html>
)";
  std::ofstream(root / "assets" / "index-Ab12Cd34.js") << "console.log('ui');";
  std::ofstream(root / "assets" / "core-Zz99Yy88.css") << "body{}";
}

json ui_config(const std::string& root) {
  json cfg = echo_config();
  cfg["gateway"]["controlUi"] = {{"root", root}, {"assistantName", "Bridget"}};
  return cfg;
}

void expect_index(const HttpResponse& res, const std::string& target) {
  EXPECT_EQ(res.status, 200) << target << ": " << res.body;
  EXPECT_EQ(res.header("content-type"), "text/html; charset=utf-8") << target;
  EXPECT_NE(res.body.find(R"(src="/assets/index-Ab12Cd34.js")"), std::string::npos) << res.body;
  EXPECT_NE(res.body.find(R"(href="/assets/core-Zz99Yy88.css")"), std::string::npos) << res.body;
  EXPECT_NE(res.header("content-security-policy").find("frame-ancestors 'none'"), std::string::npos)
      << target;
  EXPECT_EQ(res.header("x-frame-options"), "DENY") << target;
}

TEST(ControlUi, ServesTheAppBesideTheGatewaysOwnRoutes) {
  TempDir dir;
  write_ui(dir.path() / "ui");
  Gateway gw(dir, ui_config("ui"));  // relative: to the config file's folder
  gw.start();
  expect_index(http(gw.port(), "GET", "/"), "/");
  expect_index(http(gw.port(), "GET", "/settings/advanced"), "/settings/advanced");
  expect_index(http(gw.port(), "GET", "/chat/main?session=x"), "/chat/main");

  auto js = http(gw.port(), "GET", "/settings/assets/index-Ab12Cd34.js");
  EXPECT_EQ(js.status, 200) << js.body;
  EXPECT_EQ(js.body, "console.log('ui');");
  EXPECT_EQ(js.header("cache-control"), "public, max-age=31536000, immutable");

  auto config = http(gw.port(), "GET", "/control-ui-config.json");
  EXPECT_EQ(config.status, 200) << config.body;
  EXPECT_EQ(config.json_body().value("assistantName", ""), "Bridget") << config.body;

  // The gateway's own routes win.
  auto health = http(gw.port(), "GET", "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.json_body().value("status", ""), "live") << health.body;
  auto ready = http(gw.port(), "GET", "/readyz");
  EXPECT_EQ(ready.json_body().value("ready", false), true) << ready.body;
  EXPECT_NE(http(gw.port(), "GET", "/metrics").body.find("drawbridge_"), std::string::npos);
  auto v1 = http(gw.port(), "GET", "/v1/messages?sessionKey=main");
  EXPECT_EQ(v1.status, 401) << v1.body;  // not the app: /v1 is the REST door
  EXPECT_EQ(http(gw.port(), "GET", "/v1/nothing-here").status, 401);
  // A method the UI does not take.
  auto post = http(gw.port(), "POST", "/chat/main", "{}");
  EXPECT_EQ(post.status, 405) << post.body;
  EXPECT_EQ(post.header("allow"), "GET, HEAD");
  // Nothing outside the folder.
  EXPECT_EQ(http(gw.port(), "GET", "/%2e%2e/config.json").status, 404);
  EXPECT_EQ(http(gw.port(), "GET", "/assets/..%2f..%2fconfig.json").status, 404);
}

TEST(ControlUi, AForeignHostNameGetsNothing) {
  TempDir dir;
  write_ui(dir.path() / "ui");
  Gateway gw(dir, ui_config((dir.path() / "ui").string()));
  gw.start();
  // A page whose DNS name was rebound to 127.0.0.1 must not read the app (nor anything).
  for (const char* target :
       {"/", "/settings/advanced", "/assets/index-Ab12Cd34.js", "/control-ui-config.json"}) {
    auto res = http(gw.port(), "GET", target, "", {{"Host", "evil.example:18789"}});
    EXPECT_EQ(res.status, 421) << target;
    EXPECT_EQ(res.body.find("openclaw-app"), std::string::npos) << target;
    EXPECT_EQ(res.body.find("console.log"), std::string::npos) << target;
  }
  expect_index(http(gw.port(), "GET", "/", "", {{"Host", "localhost"}}), "Host: localhost");
}

TEST(ControlUi, NotConfiguredKeepsThe404) {
  TempDir dir;
  write_ui(dir.path() / "ui");
  Gateway gw(dir, echo_config());
  gw.start();
  auto res = http(gw.port(), "GET", "/");
  EXPECT_EQ(res.status, 404) << res.body;
  EXPECT_NE(res.body.find("no route for /"), std::string::npos) << res.body;
  EXPECT_EQ(http(gw.port(), "GET", "/control-ui-config.json").status, 404);
}

TEST(ControlUi, RootAndNameChangesApplyWithoutARestart) {
  TempDir dir;
  write_ui(dir.path() / "ui");
  json cfg = ui_config("ui");
  Gateway gw(dir, cfg);
  gw.start();
  expect_index(http(gw.port(), "GET", "/"), "/");

  cfg["gateway"]["controlUi"] = {{"assistantName", "Renamed"}};  // no root: not served
  cfg["gateway"]["auth"]["token"] = gw.token();
  std::ofstream(dir.path() / "config.json", std::ios::trunc) << cfg.dump(2);
  gw.signal(SIGHUP);
  ASSERT_TRUE(gw.wait_for_log("config applied", 5s)) << gw.log();
  EXPECT_TRUE(gw.wait_for_log("the Control UI is no longer served", 1s)) << gw.log();
  EXPECT_EQ(http(gw.port(), "GET", "/").status, 404);

  write_ui(dir.path() / "ui2");
  cfg["gateway"]["controlUi"]["root"] = "ui2";
  std::ofstream(dir.path() / "config.json", std::ios::trunc) << cfg.dump(2);
  gw.signal(SIGHUP);
  ASSERT_TRUE(gw.wait_for_log("Control UI served from " + (dir.path() / "ui2").string(), 5s))
      << gw.log();
  expect_index(http(gw.port(), "GET", "/chat/main"), "/chat/main");
  auto config = http(gw.port(), "GET", "/control-ui-config.json");
  EXPECT_EQ(config.json_body().value("assistantName", ""), "Renamed") << config.body;
  // No restart: still the first generation.
  EXPECT_EQ(gw.log().find("generation 2"), std::string::npos) << gw.log();
}

}  // namespace
}  // namespace drawbridge::e2e
