#include "agents/openai/openai_probe.h"

#include <boost/asio/post.hpp>
#include <memory>
#include <nlohmann/json.hpp>

#include "agents/openai/beast_transport.h"
#include "agents/openai/completion.h"
#include "agents/openai/openai_agent.h"

namespace drawbridge::agents::openai {

namespace {

struct Probe : std::enable_shared_from_this<Probe> {
  boost::asio::io_context& io;
  OpenAiSettings settings;
  std::function<void(ProbeResult)> done;
  std::shared_ptr<BeastTransport> transport;
  core::Executor& executor;
  core::SystemClock clock;
  std::unique_ptr<HttpExchange> models_call;
  HttpHead head;
  std::string body;
  std::unique_ptr<OpenAiAgent> agent;
  std::unique_ptr<pipeline::Turn> turn;
  ProbeResult result;

  Probe(boost::asio::io_context& i, core::Executor& e, OpenAiSettings s,
        std::function<void(ProbeResult)> d)
      : io(i), settings(std::move(s)), done(std::move(d)), executor(e) {}

  void start() {
    transport = std::make_shared<BeastTransport>(io, settings.base_url, settings.connect_timeout);
    result.endpoint = transport->endpoint();
    HttpRequest r;
    r.method = "GET";
    r.target = "/models";
    if (!settings.api_key.empty())
      r.headers.push_back({"Authorization", "Bearer " + settings.api_key});
    auto self = shared_from_this();
    ExchangeCallbacks cb;
    cb.on_head = [self](const HttpHead& h) { self->head = h; };
    cb.on_body = [self](std::string_view piece) {
      if (self->body.size() < (4u << 20)) self->body.append(piece);
    };
    cb.on_end = [self](const std::string& error) { self->models_read(error); };
    models_call = transport->send(std::move(r), std::move(cb));
  }

  void models_read(const std::string& error) {
    if (!error.empty()) {
      return finish(false,
                    "cannot reach the model endpoint at " + result.endpoint + " (" + error + ")");
    }
    const std::string at = "agents." + settings.agent_id + ".";
    if (head.status == 401 || head.status == 403) {
      return finish(false, "GET /models returned " + std::to_string(head.status) + ": " +
                               error_summary(body, settings.api_key) + " - check " + at +
                               settings.api_key_key);
    }
    if (head.status == 200) {
      auto j = nlohmann::json::parse(body, nullptr, false);
      if (j.is_object() && j.contains("data") && j["data"].is_array()) {
        result.models = static_cast<std::int64_t>(j["data"].size());
        for (const auto& m : j["data"]) {
          if (m.is_object() && m.value("id", "") == settings.model) result.model_listed = true;
        }
      }
    }
    // A server without /models (or another answer) is not fatal: the completion decides.
    complete();
  }

  void complete() {
    OpenAiSettings s = settings;
    s.max_retries = 0;
    agent = std::make_unique<OpenAiAgent>(transport, executor, clock, s);
    pipeline::TurnRequest req;
    req.run_id = "probe";
    req.session_key = "probe";
    req.text = "Reply with the single word OK.";
    auto self = shared_from_this();
    turn = agent->start(std::move(req), {[](std::string_view) {},
                                         [self](pipeline::TurnOutcome o) { self->answered(o); }});
  }

  void answered(const pipeline::TurnOutcome& o) {
    result.latency_ms = agent->stats().last_latency_ms;
    result.reply = o.text.substr(0, 80);
    if (o.kind != pipeline::TurnOutcome::Kind::completed) {
      return finish(false, o.error.empty() ? "the test completion did not complete" : o.error);
    }
    std::string msg = "ok, " + result.endpoint + " answered with model " + settings.model + " in " +
                      std::to_string(result.latency_ms) + " ms";
    if (result.models >= 0 && !result.model_listed) {
      msg += " (note: GET /models does not list " + settings.model + ")";
    }
    finish(true, msg);
  }

  void finish(bool ok, std::string message) {
    result.ok = ok;
    result.message = std::move(message);
    // Not from inside a callback of what is released here; the callbacks hold this probe.
    boost::asio::post(io, [self = shared_from_this()] {
      self->turn.reset();
      self->agent.reset();
      self->models_call.reset();
      auto report = std::move(self->done);
      self->done = nullptr;
      if (report) report(self->result);
    });
  }
};

}  // namespace

void probe(boost::asio::io_context& io, core::Executor& executor, OpenAiSettings settings,
           std::chrono::milliseconds timeout, std::function<void(ProbeResult)> done) {
  settings.first_token_timeout = std::min(settings.first_token_timeout, timeout);
  settings.total_timeout = timeout;
  auto p = std::make_shared<Probe>(io, executor, std::move(settings), std::move(done));
  p->start();
}

}  // namespace drawbridge::agents::openai
