// The Control UI through the server's HTTP sessions: what goes on the wire, and where the UI
// stands among the gateway's own routes.

#include <fstream>

#include "unit/server/server_fixture.h"
#include "unit/store/temp_dir.h"

namespace drawbridge::server {
namespace {

class ControlUiHttpTest : public ServerTest {
 protected:
  void tune(ServerOptions& o) override {
    std::filesystem::create_directories(dir_.path / "assets");
    std::ofstream(dir_.path / "index.html") << R"(<script src="./assets/a-00000000.js"></script>)";
    std::ofstream(dir_.path / "assets" / "a-00000000.js") << "let a = 1;";
    o.control_ui_root = dir_.path.string();
  }

  // Requests on one keep-alive connection, answers read in order.
  std::vector<http::response<http::string_body>> exchange(
      const std::vector<std::pair<http::verb, std::string>>& requests) {
    asio::io_context io;
    beast::tcp_stream stream(io);
    stream.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                                           static_cast<unsigned short>(port())));
    stream.expires_after(5s);
    beast::flat_buffer buffer;
    std::vector<http::response<http::string_body>> answers;
    for (const auto& [verb, target] : requests) {
      http::request<http::string_body> req{verb, target, 11};
      req.set(http::field::host, "127.0.0.1");
      req.keep_alive(true);
      http::write(stream, req);
      http::response_parser<http::string_body> parser;
      parser.skip(verb == http::verb::head);  // a HEAD answer has headers only
      http::read(stream, buffer, parser);
      answers.push_back(parser.release());
    }
    return answers;
  }

  store::test_support::TempDir dir_;
};

TEST_F(ControlUiHttpTest, HeadSendsTheLengthAndNoBodyAndTheConnectionGoesOn) {
  auto answers = exchange({{http::verb::head, "/assets/a-00000000.js"},
                           {http::verb::get, "/assets/a-00000000.js"},
                           {http::verb::head, "/chat/main"},
                           {http::verb::get, "/chat/main"}});
  ASSERT_EQ(answers.size(), 4u);
  EXPECT_EQ(answers[0].result_int(), 200u);
  EXPECT_EQ(answers[0][http::field::content_length], "10");
  EXPECT_TRUE(answers[0].body().empty());
  // Had the HEAD sent body bytes, this answer would be garbage.
  EXPECT_EQ(answers[1].body(), "let a = 1;");
  EXPECT_EQ(answers[1][http::field::content_length], "10");
  EXPECT_EQ(answers[2][http::field::content_length], std::to_string(answers[3].body().size()));
  EXPECT_EQ(answers[3].body(), R"(<script src="/assets/a-00000000.js"></script>)");
  EXPECT_EQ(answers[3][http::field::x_frame_options], "DENY");
}

TEST_F(ControlUiHttpTest, TheGatewaysRoutesWinAndV1IsNeverTheApp) {
  auto answers = exchange({{http::verb::get, "/healthz"},
                           {http::verb::get, "/v1/messages"},
                           {http::verb::get, "/v1"},
                           {http::verb::get, "/"}});
  EXPECT_EQ(json::parse(answers[0].body())["status"], "live");
  EXPECT_EQ(answers[1].result_int(), 401u);
  EXPECT_EQ(answers[2].result_int(), 404u);
  EXPECT_NE(answers[2].body().find("no route for /v1"), std::string::npos) << answers[2].body();
  EXPECT_EQ(answers[3].result_int(), 200u);
}

TEST_F(ControlUiHttpTest, SetControlUiAppliesToTheNextRequest) {
  on_io([this] { server_->set_control_ui("", "drawbridge"); });
  EXPECT_EQ(exchange({{http::verb::get, "/"}})[0].result_int(), 404u);
  on_io([this] { server_->set_control_ui(dir_.path.string(), "Other"); });
  auto config = exchange({{http::verb::get, "/control-ui-config.json"}})[0];
  EXPECT_EQ(json::parse(config.body())["assistantName"], "Other");
}

}  // namespace
}  // namespace drawbridge::server
