#include "channels/irc/irc_message.h"

#include <gtest/gtest.h>

#include <string>

// IRC lines as servers send them, and the lines drawbridge sends: parsing (tags, prefix,
// parameters, trailing), splitting at 512 bytes without breaking a UTF-8 sequence, CTCP,
// addressing, and input no server should send.

namespace drawbridge::channels::irc {
namespace {

std::size_t utf8_errors(const std::string& s) {
  // Counts bytes that do not start or continue a valid sequence (a simple validator).
  std::size_t bad = 0;
  for (std::size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) {
      ++bad;
      ++i;
      continue;
    }
    for (std::size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) {
        ++bad;
        n = 1;
        break;
      }
    }
    i += n;
  }
  return bad;
}

TEST(IrcMessage, ParsesTagsPrefixParamsAndTrailing) {
  auto m = parse(
      "@msgid=abc\\:1\\s2;time=2026-12-06T00:00:00Z;flag :alice!al@host.example "
      "PRIVMSG #ops :hello there :)\r\n");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->tags.size(), 3u);
  ASSERT_NE(m->tag("msgid"), nullptr);
  EXPECT_EQ(*m->tag("msgid"), "abc;1 2");
  ASSERT_NE(m->tag("flag"), nullptr);
  EXPECT_EQ(*m->tag("flag"), "");
  EXPECT_EQ(m->tag("absent"), nullptr);
  EXPECT_EQ(m->prefix, "alice!al@host.example");
  EXPECT_EQ(m->command, "PRIVMSG");
  ASSERT_EQ(m->params.size(), 2u);
  EXPECT_EQ(m->params[0], "#ops");
  EXPECT_EQ(m->params[1], "hello there :)");
  EXPECT_EQ(nick_of(m->prefix), "alice");
}

TEST(IrcMessage, ParsesNumericsWithoutTrailingAndLowerCaseCommands) {
  auto m = parse(":irc.test 433 * drawbot :Nickname already in use");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->command, "433");
  EXPECT_EQ(m->param(1), "drawbot");
  EXPECT_EQ(m->param(2), "Nickname already in use");
  EXPECT_EQ(m->param(7), "");
  EXPECT_EQ(nick_of(m->prefix), "") << "a server is nobody's nick";

  m = parse("ping  token");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->command, "PING");
  ASSERT_EQ(m->params.size(), 1u);
  EXPECT_EQ(m->params[0], "token");

  m = parse("PRIVMSG #x :");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->params.size(), 2u);
  EXPECT_EQ(m->params[1], "");
}

TEST(IrcMessage, MalformedLinesAreRefusedOrBoundedNeverACrash) {
  EXPECT_FALSE(parse(""));
  EXPECT_FALSE(parse("\r\n"));
  EXPECT_FALSE(parse(":only.a.prefix"));
  EXPECT_FALSE(parse("@a=b;c=d"));
  EXPECT_FALSE(parse(":"));
  EXPECT_FALSE(parse("@"));
  auto m = parse("@=x;;\\ :!@ X a\\");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->command, "X");
  EXPECT_EQ(nick_of(m->prefix), "");
  // A line of 1000 parameters keeps a bounded number of them; the rest is the last one.
  std::string many = "CMD";
  for (int i = 0; i < 1000; ++i) many += " p";
  m = parse(many);
  ASSERT_TRUE(m);
  EXPECT_LE(m->params.size(), 32u);
  // NUL bytes and invalid UTF-8 parse as bytes and come out clean.
  static constexpr char kHostile[] = "PRIVMSG bot :a\0b\xff\xc3(\xed\xa0\x80z";
  const std::string hostile(kHostile, sizeof(kHostile) - 1);
  m = parse(hostile);
  ASSERT_TRUE(m);
  const std::string clean = sanitize_utf8(m->param(1));
  EXPECT_EQ(utf8_errors(clean), 0u) << clean;
  EXPECT_EQ(clean.find('\0'), std::string::npos);
  EXPECT_EQ(clean.substr(0, 2), "ab");
  EXPECT_EQ(clean.back(), 'z');
}

TEST(IrcMessage, SanitizeKeepsValidUtf8AndDropsFormatting) {
  EXPECT_EQ(sanitize_utf8("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"),
            "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(sanitize_utf8("\x02"
                          "bold\x02 \x03"
                          "04,12red\x03 \x1fu\x0f"),
            "bold red u");
  EXPECT_EQ(sanitize_utf8("caf\xe9"), "caf\xc3\xa9") << "Latin-1 read as Latin-1";
  EXPECT_EQ(sanitize_utf8("a\r\nb\tc"), "ab\tc");
}

TEST(IrcMessage, FormatAddsTheTrailingColonOnlyWhenNeeded) {
  EXPECT_EQ(format("NICK", {"drawbot"}), "NICK drawbot");
  EXPECT_EQ(format("PRIVMSG", {"#ops", "hi there"}), "PRIVMSG #ops :hi there");
  EXPECT_EQ(format("PRIVMSG", {"#ops", ":)"}), "PRIVMSG #ops ::)");
  EXPECT_EQ(format("PONG", {""}), "PONG :");
  EXPECT_EQ(format("USER", {"u", "0", "*", "Real Name"}), "USER u 0 * :Real Name");
}

TEST(IrcMessage, NamesFollowRfc1459CaseMapping) {
  EXPECT_EQ(lower("Bot[A]\\~"), "bot{a}|^");
  EXPECT_TRUE(same_name("DrawBot", "drawbot"));
  EXPECT_TRUE(same_name("a[b]", "A{B}"));
  EXPECT_FALSE(same_name("drawbot", "drawbot_"));
  EXPECT_TRUE(is_channel_name("#ops"));
  EXPECT_TRUE(is_channel_name("&local"));
  EXPECT_FALSE(is_channel_name("#"));
  EXPECT_FALSE(is_channel_name("#a b"));
  EXPECT_FALSE(is_channel_name("#a,#b"));
  EXPECT_FALSE(is_channel_name("ops"));
  EXPECT_TRUE(is_valid_nick("drawbot_"));
  EXPECT_TRUE(is_valid_nick("[x]`^{}|"));
  EXPECT_FALSE(is_valid_nick("9lives"));
  EXPECT_FALSE(is_valid_nick("-x"));
  EXPECT_FALSE(is_valid_nick("a b"));
  EXPECT_FALSE(is_valid_nick("a\r\nQUIT"));
  EXPECT_FALSE(is_valid_target("#ops\r\nQUIT :x"));
  EXPECT_FALSE(is_valid_target(""));
}

TEST(IrcMessage, CtcpIsRecognised) {
  EXPECT_TRUE(is_ctcp("\x01VERSION\x01"));
  EXPECT_TRUE(
      is_ctcp("\x01"
              "ACTION waves\x01"));
  EXPECT_TRUE(is_ctcp("\x01PING 123"));  // unterminated: still CTCP
  EXPECT_FALSE(is_ctcp("hello \x01"));
  EXPECT_FALSE(is_ctcp(""));
}

TEST(IrcMessage, AddressedByNickOrPrefix) {
  EXPECT_EQ(addressed_text("drawbot: hi", "drawbot", ""), "hi");
  EXPECT_EQ(addressed_text("DrawBot, hi there", "drawbot", ""), "hi there");
  EXPECT_EQ(addressed_text("drawbot:hi", "drawbot", ""), "hi");
  EXPECT_EQ(addressed_text("@drawbot hi", "drawbot", ""), "hi");
  EXPECT_EQ(addressed_text("!status now", "drawbot", "!"), "status now");
  EXPECT_FALSE(addressed_text("drawbotany: hi", "drawbot", ""));
  EXPECT_FALSE(addressed_text("drawbot hi", "drawbot", ""));
  EXPECT_FALSE(addressed_text("hi drawbot: x", "drawbot", ""));
  EXPECT_FALSE(addressed_text("drawbot:   ", "drawbot", "")) << "nothing left to answer";
  EXPECT_FALSE(addressed_text("!", "drawbot", "!"));
  EXPECT_FALSE(addressed_text("!hi", "drawbot", "")) << "no prefix configured";
  EXPECT_FALSE(addressed_text("drawbot", "drawbot", ""));
  EXPECT_FALSE(addressed_text("", "drawbot", "!"));
}

TEST(IrcMessage, SplitsAtSpacesWithinTheBudget) {
  auto parts = split_text("aaaa bbbb cccc", 10);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0], "aaaa bbbb");
  EXPECT_EQ(parts[1], "cccc");
  // No space in the second half: a hard cut.
  parts = split_text("abcdefghijklmnop", 5);
  ASSERT_EQ(parts.size(), 4u);
  EXPECT_EQ(parts[0], "abcde");
  EXPECT_EQ(parts[3], "p");
  EXPECT_EQ(split_text("", 10).size(), 0u);
}

TEST(IrcMessage, SplitsNeverInsideAUtf8Sequence) {
  std::string text;
  for (int i = 0; i < 300; ++i) text += "\xe2\x82\xac";  // €, 3 bytes each, no spaces
  text += "\xf0\x9f\x98\x80";                            // one 4-byte emoji
  for (std::size_t budget : {4u, 5u, 7u, 100u, 401u}) {
    std::string joined;
    for (const auto& p : split_text(text, budget)) {
      EXPECT_LE(p.size(), budget);
      EXPECT_EQ(utf8_errors(p), 0u) << "budget " << budget;
      joined += p;
    }
    EXPECT_EQ(joined, text) << "budget " << budget;
  }
}

TEST(IrcMessage, PrivmsgLinesFit512BytesWithTheRelayPrefix) {
  std::string text;
  for (int i = 0; i < 400; ++i) text += (i ? " " : "") + std::string("word\xc3\xa9");
  const std::size_t reserve = std::string(":drawbot!~drawbot@localhost ").size();
  const auto lines = privmsg_lines("#ops", text, reserve);
  ASSERT_GE(lines.size(), 6u);
  std::string joined;
  for (const auto& l : lines) {
    EXPECT_LE(l.size() + 2 + reserve, kMaxLineBytes) << l;
    ASSERT_EQ(l.rfind("PRIVMSG #ops :", 0), 0u) << l;
    EXPECT_EQ(utf8_errors(l), 0u);
    joined += (joined.empty() ? "" : " ") + l.substr(14);
  }
  EXPECT_EQ(joined, text) << "split at spaces, nothing lost";
}

TEST(IrcMessage, PrivmsgLinesCarryEachLineOfTheTextAndNoLineBreaks) {
  const auto lines = privmsg_lines("alice", "one\r\ntwo\n\nthree\rQUIT :x", 0);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "PRIVMSG alice :one");
  EXPECT_EQ(lines[1], "PRIVMSG alice :two");
  EXPECT_EQ(lines[2], "PRIVMSG alice :three");
  EXPECT_EQ(lines[3], "PRIVMSG alice :QUIT :x");
  EXPECT_TRUE(privmsg_lines("alice", "\n\n", 0).empty());
  EXPECT_EQ(privmsg_lines("alice", std::string("a\0b", 3), 0).at(0), "PRIVMSG alice :ab");
}

TEST(IrcMessage, NickCandidatesAreBoundedVariants) {
  EXPECT_EQ(nick_candidate("drawbot", 0, false), "drawbot");
  EXPECT_EQ(nick_candidate("drawbot", 1, false), "drawbot_");
  EXPECT_EQ(nick_candidate("drawbot", 2, false), "drawbot__");
  EXPECT_EQ(nick_candidate("drawbot", 2, true), "drawb__");
  EXPECT_EQ(nick_candidate("ab", 4, true), "a____");
}

TEST(IrcMessage, Base64ForSaslPlain) {
  EXPECT_EQ(base64(""), "");
  EXPECT_EQ(base64("f"), "Zg==");
  EXPECT_EQ(base64("fo"), "Zm8=");
  EXPECT_EQ(base64("foo"), "Zm9v");
  EXPECT_EQ(base64(std::string("\0bot\0secret", 11)), "AGJvdABzZWNyZXQ=");
}

}  // namespace
}  // namespace drawbridge::channels::irc
