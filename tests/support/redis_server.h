#pragma once
// A real redis-server for tests: started on a free loopback port (never any other address),
// no persistence, in a temporary folder; stopped when the object goes.
#include <QProcess>
#include <QTemporaryDir>
#include <QThread>

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace mgd_test {

inline int freeLoopbackPort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) == 0)
        port = ntohs(a.sin_port);
    ::close(fd);
    return port;
}

// redis-server on 127.0.0.1:<free port>, no persistence, in a temporary folder.
class RedisServer {
public:
    bool start(const QString &password = {}, int port = 0) {
        port_ = port ? port : freeLoopbackPort();
        password_ = password;
        QStringList args{"--port",       QString::number(port_),
                         "--bind",       "127.0.0.1",
                         "--save",       "",
                         "--appendonly", "no",
                         "--dir",        dir_.path(),
                         "--daemonize",  "no"};
        if (!password.isEmpty()) args << "--requirepass" << password;
        proc_.start("redis-server", args);
        if (!proc_.waitForStarted(5000)) return false;
        for (int i = 0; i < 100; ++i) { // up when it answers PING
            if (ping()) return true;
            QThread::msleep(50);
        }
        return false;
    }
    void stop() {
        if (proc_.state() == QProcess::NotRunning) return;
        ::kill(static_cast<pid_t>(proc_.processId()), SIGCONT);
        proc_.terminate();
        proc_.waitForFinished(5000);
    }
    void pause() { ::kill(static_cast<pid_t>(proc_.processId()), SIGSTOP); }
    void resume() { ::kill(static_cast<pid_t>(proc_.processId()), SIGCONT); }
    ~RedisServer() { stop(); }
    int port() const { return port_; }
    std::string url() const {
        return "redis://" + (password_.isEmpty() ? std::string() : ":" + password_.toStdString() + "@") +
               "127.0.0.1:" + std::to_string(port_);
    }
    // A raw command (SET key value) through our own connection, for planting values.
    bool set(const std::string &key, const std::string &value) {
        redisContext *c = redisConnect("127.0.0.1", port_);
        if (!c || c->err) return false;
        if (!password_.isEmpty())
            freeReplyObject(redisCommand(c, "AUTH %s", password_.toStdString().c_str()));
        auto *r = static_cast<redisReply *>(
            redisCommand(c, "SET %b %b", key.data(), key.size(), value.data(), value.size()));
        const bool ok = r && r->type == REDIS_REPLY_STATUS;
        if (r) freeReplyObject(r);
        redisFree(c);
        return ok;
    }

private:
    bool ping() {
        timeval tv{0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", port_, tv);
        bool ok = c && !c->err;
        if (ok) {
            auto *r = static_cast<redisReply *>(redisCommand(c, "PING"));
            // With a password PING answers NOAUTH: the server is up all the same.
            ok = r != nullptr;
            if (r) freeReplyObject(r);
        }
        if (c) redisFree(c);
        return ok;
    }
    QProcess proc_;
    QTemporaryDir dir_;
    int port_ = 0;
    QString password_;
};

} // namespace mgd_test
