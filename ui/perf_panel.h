#pragma once
// The live performance panel: polls the engine's metrics snapshot a few times a second on
// the UI thread (the snapshot is cheap and thread-safe) and charts cache hit rates and
// memory over time and latency per turn, with p50/p95, tokens/s and the counters. The time
// window, pause and the exports act on what the charts hold.
#include <QElapsedTimer>
#include <QList>
#include <QMap>
#include <QPointF>
#include <QTimer>
#include <QWidget>
#include <functional>
#include <optional>

#include "core/metrics/metrics.h"

class QChart;
class QChartView;
class QComboBox;
class QLabel;
class QLineSeries;
class QToolButton;
class QValueAxis;

class PerfPanel : public QWidget {
    Q_OBJECT

public:
    using Source = std::function<std::optional<mgd::MetricsSnapshot>()>;

    explicit PerfPanel(QWidget *parent = nullptr);
    ~PerfPanel() override;

    void setSource(Source source);
    void setPollInterval(int ms) { timer_.setInterval(ms); }
    // One poll: what the timer does; public so a test can step it.
    void sample();
    void setPaused(bool paused);
    bool paused() const { return paused_; }
    // Seconds of history shown; 0 shows everything kept.
    void setWindowSeconds(int seconds);
    int windowSeconds() const { return windowSeconds_; }

    bool exportCsv(const QString &path, QString *error) const;
    bool exportPng(const QString &path, QString *error);

    // Series by chart ("hit_rate", "memory", "latency") and name ("feature", "pool used",
    // "TTFT", ...), holding the points in the time window; memory lines appear with the first
    // snapshot that has them.
    QLineSeries *series(const QString &chart, const QString &name) const;
    int samples() const { return samples_; }

protected:
    void changeEvent(QEvent *e) override;

private:
    struct Chart {
        QString key;
        QChart *chart = nullptr;
        QChartView *view = nullptr;
        QValueAxis *x = nullptr;
        QValueAxis *y = nullptr;
        QValueAxis *y2 = nullptr; // latency: ms/token on its own scale
        QMap<QString, QLineSeries *> series;
        QMap<QString, QList<QPointF>> history; // everything kept, for the window and exports
        QList<QString> order;
    };

    Chart makeChart(const QString &key, const QString &title, const QString &yTitle);
    QLineSeries *addSeries(Chart &c, const QString &name, bool secondAxis = false);
    QLineSeries *addPoint(Chart &c, const QString &name, double x, double y,
                          bool secondAxis = false);
    void trim(double now);
    void updateRanges(double now);
    void updateLabels(const mgd::MetricsSnapshot &s);
    void applyTheme();
    void exportCsvInteractive();
    void exportPngInteractive();

    Source source_;
    QTimer timer_;
    QElapsedTimer clock_;
    bool paused_ = false;
    int windowSeconds_ = 120;
    int samples_ = 0;
    Chart hit_, memory_, latency_;
    QLabel *throughput_ = nullptr;
    QList<QLabel *> cells_; // latency table: per stage p50, p95, last, count
    QLabel *counters_ = nullptr;
    QComboBox *window_ = nullptr;
    QToolButton *pause_ = nullptr;
    uint64_t seenTurns_ = 0, seenDecodes_ = 0;
    double lastX_ = 0;
};
