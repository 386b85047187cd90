#include "core/train/demo_data.h"

#include <algorithm>
#include <cmath>
#ifdef MGD_WITH_OPENCV
// OpenCV 4.6 headers trip a C++20 deprecation warning.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-enum-enum-conversion"
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#pragma GCC diagnostic pop
#endif

#include "core/util/error.h"

namespace mgd::demo {

namespace {

const char *kShapeNames[kShapes] = {"circle", "square", "triangle", "star"};
const char *kShapePlural[kShapes] = {"circles", "squares", "triangles", "stars"};
const char *kColorNames[kColors] = {"red", "green", "blue", "yellow", "orange", "purple", "white", "black"};
const int kColorRgb[kColors][3] = {{220, 30, 30}, {30, 170, 50},  {30, 70, 230},   {245, 225, 20},
                                   {255, 140, 0}, {140, 40, 190}, {250, 250, 250}, {10, 10, 10}};
const char *kSizeNames[kSizes] = {"small", "large"};
const char *kCellPhrases[kCells] = {"at the top left",    "at the top",    "at the top right",
                                    "on the left",        "in the center", "on the right",
                                    "at the bottom left", "at the bottom", "at the bottom right"};
const int kBackgrounds[][3] = {{128, 128, 128}, {185, 185, 185}, {75, 75, 75},   {0, 110, 110},
                               {225, 205, 165}, {240, 170, 190}, {110, 70, 35},  {110, 110, 30},
                               {150, 185, 215}, {250, 250, 250}, {240, 240, 235}}; // the last two: a paint
                                                                                   // program's canvas
constexpr int kWhite = 6;
constexpr int kNumBackgrounds = sizeof(kBackgrounds) / sizeof(kBackgrounds[0]);
const char *kNumbers[] = {"no", "one", "two", "three", "four"};
const char *kOther[] = {"dog", "cat", "car", "tree", "house", "person", "bird", "flower"};
constexpr double kPi = 3.14159265358979323846;

template <size_t N> const char *pick(DemoRng &r, const char *const (&list)[N]) {
    return list[r.below(N)];
}

// "a red star", "an orange star".
std::string withArticle(const std::string &noun) {
    return (noun.find_first_of("aeiou") == 0 ? "an " : "a ") + noun;
}

std::string objectName(const SceneObject &o) {
    return std::string(kColorNames[o.color]) + " " + kShapeNames[o.shape];
}

bool uniqueShape(const Scene &s, const SceneObject &o) {
    return std::count_if(s.objects.begin(), s.objects.end(), [&](auto &x) { return x.shape == o.shape; }) ==
           1;
}
bool uniqueKind(const Scene &s, const SceneObject &o) {
    return std::count_if(s.objects.begin(), s.objects.end(),
                         [&](auto &x) { return x.shape == o.shape && x.color == o.color; }) == 1;
}

// "Where is the red star?" -> "The red star is at the top left.", not "It is at the top left.":
// the cell is then decided right after the object's words, not ~10 positions after them. 12-min
// runs from one stage 1: position 65% -> 86%, follow-ups 77% -> 86% (100 questions each).
std::string whereAnswer(const SceneObject &o) {
    return "The " + objectName(o) + " is " + kCellPhrases[o.cell] + ".";
}

std::string countAnswer(int k, int shape) { // shape -1: all shapes
    const std::string one = shapeName(shape), many = shapePlural(shape);
    if (k == 1) return "There is one " + one + ".";
    return std::string("There are ") + kNumbers[k] + " " + many + ".";
}

} // namespace

const char *typeName(QType t) {
    static const char *n[kTypes] = {"shape", "color", "count", "position", "exist", "describe", "followup"};
    return n[static_cast<int>(t)];
}
const char *shapeName(int s) {
    return s < 0 ? "shape" : kShapeNames[s];
}
const char *shapePlural(int s) {
    return s < 0 ? "shapes" : kShapePlural[s];
}
const char *colorName(int c) {
    return kColorNames[c];
}
const char *sizeName(int s) {
    return kSizeNames[s];
}
const char *cellPhrase(int c) {
    return kCellPhrases[c];
}

std::string sceneText(const Scene &scene) {
    const auto &objs = scene.objects;
    std::string a;
    for (size_t i = 0; i < objs.size(); ++i) {
        if (i) a += i + 1 == objs.size() ? " and " : ", ";
        a += withArticle(std::string(kSizeNames[objs[i].size]) + " " + objectName(objs[i])) + " " +
             kCellPhrases[objs[i].cell];
    }
    return a;
}

const SceneObject *Scene::at(int cell) const {
    for (const auto &o : objects)
        if (o.cell == cell) return &o;
    return nullptr;
}

uint64_t DemoRng::next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double DemoRng::uniform() {
    return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0);
}

double DemoRng::normal() { // Box-Muller
    const double u = std::max(uniform(), 1e-12), v = uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(2 * kPi * v);
}

Scene DemoGenerator::randomScene(int count) {
    int cells[kCells];
    for (int i = 0; i < kCells; ++i) cells[i] = i;
    for (int i = 0; i < count; ++i) std::swap(cells[i], cells[i + rng_.below(kCells - i)]);
    Scene s;
    for (int i = 0; i < count; ++i)
        s.objects.push_back({rng_.below(kShapes), rng_.below(kColors), rng_.below(kSizes), cells[i]});
    std::sort(s.objects.begin(), s.objects.end(), [](auto &a, auto &b) { return a.cell < b.cell; });
    return s;
}

RgbImage DemoGenerator::render(const Scene &scene, int size) {
#ifndef MGD_WITH_OPENCV
    throw Error("demo scenes: this build has no OpenCV");
#else
    DemoRng &r = rng_;
    int bgi = r.below(kNumBackgrounds);
    // No white object on a white canvas: it would not be there to see.
    const bool hasWhite =
        std::any_of(scene.objects.begin(), scene.objects.end(), [](auto &o) { return o.color == kWhite; });
    while (hasWhite && kBackgrounds[bgi][1] >= 230) bgi = r.below(kNumBackgrounds);
    cv::Mat img(size, size, CV_32FC3);
    double bg[3];
    for (int c = 0; c < 3; ++c) bg[c] = kBackgrounds[bgi][c] + r.uniform(-12, 12);
    // Plain, a gentle gradient, or soft stripes: "lightly textured".
    const int texture = r.below(3);
    const double amp = r.uniform(6, 14), angle = r.uniform(0, 2 * kPi), freq = r.uniform(2, 6);
    const double ca = std::cos(angle), sa = std::sin(angle);
    for (int y = 0; y < size; ++y) {
        auto *row = img.ptr<cv::Vec3f>(y);
        for (int x = 0; x < size; ++x) {
            const double u = (x * ca + y * sa) / size;
            const double t = texture == 0   ? 0
                             : texture == 1 ? amp * (u - 0.5)
                                            : 0.6 * amp * std::sin(2 * kPi * freq * u);
            row[x] = cv::Vec3f(float(bg[0] + t), float(bg[1] + t), float(bg[2] + t));
        }
    }
    const double cell = size / 3.0;
    constexpr int shift = 4, scale = 1 << shift;
    for (const auto &o : scene.objects) {
        const int row = o.cell / 3, col = o.cell % 3;
        const double cx = (col + 0.5 + r.uniform(-0.05, 0.05)) * cell;
        const double cy = (row + 0.5 + r.uniform(-0.05, 0.05)) * cell;
        const double rad = (o.size == 0 ? 0.20 : 0.32) * cell * r.uniform(0.92, 1.08);
        cv::Scalar color;
        for (int c = 0; c < 3; ++c)
            color[c] = std::clamp(kColorRgb[o.color][c] + r.uniform(-20, 20), 0.0, 255.0);
        // Upright, as people draw them, with +-20 degrees of jitter (fully random rotation left
        // shape at ~60% per object after stage 1's first minutes: measured).
        const double th = (o.shape == 1 ? 0.0 : -kPi / 2) + r.uniform(-0.35, 0.35);
        if (o.shape == 0) {
            cv::circle(img, cv::Point(int(std::lround(cx * scale)), int(std::lround(cy * scale))),
                       int(std::lround(rad * scale)), color, -1, cv::LINE_AA, shift);
            continue;
        }
        std::vector<cv::Point> pts;
        const int n = o.shape == 1 ? 4 : o.shape == 2 ? 3 : 10;
        for (int i = 0; i < n; ++i) {
            double a, rr;
            if (o.shape == 1) {
                a = th + i * kPi / 2 + kPi / 4;
                rr = rad * 1.15;
            } else if (o.shape == 2) {
                a = th + i * 2 * kPi / 3;
                rr = rad * 1.25;
            } else {
                a = th + i * kPi / 5;
                rr = i % 2 == 0 ? rad * 1.25 : rad * 0.5;
            }
            pts.emplace_back(int(std::lround((cx + rr * std::cos(a)) * scale)),
                             int(std::lround((cy + rr * std::sin(a)) * scale)));
        }
        cv::fillPoly(img, std::vector<std::vector<cv::Point>>{pts}, color, cv::LINE_AA, shift);
    }
    // Pixel noise from OpenCV's generator (seeded from ours: deterministic, and much faster).
    cv::Mat noise(size, size, CV_32FC3);
    cv::RNG cvRng(r.next());
    cvRng.fill(noise, cv::RNG::NORMAL, 0.0, r.uniform(2, 7));
    img += noise;
    cv::Mat u8;
    img.convertTo(u8, CV_8UC3); // rounds and saturates
    RgbImage out;
    out.width = out.height = size;
    out.rgb.assign(u8.data, u8.data + size_t(size) * size * 3);
    return out;
#endif
}

QType DemoGenerator::randomType() {
    // Count, position and exist are the slowest to learn (measured); describe the fastest.
    static const double w[kTypes] = {1.0, 1.0, 1.6, 1.6, 1.6, 1.4, 1.8};
    double total = 0;
    for (double x : w) total += x;
    double u = rng_.uniform() * total;
    for (int i = 0; i < kTypes; ++i) {
        if (u < w[i]) return static_cast<QType>(i);
        u -= w[i];
    }
    return QType::FollowUp;
}

bool DemoGenerator::ask(const Scene &scene, QType type, std::vector<QaTurn> &turns) {
    DemoRng &r = rng_;
    const auto &objs = scene.objects;
    const SceneObject &any = objs[r.below(int(objs.size()))];
    auto ask = [&](std::string q, std::string a) { turns.push_back({std::move(q), std::move(a)}); };
    switch (type) {
    case QType::Shape: {
        if (objs.size() == 1 && r.below(2) == 0) {
            static const char *q[] = {"What shape is in the image?", "What shape do you see?",
                                      "Which shape is in the picture?"};
            ask(pick(r, q), std::string("It is a ") + kShapeNames[objs[0].shape] + ".");
        } else {
            const int cell = r.below(6) == 0 ? r.below(kCells) : any.cell;
            const SceneObject *o = scene.at(cell);
            const std::string q = r.below(2) ? std::string("What shape is ") + kCellPhrases[cell] + "?"
                                             : std::string("What is the shape ") + kCellPhrases[cell] + "?";
            ask(q, o ? std::string("It is a ") + kShapeNames[o->shape] + "."
                     : std::string("There is nothing ") + kCellPhrases[cell] + ".");
        }
        break;
    }
    case QType::Color: {
        if (r.below(2) == 0) {
            if (!uniqueShape(scene, any)) return false;
            const std::string n = kShapeNames[any.shape];
            static const char *q[] = {"What color is the %?", "What is the color of the %?",
                                      "Which color does the % have?"};
            std::string t = pick(r, q);
            t.replace(t.find('%'), 1, n);
            ask(t, std::string("It is ") + kColorNames[any.color] + ".");
        } else {
            ask(std::string("What color is the shape ") + kCellPhrases[any.cell] + "?",
                std::string("It is ") + kColorNames[any.color] + ".");
        }
        break;
    }
    case QType::Count: {
        if (r.below(2) == 0) {
            static const char *q[] = {"How many shapes are there?", "How many objects are in the image?",
                                      "Count the shapes."};
            ask(pick(r, q), countAnswer(int(objs.size()), -1));
        } else {
            const int sh = r.below(kShapes);
            const int k =
                int(std::count_if(objs.begin(), objs.end(), [&](auto &o) { return o.shape == sh; }));
            const std::string q = r.below(2) ? std::string("How many ") + kShapePlural[sh] + " are there?"
                                             : std::string("How many ") + kShapePlural[sh] + " do you see?";
            ask(q, countAnswer(k, sh));
        }
        break;
    }
    case QType::Position: {
        if (!uniqueKind(scene, any)) return false;
        static const char *q[] = {"Where is the %?", "Where is the % located?",
                                  "What is the position of the %?"};
        std::string t = pick(r, q);
        t.replace(t.find('%'), 1, objectName(any));
        ask(t, whereAnswer(any));
        break;
    }
    case QType::Exist: {
        // Answered "There is (no) ...", not "Yes/No, ...": the decision then comes two tokens into the
        // answer, and the 3-layer LLaMA uses those positions to think (exist: 62% -> see notes).
        static const char *q[] = {"Is there %?", "Is there % in the image?", "Do you see %?"};
        std::string t = pick(r, q), what, answer;
        const int kind = r.below(10);
        if (kind < 2) { // unanswerable from the scene vocabulary
            what = pick(r, kOther);
            answer = "There is no " + what + ".";
        } else if (kind < 6) {
            what = r.below(4) == 0 ? std::string(kShapeNames[any.shape]) : objectName(any);
            answer = "There is " + withArticle(what) + ".";
        } else { // hard negatives: share the colour or the shape of a present object
            SceneObject o = any;
            bool shapeOnly = false;
            for (int tries = 0;; ++tries) {
                o = any;
                shapeOnly = r.below(5) == 0;
                if (shapeOnly)
                    o.shape = r.below(kShapes);
                else if (r.below(2))
                    o.color = r.below(kColors);
                else
                    o.shape = r.below(kShapes);
                const bool present = std::any_of(objs.begin(), objs.end(), [&](auto &x) {
                    return x.shape == o.shape && (shapeOnly || x.color == o.color);
                });
                if (!present) break;
            }
            what = shapeOnly ? std::string(kShapeNames[o.shape]) : objectName(o);
            answer = "There is no " + what + ".";
        }
        t.replace(t.find('%'), 1, withArticle(what));
        ask(t, answer);
        break;
    }
    case QType::Describe: {
        static const char *q[] = {"Describe the image.", "What is in the image?",
                                  "Describe the picture in detail."};
        ask(pick(r, q), "There is " + sceneText(scene) + ".");
        break;
    }
    case QType::FollowUp: {
        const int kind = r.below(4);
        const std::string where = std::string("It is ") + kCellPhrases[any.cell] + ".";
        if (kind == 0) {
            ask(std::string("What shape is ") + kCellPhrases[any.cell] + "?",
                std::string("It is a ") + kShapeNames[any.shape] + ".");
            ask(r.below(2) ? "And what color is it?" : "What color is it?",
                std::string("It is ") + kColorNames[any.color] + ".");
        } else if (kind == 1) {
            if (!uniqueKind(scene, any)) return false;
            ask("Is there " + withArticle(objectName(any)) + "?",
                "There is " + withArticle(objectName(any)) + ".");
            ask(r.below(2) ? "Where is it?" : "And where is it?", where);
        } else if (kind == 2) {
            if (!uniqueShape(scene, any)) return false;
            ask(std::string("What color is the ") + kShapeNames[any.shape] + "?",
                std::string("It is ") + kColorNames[any.color] + ".");
            ask(r.below(2) ? "And where is it?" : "Where is it?", where);
        } else {
            if (!uniqueKind(scene, any)) return false;
            ask("Where is the " + objectName(any) + "?", whereAnswer(any));
            ask(r.below(2) ? "And what size is it?" : "How big is it?",
                std::string("It is ") + kSizeNames[any.size] + ".");
        }
        break;
    }
    }
    return true;
}

DemoSample DemoGenerator::sample(QType type, int renderSize) {
    DemoRng &r = rng_;
    DemoSample s;
    s.type = type;
    do {
        s.scene = randomScene(1 + r.below(4));
        s.turns.clear();
    } while (!ask(s.scene, type, s.turns));
    if (renderSize < 0) return s;
    if (renderSize == 0) {
        const int u = r.below(20);
        renderSize = u < 12 ? 96 : u < 17 ? 192 : 288;
    }
    s.image = render(s.scene, renderSize);
    return s;
}

} // namespace mgd::demo
