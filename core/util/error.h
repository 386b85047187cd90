#pragma once
// The one error type of the core: its message names the file, tensor or setting at fault.
#include <stdexcept>
#include <string>

namespace mgd {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string &msg) : std::runtime_error(msg) {}
};

} // namespace mgd
