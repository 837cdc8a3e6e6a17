#include "channels/irc/irc_message.h"

#include <algorithm>
#include <cctype>

namespace drawbridge::channels::irc {

namespace {

// Bounds for hostile lines: a server sends at most a few tags and 15 parameters.
constexpr std::size_t kMaxTags = 64;
constexpr std::size_t kMaxParams = 32;

std::string unescape_tag(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '\\') {
      out += v[i];
      continue;
    }
    if (++i >= v.size()) break;  // a lone trailing backslash is dropped (IRCv3)
    switch (v[i]) {
      case ':':
        out += ';';
        break;
      case 's':
        out += ' ';
        break;
      case 'r':
        out += '\r';
        break;
      case 'n':
        out += '\n';
        break;
      default:
        out += v[i];
        break;  // "\\" and unknown escapes: the character itself
    }
  }
  return out;
}

std::string_view next_word(std::string_view& rest) {
  const auto space = rest.find(' ');
  std::string_view word = rest.substr(0, space);
  rest = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  return word;
}

char lower_char(char c) {
  if (c >= 'A' && c <= 'Z') return static_cast<char>(c - 'A' + 'a');
  switch (c) {
    case '[':
      return '{';
    case ']':
      return '}';
    case '\\':
      return '|';
    case '~':
      return '^';
    default:
      return c;
  }
}

bool special_nick_char(char c) {
  return c == '-' || c == '[' || c == ']' || c == '\\' || c == '`' || c == '^' || c == '{' ||
         c == '}' || c == '|' || c == '_';
}

// The length of the valid UTF-8 sequence at s[i], 0 when there is none.
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  }
  return n;
}

bool continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

}  // namespace

const std::string* Message::tag(std::string_view key) const {
  for (const auto& [k, v] : tags) {
    if (k == key) return &v;
  }
  return nullptr;
}

const std::string& Message::param(std::size_t i) const {
  static const std::string empty;
  return i < params.size() ? params[i] : empty;
}

std::optional<Message> parse(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
  Message m;
  std::string_view rest = line;
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  if (!rest.empty() && rest.front() == '@') {
    std::string_view tags = next_word(rest).substr(1);
    while (!tags.empty() && m.tags.size() < kMaxTags) {
      const auto semi = tags.find(';');
      std::string_view tag = tags.substr(0, semi);
      tags = semi == std::string_view::npos ? std::string_view() : tags.substr(semi + 1);
      if (tag.empty()) continue;
      const auto eq = tag.find('=');
      std::string key(tag.substr(0, eq));
      if (key.empty()) continue;
      m.tags.emplace_back(std::move(key), eq == std::string_view::npos
                                              ? std::string()
                                              : unescape_tag(tag.substr(eq + 1)));
    }
  }
  if (!rest.empty() && rest.front() == ':') m.prefix = std::string(next_word(rest).substr(1));
  const std::string_view command = next_word(rest);
  if (command.empty()) return std::nullopt;
  m.command.reserve(command.size());
  for (char c : command) {
    m.command += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  }
  while (!rest.empty()) {
    if (rest.front() == ':' || m.params.size() + 1 >= kMaxParams) {
      if (rest.front() == ':') rest.remove_prefix(1);
      m.params.emplace_back(rest);
      break;
    }
    m.params.emplace_back(next_word(rest));
  }
  return m;
}

std::string format(std::string_view command, const std::vector<std::string>& params) {
  std::string out(command);
  for (std::size_t i = 0; i < params.size(); ++i) {
    out += ' ';
    const auto& p = params[i];
    if (i + 1 == params.size() &&
        (p.empty() || p.find(' ') != std::string::npos || p.front() == ':')) {
      out += ':';
    }
    out += p;
  }
  return out;
}

std::string nick_of(std::string_view prefix) {
  const auto bang = prefix.find('!');
  if (bang == std::string_view::npos) {
    // "nick@host" happens; a bare name with a dot is a server.
    const auto at = prefix.find('@');
    if (at != std::string_view::npos) return std::string(prefix.substr(0, at));
    if (prefix.find('.') != std::string_view::npos) return {};
    return std::string(prefix);
  }
  return std::string(prefix.substr(0, bang));
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = lower_char(c);
  return out;
}

bool same_name(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower_char(a[i]) != lower_char(b[i])) return false;
  }
  return true;
}

bool is_channel_name(std::string_view s) {
  if (s.size() < 2 || s.size() > 200) return false;
  if (s[0] != '#' && s[0] != '&' && s[0] != '+' && s[0] != '!') return false;
  for (char c : s) {
    if (c == ' ' || c == ',' || c == '\x07' || c == '\0' || c == '\r' || c == '\n') return false;
  }
  return true;
}

bool is_valid_nick(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  if (std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '-') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           special_nick_char(c);
  });
}

bool is_valid_target(std::string_view s) {
  return is_channel_name(s) || is_valid_nick(s);
}

bool is_ctcp(std::string_view text) {
  return !text.empty() && text.front() == '\x01';
}

std::optional<std::string> addressed_text(std::string_view text, std::string_view nick,
                                          std::string_view command_prefix) {
  auto rest_of = [](std::string_view rest) -> std::optional<std::string> {
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
    if (rest.empty()) return std::nullopt;
    return std::string(rest);
  };
  if (!command_prefix.empty() && text.substr(0, command_prefix.size()) == command_prefix) {
    return rest_of(text.substr(command_prefix.size()));
  }
  if (nick.empty()) return std::nullopt;
  std::string_view t = text;
  const bool at = !t.empty() && t.front() == '@';
  if (at) t.remove_prefix(1);
  if (t.size() < nick.size() || !same_name(t.substr(0, nick.size()), nick)) return std::nullopt;
  t.remove_prefix(nick.size());
  if (t.empty()) return std::nullopt;
  // "bot: hi", "bot, hi"; "@bot hi" too. "botany is fun" is not addressed.
  if (t.front() == ':' || t.front() == ',') return rest_of(t.substr(1));
  if (at && (t.front() == ' ' || t.front() == '\t')) return rest_of(t);
  return std::nullopt;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\x03') {  // colour: ^C, up to two digits, optionally ",<up to two digits>"
      ++i;
      auto digits = [&] {
        for (int k = 0; k < 2 && i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]));
             ++k) {
          ++i;
        }
      };
      const std::size_t before = i;
      digits();
      if (i > before && i + 1 < s.size() && s[i] == ',' &&
          std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
        ++i;
        digits();
      }
      continue;
    }
    if (c < 0x20 && c != '\t') {
      ++i;
      continue;
    }
    const std::size_t n = utf8_sequence(s, i);
    if (n == 0) {  // Latin-1: U+0080..U+00FF as two bytes
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
      ++i;
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

std::vector<std::string> split_text(std::string_view text, std::size_t max_bytes) {
  max_bytes = std::max<std::size_t>(max_bytes, 4);
  std::vector<std::string> out;
  while (!text.empty()) {
    if (text.size() <= max_bytes) {
      out.emplace_back(text);
      break;
    }
    std::size_t cut = max_bytes;
    while (cut > 0 && continuation(text[cut])) --cut;
    if (cut == 0) cut = max_bytes;  // not UTF-8 at all: cut anywhere rather than loop
    std::size_t next = cut;
    const auto space = text.substr(0, cut).rfind(' ');
    if (space != std::string_view::npos && space >= cut / 2 && space > 0) {
      cut = space;
      next = space + 1;  // the space itself goes nowhere
    }
    out.emplace_back(text.substr(0, cut));
    text.remove_prefix(next);
  }
  return out;
}

std::vector<std::string> privmsg_lines(std::string_view target, std::string_view text,
                                       std::size_t reserve) {
  const std::string head = "PRIVMSG " + std::string(target) + " :";
  const std::size_t overhead = head.size() + 2 + reserve;
  const std::size_t budget = overhead + 16 < kMaxLineBytes ? kMaxLineBytes - overhead : 16;
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find_first_of("\r\n", start);
    if (end == std::string_view::npos) end = text.size();
    std::string line;
    for (char c : text.substr(start, end - start)) {
      if (c != '\0') line += c;
    }
    for (auto& piece : split_text(line, budget)) {
      if (!piece.empty()) out.push_back(head + piece);
    }
    start = end + 1;
  }
  return out;
}

std::string nick_candidate(std::string_view base, int attempt, bool shorten) {
  if (attempt <= 0) return std::string(base);
  const auto n = static_cast<std::size_t>(attempt);
  const std::size_t keep = !shorten ? base.size() : base.size() > n ? base.size() - n : 1;
  std::string out(base.substr(0, keep));
  out.append(n, '_');
  return out;
}

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                       (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace drawbridge::channels::irc
