#pragma once
// Where the shared Redis tier lives: redis://[[user]:password@]host[:port][/db] or
// unix:///path/to/socket[?db=N] (a password in a unix URL: unix://:password@/path).
#include <string>

namespace mgd {

struct RedisEndpoint {
    bool unixSocket = false;
    std::string host = "127.0.0.1", path; // path: the socket, for unix://
    int port = 6379;
    std::string user, password; // empty: no AUTH
    int db = 0;
    std::string display() const; // the URL without its password, for messages and the panel
};

// Throws mgd::Error naming the URL (password hidden) and what is wrong with it.
RedisEndpoint parseRedisUrl(const std::string &url);

} // namespace mgd
