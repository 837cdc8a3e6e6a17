#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/<target>/ (committed; rerun after editing).

fuzz_frames inputs are frames separated by 0x1E; frame 0 goes before the harness's `connect`,
the others after it; a frame starting with 0x02 is sent as a binary frame.
"""
import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "fuzz-token-0123456789abcdef"
RS = "\x1e"


def req(method, params=None, id_="r1"):
    f = {"type": "req", "id": id_, "method": method}
    if params is not None:
        f["params"] = params
    return json.dumps(f, separators=(",", ":"))


def connect(**over):
    p = {"minProtocol": 4, "maxProtocol": 4,
         "client": {"id": "seed", "version": "1", "platform": "linux", "mode": "cli"},
         "role": "operator", "scopes": ["operator.admin"], "auth": {"token": TOKEN}}
    p.update(over)
    return req("connect", p, "c1")


def deep(n, open_="[", close="]"):
    return open_ * n + close * n


chat = req("chat.send", {"sessionKey": "main", "message": "hello", "idempotencyKey": "k1"})
frames = {
    # After the harness's connect.
    "chat_send": RS + chat,
    "chat_round_trip": RS + RS.join([chat, req("chat.history", {"sessionKey": "main", "limit": 10}, "r2"),
                                     req("chat.abort", {"sessionKey": "main"}, "r3")]),
    "send": RS + req("send", {"to": "main", "message": "hi", "idempotencyKey": "k2", "channel": "local"}),
    "status_health": RS + RS.join([req("status", {}), req("health", {}, "r2"), req("config.get", {}, "r3")]),
    "config_patch": RS + req("config.patch", {"raw": '{"logging":{"level":"debug"}}', "note": "n"}),
    "config_apply": RS + req("config.apply", {"raw": "{}", "restartDelayMs": 10}),
    "restart": RS + req("gateway.restart.request", {"reason": "r", "force": False, "waitMs": 1000, "delayMs": 0}),
    "restart_overflow": RS + req("gateway.restart.request", {"waitMs": 9223372036854775807}),
    "stop_update": RS + RS.join([req("gateway.stop", {"reason": "x"}), req("gateway.update", {"binary": "/bin/true"}, "r2")]),
    "second_connect": RS + connect(),
    "unknown_method": RS + req("no.such.method", {}),
    "post_type_int": RS + '{"type":1}',
    "post_null": RS + "null",
    "post_array": RS + "[]",
    "post_malformed": RS + '{"type":"req","id":',
    "post_id_int": RS + '{"type":"req","id":1,"method":"health"}',
    "post_params_types": RS + RS.join([
        req("chat.send", {"sessionKey": 1, "message": None, "idempotencyKey": []}),
        req("chat.send", {"sessionKey": "main", "message": {"a": 1}, "idempotencyKey": "k"}, "r2"),
        req("chat.history", {"sessionKey": "main", "limit": "10"}, "r3"),
        req("chat.history", [], "r4")]),
    "post_binary": RS + "\x02" + chat,
    # Before connect.
    "pre_type_int": '{"type":1}',
    "pre_null": "null",
    "pre_array": "[]",
    "pre_string": '"req"',
    "pre_binary": "\x02\x00\x01binary",
    "pre_not_connect": req("health", {}),
    "pre_own_connect": connect() + RS + chat,
    "pre_connect_role_int": connect(role=1),
    "pre_connect_client_id_int": connect(client={"id": 1, "version": "1", "platform": "linux", "mode": "cli"}),
    "pre_connect_scopes_string": connect(scopes="operator.admin") + RS + req("gateway.stop", {}),
    "pre_connect_scopes_null": connect(scopes=None),
    "pre_connect_bad_token": connect(auth={"token": "wrong"}),
    "pre_connect_auth_int": connect(auth=1),
    "pre_connect_protocol": connect(minProtocol=99, maxProtocol=1),
    "pre_connect_params_array": req("connect", [], "c1"),
    # Deep nesting (issue 10, item 2): params nested deep, after connect.
    "deep_params": RS + '{"type":"req","id":"d","method":"chat.send","params":' + deep(50000) + "}",
    "deep_pre": deep(20000),
}

http_seeds = {
    "readyz": "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "healthz_head": "HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    "metrics": "GET /metrics HTTP/1.0\r\n\r\n",
    "not_found": "GET /nope?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
    "post_message": None,  # below
    "post_wrong_token": "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nContent-Length: 2\r\n\r\n{}",
    "history": f"GET /v1/messages?sessionKey=main&limit=5 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n",
    "history_bad_limit": f"GET /v1/messages?sessionKey=&limit=-1 HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n",
    "put_messages": f"PUT /v1/messages HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\n\r\n",
    "ws_upgrade": "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                  "Origin: http://evil.example\r\n\r\n",
    "pipelined": "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /readyz HTTP/1.1\r\nHost: a\r\n\r\n",
    "chunked": f"POST /v1/messages HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n"
               "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"ses\r\n0\r\n\r\n",
    "garbage": "\x00\xff GET / HTTP/9.9\r\n\r\n",
    "deep_body": None,  # below
}


def post(body, token=True):
    auth = f"Authorization: Bearer {TOKEN}\r\n" if token else ""
    return (f"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(body.encode('latin-1'))}\r\n\r\n{body}")


http_seeds["post_message"] = post('{"sessionKey":"main","message":"hello","idempotencyKey":"k1"}')
http_seeds["post_no_token"] = post('{"sessionKey":"main","message":"hi","idempotencyKey":"a"}', token=False)
http_seeds["post_message_types"] = post('{"sessionKey":1,"message":null,"idempotencyKey":[]}')
http_seeds["post_null_body"] = post("null")
http_seeds["deep_body"] = post(deep(20000))

config_seeds = {
    "empty": "",
    "empty_object": "{}",
    "readme_example": """// the README's example
{
  "gateway": { "port": 18789, "auth": { "token": "change-me" } },
  "agents": {
    "default": "main",
    "main": { "type": "echo", "delayMs": 200, "chunkChars": 4 },
    "shell": { "type": "exec", "command": ["./my-bot.sh"], "timeoutMs": 60000 }
  },
  "channels": { "local": { "agent": "shell" } }
}
""",
    "full": json.dumps({
        "$schema": "x", "meta": {"lastTouchedAt": "2024-01-01T00:00:00Z", "lastTouchedVersion": "0.1.0"},
        "logging": {"level": "info"},
        "gateway": {"bind": "127.0.0.1", "port": 18789, "auth": {"token": "0123456789abcdef0123"},
                    "reload": {"mode": "hybrid", "debounceMs": 300, "deferralTimeoutMs": 300000},
                    "restart": {"delayMs": 0}},
        "store": {"driver": "sqlite", "dataDir": "data"},
        "messages": {"inbound": {"debounceMs": 0}, "queue": {"mode": "followup", "cap": 20, "drop": "old"}},
        "agents": {"default": "main", "main": {"type": "echo"},
                   "x": {"type": "exec", "command": ["/bin/cat"], "env": {"A": "b"}}},
        "channels": {"local": {"agent": "main", "enabled": True}},
    }, indent=1),
    "comments": "/* block */ {\n // line\n \"logging\": {\"level\": \"debug\"}, }\n",
    "duplicate_keys": '{"gateway":{"port":1},"gateway":{"port":2}}',
    "wrong_types": '{"gateway":{"port":"x","auth":{"token":987654321987654321}},"agents":[],"channels":null}',
    "secret_in_error": '{"gateway":{"auth":{"token":"cfg-token-SECRET-abc"',
    "nul_inside": '{"logging":{}}\x00{"x":1}',
    "deep_meta": '{"meta":' + deep(50000) + "}",
    "deep_objects": deep(3000, '{"a":', "}").replace('{"a":}', '{"a":1}'),
}


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, text in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(text.encode("latin-1") if isinstance(text, str) else text)


write("fuzz_frames", {k: v.encode("utf-8") for k, v in frames.items()})
write("fuzz_http", http_seeds)
write("fuzz_config", config_seeds)
