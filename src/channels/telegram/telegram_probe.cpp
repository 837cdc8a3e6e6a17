#include "channels/telegram/telegram_probe.h"

#include <boost/asio/post.hpp>
#include <memory>

#include "channels/telegram/bot_api.h"

namespace drawbridge::channels::telegram {

namespace {

using nlohmann::json;

std::string id_text(const json& id) {
  if (id.is_number_integer()) return std::to_string(id.get<std::int64_t>());
  if (id.is_string()) return id.get<std::string>();
  return "?";
}

ProbeResult describe(const ApiResult& r) {
  ProbeResult p;
  if (r.ok && r.result.is_object()) {
    p.ok = true;
    const json name = r.result.value("username", json());
    p.username = name.is_string() ? name.get<std::string>().substr(0, 64) : "";
    p.bot_id = id_text(r.result.value("id", json()));
    p.message = "ok, bot @" + (p.username.empty() ? "?" : p.username) + " (id " + p.bot_id + ")";
    return p;
  }
  if (r.ok) {
    p.message = "the Bot API answered getMe without a bot";
  } else if (r.error_code == 401 || r.error_code == 404) {
    // Telegram answers 404 to a token that is not even well-formed.
    p.message = "the token was refused (" + std::to_string(r.error_code) + " " +
                (r.description.empty() ? "Unauthorized" : r.description) + ")";
  } else if (r.error_code != 0) {
    p.message = "getMe failed: " + std::to_string(r.error_code) + " " + r.description;
  } else {
    p.message = r.description.empty() ? "getMe failed" : r.description;
  }
  return p;
}

}  // namespace

void probe(boost::asio::io_context& io, const std::string& api_root, const std::string& token,
           std::chrono::milliseconds timeout, std::function<void(ProbeResult)> done) {
  if (auto bad = BotApi::check_root(api_root)) {
    ProbeResult p;
    p.message = "apiRoot: " + *bad;
    boost::asio::post(io, [done = std::move(done), p = std::move(p)] { done(p); });
    return;
  }
  auto api = std::make_shared<BotApi>(io, api_root, token);
  api->call("getMe", json::object(), timeout,
            [&io, api, done = std::move(done)](ApiResult r) mutable {
              done(describe(r));
              // Released on a later turn of the loop: this runs inside the client's own call.
              boost::asio::post(io, [api = std::move(api)] {});
            });
}

}  // namespace drawbridge::channels::telegram
