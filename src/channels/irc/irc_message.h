#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// IRC lines as servers speak them (RFC 1459/2812, IRCv3 message tags): parse, format, split.
// Pure functions, no I/O; every input may be hostile and none of them throws.
namespace drawbridge::channels::irc {

// RFC 2812 2.3: a line with its CRLF is at most 512 bytes (tags not counted).
constexpr std::size_t kMaxLineBytes = 512;

struct Message {
  std::vector<std::pair<std::string, std::string>> tags;  // IRCv3, values unescaped
  std::string prefix;                                     // "nick!user@host" or a server, no ':'
  std::string command;                                    // upper case ("PRIVMSG", "001")
  std::vector<std::string> params;                        // the trailing one last, no ':'

  const std::string* tag(std::string_view key) const;
  const std::string& param(std::size_t i) const;  // empty when absent
};

// One line without its CRLF. nullopt when it has no command (empty, only a prefix or tags).
std::optional<Message> parse(std::string_view line);

// "PRIVMSG", {"#chan", "hi there"} -> "PRIVMSG #chan :hi there" (no CRLF). The last parameter
// gets a ':' when it needs one (empty, has a space, starts with ':').
std::string format(std::string_view command, const std::vector<std::string>& params);

// The nick of a prefix ("nick!user@host" -> "nick"); empty when it is a server ("irc.x.org").
std::string nick_of(std::string_view prefix);

// RFC 1459 case mapping: ASCII lower case plus []\~ -> {}|^.
std::string lower(std::string_view s);
bool same_name(std::string_view a, std::string_view b);

bool is_channel_name(std::string_view s);  // "#x", "&x", "+x", "!x"
// A nick as RFC 2812 allows it (letters, digits, -[]\`^{}|_; not starting with a digit or '-').
bool is_valid_nick(std::string_view s);
// Something a PRIVMSG may go to: a channel or a nick, nothing that breaks the line.
bool is_valid_target(std::string_view s);

// A CTCP request or reply (\x01...\x01, ACTION included): never answered.
bool is_ctcp(std::string_view text);

// The text of a channel message meant for the bot: "bot: hi", "bot, hi", "@bot hi" (nick compared
// case-insensitively) or "<prefix>hi" when `command_prefix` is not empty. nullopt when the
// message is not addressed to the bot or nothing is left after the address.
std::optional<std::string> addressed_text(std::string_view text, std::string_view nick,
                                          std::string_view command_prefix);

// Valid UTF-8 text out of anything a server relays: C0 controls but TAB dropped (NUL, CR, LF,
// the bold/italic/underline/reverse/reset codes; a colour code with its digits), and each byte
// that is not part of a valid UTF-8 sequence read as Latin-1 (what IRC clients do with legacy
// encodings).
std::string sanitize_utf8(std::string_view s);

// Splits `text` into pieces of at most `max_bytes` bytes (>= 4), never inside a UTF-8
// sequence, at the last space of a piece when there is one in its second half.
std::vector<std::string> split_text(std::string_view text, std::size_t max_bytes);

// The PRIVMSG lines (without CRLF) that carry `text` to `target`: one per line of the text
// (empty lines skipped), each split so that line + CRLF + `reserve` bytes fit in 512 (the
// server prepends ":nick!user@host " when it relays it: `reserve` is that length).
std::vector<std::string> privmsg_lines(std::string_view target, std::string_view text,
                                       std::size_t reserve);

// The nick to try at `attempt` (0: `base`): base_, base__, ...; `shorten` (the server refused
// a longer nick as erroneous) keeps the length of `base` by replacing its last characters.
std::string nick_candidate(std::string_view base, int attempt, bool shorten);

std::string base64(std::string_view in);

}  // namespace drawbridge::channels::irc
