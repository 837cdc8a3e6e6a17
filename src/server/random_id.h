#pragma once

#include <cstddef>
#include <string>

namespace drawbridge::server {

// `bytes` bytes from the OpenSSL CSPRNG, hex-encoded: nonces, tokens, generated keys.
std::string random_hex(std::size_t bytes);

}  // namespace drawbridge::server
