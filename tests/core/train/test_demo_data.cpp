// The demo-model data generator: deterministic by seed, and every answer agrees with the
// scene that was drawn (checked against the scene and the pixels, not the generator's text).
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "core/train/demo_data.h"

using namespace mgd::demo;

namespace {

std::string name(const SceneObject &o) {
    return std::string(colorName(o.color)) + " " + shapeName(o.shape);
}

bool contains(const std::string &s, const std::string &part) {
    return s.find(part) != std::string::npos;
}

// The pixel at a cell's centre lies inside every shape (all are star-convex about it).
void checkPixels(const DemoSample &s) {
    static const int rgb[kColors][3] = {{220, 30, 30}, {30, 170, 50},  {30, 70, 230},   {245, 225, 20},
                                        {255, 140, 0}, {140, 40, 190}, {250, 250, 250}, {10, 10, 10}};
    const int n = s.image.width;
    for (const auto &o : s.scene.objects) {
        const int x = int((o.cell % 3 + 0.5) * n / 3), y = int((o.cell / 3 + 0.5) * n / 3);
        const uint8_t *p = &s.image.rgb[(size_t(y) * n + x) * 3];
        for (int c = 0; c < 3; ++c)
            QVERIFY2(std::abs(int(p[c]) - rgb[o.color][c]) <= 45,
                     qPrintable(QString("%1 at cell %2: channel %3 is %4")
                                    .arg(name(o).c_str())
                                    .arg(o.cell)
                                    .arg(c)
                                    .arg(p[c])));
    }
}

} // namespace

class TestDemoData : public QObject {
    Q_OBJECT
private slots:
    void deterministicBySeed() {
        DemoGenerator a(42), b(42), c(43);
        for (int i = 0; i < 20; ++i) {
            const QType t = QType(i % kTypes);
            const DemoSample x = a.sample(t, 96), y = b.sample(t, 96), z = c.sample(t, 96);
            QCOMPARE(x.turns.size(), y.turns.size());
            for (size_t k = 0; k < x.turns.size(); ++k) {
                QCOMPARE(x.turns[k].question, y.turns[k].question);
                QCOMPARE(x.turns[k].answer, y.turns[k].answer);
            }
            QVERIFY(x.image.rgb == y.image.rgb);
            QVERIFY(x.image.rgb != z.image.rgb);
        }
    }

    void answersAgreeWithTheScene() {
        DemoGenerator g(7);
        std::set<std::string> questions;
        for (int i = 0; i < 700; ++i) {
            const QType t = QType(i % kTypes);
            const DemoSample s = g.sample(t, i % 2 ? 96 : 192);
            const auto &objs = s.scene.objects;
            QVERIFY(!objs.empty() && objs.size() <= 4);
            QCOMPARE(s.turns.size(), size_t(t == QType::FollowUp ? 2 : 1));
            checkPixels(s);
            const std::string &q = s.turns[0].question, &a = s.turns[0].answer;
            questions.insert(q);
            switch (t) {
            case QType::Shape: {
                bool ok = false;
                for (int cell = 0; cell < kCells; ++cell)
                    if (contains(q, cellPhrase(cell) + std::string("?"))) {
                        const SceneObject *o = s.scene.at(cell);
                        ok = a == (o ? std::string("It is a ") + shapeName(o->shape) + "."
                                     : std::string("There is nothing ") + cellPhrase(cell) + ".");
                    }
                if (objs.size() == 1 && !ok)
                    ok = a == std::string("It is a ") + shapeName(objs[0].shape) + ".";
                QVERIFY2(ok, (q + " -> " + a).c_str());
                break;
            }
            case QType::Count: {
                static const char *num[] = {"no", "one", "two", "three", "four"};
                int k = int(objs.size());
                for (int sh = 0; sh < kShapes; ++sh)
                    if (contains(q, std::string(shapeName(sh)) + "s "))
                        k = int(
                            std::count_if(objs.begin(), objs.end(), [&](auto &o) { return o.shape == sh; }));
                QVERIFY2(contains(a, std::string(" ") + num[k] + " "), (q + " -> " + a).c_str());
                break;
            }
            case QType::Exist: {
                bool present = false, known = false;
                for (const auto &o : objs) {
                    present = present || contains(q, " " + name(o) + "?") ||
                              contains(q, " " + name(o) + " in") ||
                              contains(q, std::string(" a ") + shapeName(o.shape) + "?") ||
                              contains(q, std::string(" a ") + shapeName(o.shape) + " in");
                }
                for (int sh = 0; sh < kShapes; ++sh) known = known || contains(q, shapeName(sh));
                QVERIFY2(present == (a.rfind("There is no ", 0) != 0), (q + " -> " + a).c_str());
                QVERIFY2(a.rfind("There is ", 0) == 0, a.c_str());
                if (!known) QVERIFY2(a.rfind("There is no ", 0) == 0, a.c_str()); // "Is there a dog?"
                // English articles: "an orange star", never "a orange star".
                QVERIFY2(!contains(q, " a orange") && !contains(a, " a orange"), (q + " -> " + a).c_str());
                QVERIFY(contains(q, " an orange") == (contains(q, "orange")));
                break;
            }
            case QType::Describe: {
                std::string d = "There is ";
                for (size_t k = 0; k < objs.size(); ++k) {
                    if (k) d += k + 1 == objs.size() ? " and " : ", ";
                    d += std::string("a ") + sizeName(objs[k].size) + " " + name(objs[k]) + " " +
                         cellPhrase(objs[k].cell); // sizes start with a consonant
                }
                QCOMPARE(a, d + ".");
                break;
            }
            case QType::Position:
            case QType::Color:
            case QType::FollowUp: {
                // The object the turns talk about is the one at the cell the answers name; a
                // question that names the object gets it named back ("The red star is ...").
                int named = 0;
                for (const auto &turn : s.turns)
                    for (int cell = 0; cell < kCells; ++cell) {
                        const SceneObject *o = s.scene.at(cell);
                        const std::string at = std::string(" is ") + cellPhrase(cell) + ".";
                        if (turn.answer == "It" + at) {
                            QVERIFY2(o, turn.answer.c_str());
                        } else if (o && turn.answer == "The " + name(*o) + at) {
                            QVERIFY2(contains(turn.question, "the " + name(*o) + "?") ||
                                         contains(turn.question, "the " + name(*o) + " located?"),
                                     (turn.question + " -> " + turn.answer).c_str());
                            ++named;
                        }
                    }
                if (t == QType::Position) QVERIFY2(named == 1, (q + " -> " + a).c_str());
                if (t == QType::Color) {
                    bool ok = false;
                    for (const auto &o : objs)
                        ok = ok || a == std::string("It is ") + colorName(o.color) + ".";
                    QVERIFY2(ok, (q + " -> " + a).c_str());
                }
                break;
            }
            }
        }
        QVERIFY(questions.size() > 60); // natural variety
    }

    // The trainer packs several questions about one image into a sequence through ask().
    void askAppendsOrLeavesTurnsAlone() {
        DemoGenerator g(5);
        int asked = 0, refused = 0;
        for (int i = 0; i < 700; ++i) {
            const Scene scene = g.randomScene(1 + i % 4);
            const QType t = QType(i % kTypes);
            std::vector<QaTurn> turns{{"What shape do you see?", "It is a circle."}};
            if (!g.ask(scene, t, turns)) {
                ++refused;
                QCOMPARE(turns.size(), size_t(1));
                continue;
            }
            ++asked;
            QCOMPARE(turns.size(), size_t(t == QType::FollowUp ? 3 : 2));
            QCOMPARE(turns[0].answer, std::string("It is a circle."));
            for (size_t k = 1; k < turns.size(); ++k)
                QVERIFY(!turns[k].question.empty() && !turns[k].answer.empty());
        }
        // Some types cannot be asked of every scene ("the circle" of two circles).
        QVERIFY(refused > 0);
        QVERIFY(asked > 500);
    }
};

QTEST_APPLESS_MAIN(TestDemoData)
#include "test_demo_data.moc"
