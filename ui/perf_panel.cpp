#include "ui/perf_panel.h"

#include <QChart>
#include <QChartView>
#include <QComboBox>
#include <QEvent>
#include <QFile>
#include <QFileDialog>
#include <QGridLayout>
#include <QGraphicsLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLegendMarker>
#include <QLineSeries>
#include <QMessageBox>
#include <QTextStream>
#include <QToolButton>
#include <QValueAxis>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>

namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kKeepSeconds = 3600; // history kept for "All" and the exports
constexpr qsizetype kMaxShown = 600;  // points a series shows, at most

QString fmtMs(double v) {
    return v >= 1000 ? QString::number(v / 1000, 'f', 2) + " s"
                     : QString::number(v, 'f', v < 10 ? 2 : 1) + " ms";
}

// The smallest 1, 2 or 5 × 10^k at or above v (so the middle tick is a round number too).
double niceCeiling(double v) {
    if (v <= 0) return 1;
    const double p = std::pow(10.0, std::floor(std::log10(v)));
    for (double m : {1.0, 2.0, 5.0, 10.0})
        if (m * p >= v) return m * p;
    return 10 * p;
}

// Setting a label's text relayouts and repaints it even when the text is the same.
void setIfChanged(QLabel *label, const QString &text) {
    if (label->text() != text) label->setText(text);
}

QString fmtMiB(uint64_t bytes) {
    const double m = double(bytes) / kMiB;
    return m >= 1024 ? QString::number(m / 1024, 'f', 2) + " GiB"
                     : QString::number(m, 'f', m < 10 ? 2 : 1) + " MiB";
}

} // namespace

PerfPanel::PerfPanel(QWidget *parent) : QWidget(parent) {
    auto *v = new QVBoxLayout(this);
    v->setContentsMargins(6, 6, 6, 6);
    v->setSpacing(4);

    auto *bar = new QHBoxLayout;
    bar->addWidget(new QLabel(tr("Window:"), this));
    window_ = new QComboBox(this);
    window_->setObjectName("perfWindow");
    for (const auto &[label, secs] : std::initializer_list<std::pair<QString, int>>{{tr("30 s"), 30},
                                                                                    {tr("2 min"), 120},
                                                                                    {tr("5 min"), 300},
                                                                                    {tr("15 min"), 900},
                                                                                    {tr("1 h"), 3600},
                                                                                    {tr("All"), 0}})
        window_->addItem(label, secs);
    window_->setCurrentIndex(1);
    connect(window_, &QComboBox::currentIndexChanged, this,
            [this](int i) { setWindowSeconds(window_->itemData(i).toInt()); });
    bar->addWidget(window_);
    pause_ = new QToolButton(this);
    pause_->setObjectName("perfPause");
    pause_->setText(tr("Pause"));
    pause_->setCheckable(true);
    connect(pause_, &QToolButton::toggled, this, &PerfPanel::setPaused);
    bar->addWidget(pause_);
    bar->addStretch();
    auto *csv = new QToolButton(this);
    csv->setText(tr("CSV…"));
    csv->setToolTip(tr("Export the charted series as CSV"));
    connect(csv, &QToolButton::clicked, this, &PerfPanel::exportCsvInteractive);
    bar->addWidget(csv);
    auto *png = new QToolButton(this);
    png->setText(tr("PNG…"));
    png->setToolTip(tr("Save the panel as a PNG image"));
    connect(png, &QToolButton::clicked, this, &PerfPanel::exportPngInteractive);
    bar->addWidget(png);
    v->addLayout(bar);

    throughput_ = new QLabel(this);
    throughput_->setObjectName("perfThroughput");
    QFont big = throughput_->font();
    big.setPointSizeF(big.pointSizeF() * 1.15);
    big.setBold(true);
    throughput_->setFont(big);
    v->addWidget(throughput_);

    hit_ = makeChart("hit_rate", tr("Cache hit rate (recent lookups)"), tr("%"));
    hit_.y->setRange(0, 100);
    hit_.y->setLabelFormat("%d");
    hit_.y->setTickCount(3);
    memory_ = makeChart("memory", tr("Memory"), tr("MiB"));
    latency_ = makeChart("latency", tr("Latency per turn"), tr("ms"));
    latency_.y2 = new QValueAxis(latency_.chart);
    latency_.y2->setTitleText(tr("ms/tok"));
    latency_.y2->setLabelFormat("%.2g");
    latency_.y2->setTickCount(3);
    latency_.chart->addAxis(latency_.y2, Qt::AlignRight);
    for (Chart *c : {&hit_, &memory_, &latency_}) v->addWidget(c->view, 1);

    // Fixed cells of plain text: updating them never changes the panel's layout, so the charts
    // are not laid out again four times a second.
    auto *grid = new QGridLayout;
    grid->setHorizontalSpacing(10);
    grid->setVerticalSpacing(0);
    const QStringList heads = {tr("stage"), tr("p50"), tr("p95"), tr("last"), tr("n")};
    const int cellWidth = fontMetrics().horizontalAdvance(QStringLiteral("00000.0 ms"));
    for (int c = 0; c < heads.size(); ++c) {
        auto *h = new QLabel(heads[c], this);
        QFont f = h->font();
        f.setBold(true);
        h->setFont(f);
        h->setAlignment(c == 0 ? Qt::AlignLeft : Qt::AlignRight);
        grid->addWidget(h, 0, c);
    }
    const QStringList stages = {tr("TTFT"), tr("decode / token"), tr("turn"), tr("image encode"),
                                tr("prefill")};
    for (int r = 0; r < stages.size(); ++r) {
        grid->addWidget(new QLabel(stages[r], this), r + 1, 0);
        for (int c = 1; c < heads.size(); ++c) {
            auto *cell = new QLabel(QStringLiteral("–"), this);
            cell->setAlignment(Qt::AlignRight);
            cell->setMinimumWidth(c == 4 ? cellWidth / 2 : cellWidth);
            grid->addWidget(cell, r + 1, c);
            cells_ << cell;
        }
    }
    grid->setColumnStretch(0, 1);
    v->addLayout(grid);
    counters_ = new QLabel(this);
    counters_->setObjectName("perfCounters");
    counters_->setWordWrap(true);
    counters_->setTextFormat(Qt::PlainText);
    counters_->setAlignment(Qt::AlignTop | Qt::AlignLeft);
    QFont small = counters_->font();
    small.setPointSizeF(small.pointSizeF() * 0.9);
    counters_->setFont(small);
    counters_->setFixedHeight(QFontMetrics(small).lineSpacing() * 5 + 4);
    counters_->setMinimumWidth(100);
    v->addWidget(counters_);

    // The lines every engine has exist from the start: a steady legend, and no chart relayout
    // in the middle of a turn when the first point arrives.
    for (const char *cache : {"feature", "prefix", "response"}) addSeries(hit_, cache);
    addSeries(latency_, tr("TTFT"));
    addSeries(latency_, tr("turn"));
    addSeries(latency_, tr("decode ms/token"), true);

    applyTheme();
    clock_.start();
    timer_.setInterval(250);
    connect(&timer_, &QTimer::timeout, this, &PerfPanel::sample);
    throughput_->setText(tr("Waiting for the model…"));
}

PerfPanel::~PerfPanel() = default;

PerfPanel::Chart PerfPanel::makeChart(const QString &key, const QString &title, const QString &yTitle) {
    Chart c;
    c.key = key;
    c.chart = new QChart;
    c.chart->setTitle(title);
    c.chart->legend()->setAlignment(Qt::AlignBottom);
    c.chart->setMargins(QMargins(2, 2, 2, 2));
    c.chart->layout()->setContentsMargins(0, 0, 0, 0);
    c.x = new QValueAxis(c.chart);
    c.x->setLabelFormat(tr("%d s"));
    c.x->setTickCount(5);
    c.x->setRange(0, windowSeconds_ ? windowSeconds_ : 60);
    c.y = new QValueAxis(c.chart);
    c.y->setTitleText(yTitle);
    c.y->setRange(0, 1);
    // Three ticks fit the short charts of a docked panel; more get elided to "...".
    c.y->setTickCount(3);
    c.y->setLabelFormat("%.3g");
    c.chart->addAxis(c.x, Qt::AlignBottom);
    c.chart->addAxis(c.y, Qt::AlignLeft);
    c.view = new QChartView(c.chart, this);
    c.view->setObjectName("chart_" + key);
    c.view->setRenderHint(QPainter::Antialiasing);
    c.view->setMinimumHeight(150);
    return c;
}

void PerfPanel::setSource(Source source) {
    source_ = std::move(source);
    timer_.start();
}

void PerfPanel::setPaused(bool paused) {
    paused_ = paused;
    if (pause_->isChecked() != paused) pause_->setChecked(paused);
    pause_->setText(paused ? tr("Resume") : tr("Pause"));
}

void PerfPanel::setWindowSeconds(int seconds) {
    windowSeconds_ = seconds;
    const int i = window_->findData(seconds);
    if (i >= 0 && i != window_->currentIndex()) window_->setCurrentIndex(i);
    updateRanges(lastX_);
}

QLineSeries *PerfPanel::series(const QString &chart, const QString &name) const {
    const Chart *c = chart == "hit_rate" ? &hit_ : chart == "memory" ? &memory_ : &latency_;
    return c->series.value(name, nullptr);
}

QLineSeries *PerfPanel::addPoint(Chart &c, const QString &name, double x, double y, bool secondAxis) {
    QLineSeries *s = addSeries(c, name, secondAxis);
    c.history[name].append(QPointF(x, y));
    return s;
}

QLineSeries *PerfPanel::addSeries(Chart &c, const QString &name, bool secondAxis) {
    QLineSeries *s = c.series.value(name, nullptr);
    if (!s) {
        s = new QLineSeries(c.chart);
        s->setName(name);
        c.chart->addSeries(s);
        s->attachAxis(c.x);
        s->attachAxis(secondAxis && c.y2 ? c.y2 : c.y);
        if (&c == &latency_) s->setPointsVisible(true);
        c.series.insert(name, s);
        c.order << name;
    }
    return s;
}

void PerfPanel::sample() {
    if (paused_ || !source_) return;
    const std::optional<mgd::MetricsSnapshot> snap = source_();
    if (!snap) return;
    const mgd::MetricsSnapshot &s = *snap;
    const double now = double(clock_.elapsed()) / 1000.0;
    lastX_ = now;
    ++samples_;

    // Hit rates: a cache gets a line once it has been asked at least once.
    for (const auto &[name, h] : s.hitRates)
        if (h.lookups > 0) addPoint(hit_, QString::fromStdString(name), now, h.rolling * 100.0);

    const mgd::MemorySnapshot &m = s.memory;
    if (m.poolCapacityBytes > 0) {
        addPoint(memory_, tr("pool used"), now, double(m.poolUsedBytes) / kMiB);
        addPoint(memory_, tr("pool budget"), now, double(m.poolCapacityBytes) / kMiB);
    }
    if (m.cuda) {
        addPoint(memory_, tr("CUDA allocated"), now, double(m.cudaAllocatedBytes) / kMiB);
        addPoint(memory_, tr("CUDA reserved"), now, double(m.cudaReservedBytes) / kMiB);
        if (m.nvml) addPoint(memory_, tr("device used"), now, double(m.deviceUsedBytes) / kMiB);
    } else {
        addPoint(memory_, tr("process RSS"), now, double(m.processRssBytes) / kMiB);
    }

    // One latency point per finished turn (the snapshot's last value of each stage).
    auto count = [&](const char *stage) -> uint64_t {
        auto it = s.latency.find(stage);
        return it == s.latency.end() ? 0 : it->second.count;
    };
    auto last = [&](const char *stage) {
        auto it = s.latency.find(stage);
        return it == s.latency.end() ? 0.0 : it->second.last;
    };
    const uint64_t turns = count("turn"), decodes = count("decode_token");
    if (turns > seenTurns_) {
        addPoint(latency_, tr("TTFT"), now, last("ttft"));
        addPoint(latency_, tr("turn"), now, last("turn"));
        // A turn answered from the response cache decodes nothing.
        if (decodes > seenDecodes_)
            addPoint(latency_, tr("decode ms/token"), now, last("decode_token"), true);
    }
    seenTurns_ = turns;
    seenDecodes_ = decodes;

    trim(now);
    updateRanges(now);
    updateLabels(s);
}

void PerfPanel::trim(double now) {
    for (Chart *c : {&hit_, &memory_, &latency_})
        for (QList<QPointF> &h : c->history) {
            qsizetype drop = 0;
            while (drop < h.size() && h[drop].x() < now - kKeepSeconds) ++drop;
            if (drop > 0) h.remove(0, drop);
        }
}

void PerfPanel::updateRanges(double now) {
    const double from = windowSeconds_ > 0 ? std::max(0.0, now - windowSeconds_) : 0.0;
    const double to = std::max(now, from + (windowSeconds_ > 0 ? windowSeconds_ : 10));
    for (Chart *c : {&hit_, &memory_, &latency_}) {
        c->x->setRange(from, windowSeconds_ > 0 ? from + windowSeconds_ : to);
        double maxY = 0, maxY2 = 0;
        for (auto it = c->history.cbegin(); it != c->history.cend(); ++it) {
            // The series shows the window, thinned to kMaxShown points: charts repaint every
            // poll, and their cost grows with the points they hold, not with the history kept.
            const QList<QPointF> &h = it.value();
            qsizetype first = h.size();
            while (first > 0 && h[first - 1].x() >= from) --first;
            const qsizetype n = h.size() - first;
            const qsizetype step = std::max<qsizetype>(1, (n + kMaxShown - 1) / kMaxShown);
            QList<QPointF> shown;
            shown.reserve(n / step + 2);
            for (qsizetype i = first; i < h.size(); i += step) shown.append(h[i]);
            if (n > 0 && shown.last() != h.last()) shown.append(h.last());
            QLineSeries *series = c->series.value(it.key());
            series->replace(shown);
            const bool second = c->y2 && series->attachedAxes().contains(c->y2);
            double &top = second ? maxY2 : maxY;
            for (const QPointF &p : shown) top = std::max(top, p.y());
        }
        if (c == &hit_) continue; // always 0..100 %
        c->y->setRange(0, niceCeiling(maxY * 1.05));
        if (c->y2) c->y2->setRange(0, niceCeiling(maxY2 * 1.05));
    }
}

void PerfPanel::updateLabels(const mgd::MetricsSnapshot &s) {
    auto gauge = [&](const char *g) {
        auto it = s.gauges.find(g);
        return it == s.gauges.end() ? 0.0 : it->second;
    };
    setIfChanged(throughput_, tr("%1 tokens/s (last turn)").arg(gauge("tokens_per_second"), 0, 'f', 1));

    const char *stages[] = {"ttft", "decode_token", "turn", "image_encode", "prefill"};
    for (int r = 0; r < 5; ++r) {
        auto it = s.latency.find(stages[r]);
        const bool any = it != s.latency.end() && it->second.count > 0;
        const mgd::LatencySummary l = any ? it->second : mgd::LatencySummary{};
        const QString values[] = {any ? fmtMs(l.p50) : "–", any ? fmtMs(l.p95) : "–",
                                  any ? fmtMs(l.last) : "–", QString::number(l.count)};
        for (int c = 0; c < 4; ++c) setIfChanged(cells_[r * 4 + c], values[c]);
    }

    // Three short lines: cache hits, counters, memory.
    QStringList hits, counts, memory;
    for (const auto &[name, h] : s.hitRates)
        hits << QStringLiteral("%1 %2/%3").arg(QString::fromStdString(name)).arg(h.hits).arg(h.lookups);
    for (const auto &[name, v] : s.counters) {
        if (name.rfind("remote_", 0) == 0) continue; // on the Redis line
        QString label = QString::fromStdString(name);
        label.remove(QStringLiteral("tokens_")).replace('_', ' ');
        counts << QStringLiteral("%1 %2").arg(label).arg(v);
    }
    const mgd::MemorySnapshot &m = s.memory;
    if (m.poolCapacityBytes)
        memory << tr("pool %1 / %2 (peak %3)")
                      .arg(fmtMiB(m.poolUsedBytes), fmtMiB(m.poolCapacityBytes),
                           fmtMiB(m.poolHighWaterBytes));
    // KV blocks conversations share (system prompt + image), and those kept for later ones.
    if (gauge("kv_shared_blocks") + gauge("kv_cached_blocks") > 0)
        memory << tr("shared KV %1 blocks, %2 refs, %3 cached")
                      .arg(gauge("kv_shared_blocks"))
                      .arg(gauge("kv_shared_references"))
                      .arg(gauge("kv_cached_blocks"));
    memory << tr("RSS %1 (peak %2)").arg(fmtMiB(m.processRssBytes), fmtMiB(m.processPeakRssBytes));
    if (m.cuda)
        memory << tr("CUDA %1 alloc / %2 reserved")
                      .arg(fmtMiB(m.cudaAllocatedBytes), fmtMiB(m.cudaReservedBytes));
    if (m.nvml) memory << tr("device %1 / %2").arg(fmtMiB(m.deviceUsedBytes), fmtMiB(m.deviceTotalBytes));
    const QString sep = QStringLiteral(" · ");
    // The shared Redis tier, when on: is it there, what it gave, what it cost.
    QString remote;
    if (gauge("remote_enabled") > 0) {
        auto counter = [&](const char *c) {
            auto it = s.counters.find(c);
            return it == s.counters.end() ? uint64_t(0) : it->second;
        };
        auto rtt = s.latency.find("remote_rtt");
        const bool any = rtt != s.latency.end() && rtt->second.count > 0;
        remote =
            '\n' + tr("Redis %1 · hits %2 · misses %3 · errors %4 · rejected %5 · in %6 · out %7 · "
                      "RTT %8 / %9 (p50/p95)")
                       .arg(gauge("remote_reachable") > 0 ? tr("reachable") : tr("unreachable"))
                       .arg(counter("remote_hits"))
                       .arg(counter("remote_misses"))
                       .arg(counter("remote_errors"))
                       .arg(counter("remote_rejected"))
                       .arg(fmtMiB(counter("remote_bytes_read")), fmtMiB(counter("remote_bytes_written")),
                            any ? fmtMs(rtt->second.p50) : QStringLiteral("–"),
                            any ? fmtMs(rtt->second.p95) : QStringLiteral("–"));
    }
    // The Redis line next to the hits it explains.
    setIfChanged(counters_, tr("hits: %1").arg(hits.join(sep)) + remote + '\n' + counts.join(sep) + '\n' +
                                memory.join(sep));
}

bool PerfPanel::exportCsv(const QString &path, QString *error) const {
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate | QIODevice::Text)) {
        if (error) *error = tr("could not write %1: %2").arg(path, f.errorString());
        return false;
    }
    QTextStream out(&f);
    out << "chart,series,time_s,value\n";
    for (const Chart *c : {&hit_, &memory_, &latency_})
        for (const QString &name : c->order)
            for (const QPointF &p : c->history.value(name))
                out << c->key << ',' << '"' << name << '"' << ',' << QString::number(p.x(), 'f', 3) << ','
                    << QString::number(p.y(), 'g', 8) << '\n';
    out.flush();
    if (f.error() != QFile::NoError) {
        if (error) *error = f.errorString();
        return false;
    }
    return true;
}

bool PerfPanel::exportPng(const QString &path, QString *error) {
    if (!grab().save(path, "PNG")) {
        if (error) *error = tr("could not write %1").arg(path);
        return false;
    }
    return true;
}

void PerfPanel::exportCsvInteractive() {
    const QString path =
        QFileDialog::getSaveFileName(this, tr("Export series"), "metrics.csv", tr("CSV (*.csv)"));
    QString error;
    if (!path.isEmpty() && !exportCsv(path, &error)) QMessageBox::warning(this, tr("Export failed"), error);
}

void PerfPanel::exportPngInteractive() {
    const QString path =
        QFileDialog::getSaveFileName(this, tr("Save panel"), "performance.png", tr("PNG image (*.png)"));
    QString error;
    if (!path.isEmpty() && !exportPng(path, &error)) QMessageBox::warning(this, tr("Export failed"), error);
}

void PerfPanel::applyTheme() {
    const QPalette pal = palette();
    const bool dark = pal.color(QPalette::Window).lightness() < 128;
    const QColor text = pal.color(QPalette::WindowText);
    for (Chart *c : {&hit_, &memory_, &latency_}) {
        c->chart->setTheme(dark ? QChart::ChartThemeDark : QChart::ChartThemeLight);
        c->chart->setBackgroundBrush(pal.color(QPalette::Base));
        c->chart->setTitleBrush(text);
        c->chart->legend()->setLabelColor(text);
        // A theme resets fonts: set ours after it, a little smaller than the UI's to fit a dock.
        QFont title = font();
        title.setBold(true);
        c->chart->setTitleFont(title);
        QFont small = font();
        small.setPointSizeF(small.pointSizeF() * 0.85);
        c->chart->legend()->setFont(small);
        for (QValueAxis *a : {c->x, c->y, c->y2}) {
            if (!a) continue;
            a->setLabelsFont(small);
            a->setTitleFont(small);
            a->setLabelsColor(text);
            a->setTitleBrush(text);
        }
        for (QLineSeries *s : std::as_const(c->series))
            if (c == &latency_) s->setPointsVisible(true);
    }
}

void PerfPanel::changeEvent(QEvent *e) {
    QWidget::changeEvent(e);
    if (e->type() == QEvent::PaletteChange) applyTheme();
}
