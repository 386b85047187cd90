#pragma once
// The CLI's one argument reader: walks argv option by option, reads an option's value or
// number, and names the option in every error.
#include <string>

namespace mgd::cli {

class ArgCursor {
public:
    ArgCursor(int argc, char **argv, int first) : argc_(argc), argv_(argv), i_(first - 1) {}
    bool next() { return ++i_ < argc_; } // to the next argument; false after the last
    const char *arg() const { return argv_[i_]; }
    bool is(const char *option) const; // the current argument is `option`
    std::string value();               // the argument after the current option
    double number();                   // value() as a number
    int integer();                     // value() as a whole number
    [[noreturn]] void unknown() const; // throws "unknown option X"

private:
    int argc_;
    char **argv_;
    int i_;
};

} // namespace mgd::cli
