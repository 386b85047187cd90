#include "app/cli/arg_cursor.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "core/util/error.h"

namespace mgd::cli {

bool ArgCursor::is(const char *option) const {
    return std::strcmp(argv_[i_], option) == 0;
}

std::string ArgCursor::value() {
    const std::string option = argv_[i_];
    if (i_ + 1 >= argc_) throw Error("option " + option + " needs a value");
    return argv_[++i_];
}

double ArgCursor::number() {
    const std::string option = argv_[i_], v = value();
    try {
        size_t used = 0;
        const double x = std::stod(v, &used);
        if (used != v.size() || !std::isfinite(x)) throw std::invalid_argument(v);
        return x;
    } catch (const std::exception &) {
        throw Error("option " + option + ": '" + v + "' is not a number");
    }
}

int ArgCursor::integer() {
    const std::string option = argv_[i_];
    const double x = number();
    if (x != std::floor(x) || std::abs(x) > 2e9)
        throw Error("option " + option + ": '" + argv_[i_] + "' is not a whole number");
    return static_cast<int>(x);
}

void ArgCursor::unknown() const {
    throw Error(std::string("unknown option ") + argv_[i_]);
}

} // namespace mgd::cli
