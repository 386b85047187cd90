#include "core/cache/redis_url.h"

#include <algorithm>
#include <cctype>

#include "core/util/error.h"

namespace mgd {

namespace {

bool allDigits(const std::string &s) {
    return !s.empty() && s.size() <= 9 && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c));
    });
}

// "%40" -> "@": passwords may hold the URL's own delimiters.
std::string percentDecoded(const std::string &s, const std::string &what) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        if (i + 2 >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + 1])) ||
            !std::isxdigit(static_cast<unsigned char>(s[i + 2])))
            throw Error(what + ": a '%' is not followed by two hex digits");
        out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
        i += 2;
    }
    return out;
}

} // namespace

std::string RedisEndpoint::display() const {
    std::string s = unixSocket ? "unix://" : "redis://";
    if (!password.empty()) s += user + ":***@";
    if (unixSocket) {
        s += path;
        if (db) {
            s += "?db=";
            s += std::to_string(db);
        }
        return s;
    }
    const bool v6 = host.find(':') != std::string::npos;
    if (v6) s += '[';
    s += host;
    if (v6) s += ']';
    s += ':';
    s += std::to_string(port);
    if (db) {
        s += '/';
        s += std::to_string(db);
    }
    return s;
}

RedisEndpoint parseRedisUrl(const std::string &url) {
    // The password never appears in an error.
    const size_t at0 = url.rfind('@');
    const std::string shown =
        at0 == std::string::npos ? url : url.substr(0, url.find("://") + 3) + "***" + url.substr(at0);
    const std::string what = "Redis URL '" + shown + "'";
    RedisEndpoint e;
    std::string rest;
    if (url.rfind("redis://", 0) == 0) {
        rest = url.substr(8);
    } else if (url.rfind("unix://", 0) == 0) {
        e.unixSocket = true;
        rest = url.substr(7);
    } else {
        throw Error(what + ": must start with redis:// or unix://");
    }
    const size_t at = rest.rfind('@');
    if (at != std::string::npos) {
        const std::string auth = rest.substr(0, at);
        rest = rest.substr(at + 1);
        const size_t colon = auth.find(':');
        if (colon == std::string::npos) {
            e.password = percentDecoded(auth, what); // redis://password@host, as some tools write it
        } else {
            e.user = percentDecoded(auth.substr(0, colon), what);
            e.password = percentDecoded(auth.substr(colon + 1), what);
        }
        if (e.password.empty()) throw Error(what + ": empty password");
    }
    if (e.unixSocket) {
        const size_t q = rest.find('?');
        e.path = rest.substr(0, q);
        if (e.path.empty() || e.path[0] != '/')
            throw Error(what + ": the socket path must be absolute (unix:///path)");
        if (q != std::string::npos) {
            const std::string query = rest.substr(q + 1);
            if (query.rfind("db=", 0) != 0 || !allDigits(query.substr(3)))
                throw Error(what + ": the only query is ?db=N");
            e.db = std::stoi(query.substr(3));
        }
        return e;
    }
    const size_t slash = rest.find('/');
    std::string hostPort = rest.substr(0, slash);
    if (slash != std::string::npos) {
        const std::string db = rest.substr(slash + 1);
        if (!db.empty()) {
            if (!allDigits(db)) throw Error(what + ": the database '" + db + "' is not a number");
            e.db = std::stoi(db);
        }
    }
    std::string port;
    if (!hostPort.empty() && hostPort[0] == '[') { // [::1]:6379
        const size_t close = hostPort.find(']');
        if (close == std::string::npos) throw Error(what + ": unclosed '[' in the host");
        e.host = hostPort.substr(1, close - 1);
        if (close + 1 < hostPort.size()) {
            if (hostPort[close + 1] != ':') throw Error(what + ": expected ':' after ']'");
            port = hostPort.substr(close + 2);
        }
    } else {
        const size_t colon = hostPort.rfind(':');
        e.host = hostPort.substr(0, colon);
        if (colon != std::string::npos) port = hostPort.substr(colon + 1);
    }
    if (e.host.empty()) throw Error(what + ": no host");
    if (!port.empty() || hostPort.back() == ':') {
        if (!allDigits(port) || std::stoi(port) < 1 || std::stoi(port) > 65535)
            throw Error(what + ": the port '" + port + "' is not 1-65535");
        e.port = std::stoi(port);
    }
    return e;
}

} // namespace mgd
