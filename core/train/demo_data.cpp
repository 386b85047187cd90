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
// The shades people pick for each name: paint programs' palette entries, web colours and a
// few darker / lighter ones (each drawn with +-14 of jitter per channel).
const int kShades[kColors][6][3] = {
    {{255, 0, 0}, {237, 28, 36}, {220, 30, 30}, {200, 16, 46}, {180, 0, 0}, {230, 50, 40}},          // red
    {{0, 200, 0}, {34, 177, 76}, {30, 170, 50}, {0, 128, 0}, {60, 200, 90}, {0, 240, 0}},            // green
    {{0, 0, 255}, {63, 72, 204}, {30, 70, 230}, {0, 100, 210}, {40, 120, 255}, {0, 0, 170}},         // blue
    {{255, 255, 0}, {255, 242, 0}, {245, 225, 20}, {255, 215, 0}, {240, 230, 70}, {250, 240, 90}},   // yellow
    {{255, 140, 0}, {255, 127, 39}, {255, 165, 0}, {240, 110, 20}, {255, 120, 0}, {230, 140, 30}},   // orange
    {{128, 0, 128}, {163, 73, 164}, {140, 40, 190}, {120, 50, 200}, {160, 32, 240}, {100, 30, 140}}, // purple
    {{255, 255, 255}, {250, 250, 250}, {242, 242, 242}, {235, 235, 240}, {255, 255, 250}, {245, 245, 245}},
    {{0, 0, 0}, {10, 10, 10}, {25, 25, 25}, {40, 40, 45}, {20, 20, 30}, {5, 5, 5}}};
const char *kSizeNames[kSizes] = {"small", "large"};
const char *kCellPhrases[kCells] = {"at the top left",    "at the top",    "at the top right",
                                    "on the left",        "in the center", "on the right",
                                    "at the bottom left", "at the bottom", "at the bottom right"};
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

// A shape that the scene has more than one of (-1: none).
int pluralShape(const Scene &s, DemoRng &r) {
    std::vector<int> many;
    for (int sh = 0; sh < kShapes; ++sh)
        if (std::count_if(s.objects.begin(), s.objects.end(), [&](auto &x) { return x.shape == sh; }) > 1)
            many.push_back(sh);
    return many.empty() ? -1 : many[r.below(int(many.size()))];
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

bool isShadeOf(int color, const uint8_t *rgb, double tolerance) {
    for (const auto &c : kShades[color])
        if (std::hypot(rgb[0] - c[0], rgb[1] - c[1], rgb[2] - c[2]) <= tolerance) return true;
    return false;
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

Scene DemoGenerator::randomScene(int count, double aspect) {
    DemoRng &r = rng_;
    Scene s;
    // Difficulty widens the aspect ratios (to 1:2..2:1) and how far from its cell's centre a
    // shape may sit (to a fifth of the cell from its borders).
    const double spread = std::log(1.2) + (std::log(2.0) - std::log(1.2)) * difficulty_;
    const double jitter = 0.05 + 0.25 * difficulty_;
    s.aspect = aspect > 0 ? aspect : r.below(3) == 0 ? 1.0 : std::exp(r.uniform(-spread, spread));
    // Units of the shorter side: the canvas is W x H with min(W, H) = 1.
    const double W = std::max(1.0, s.aspect), H = std::max(1.0, 1.0 / s.aspect);
    for (int tries = 0;; ++tries) {
        int cells[kCells];
        for (int i = 0; i < kCells; ++i) cells[i] = i;
        for (int i = 0; i < count; ++i) std::swap(cells[i], cells[i + r.below(kCells - i)]);
        s.objects.clear();
        for (int i = 0; i < count; ++i) {
            SceneObject o{r.below(kShapes), r.below(kColors), 0, cells[i]};
            // The centre stays a fifth of a cell away from the cell's borders: the answer to
            // "where" is never a coin toss.
            o.x = (cells[i] % 3 + 0.5 + r.uniform(-jitter, jitter)) / 3;
            o.y = (cells[i] / 3 + 0.5 + r.uniform(-jitter, jitter)) / 3;
            s.objects.push_back(o);
        }
        // Sizes in a random order (so that no cell is favoured for large ones): as large as
        // the canvas edges and the shapes already sized allow, with a gap between the sizes'
        // ranges so that "small" and "large" are never a judgement call.
        int order[4] = {0, 1, 2, 3};
        for (int i = 0; i < count; ++i) std::swap(order[i], order[i + r.below(count - i)]);
        bool ok = true;
        for (int k = 0; k < count && ok; ++k) {
            SceneObject &o = s.objects[order[k]];
            const double cx = o.x * W, cy = o.y * H;
            double maxR = 1.05 * std::min({cx, W - cx, cy, H - cy});
            for (int j = 0; j < k; ++j) {
                const SceneObject &p = s.objects[order[j]];
                maxR = std::min(maxR, 0.9 * std::hypot(cx - p.x * W, cy - p.y * H) - p.diameter / 2);
            }
            const double maxD = 2 * maxR;
            // The extremes (6%, 90%) come in as difficulty rises.
            const double largest = 0.5 + 0.4 * difficulty_, smallest = 0.12 - 0.06 * difficulty_;
            if (r.uniform() < 0.6 && maxD >= 0.30) {
                o.size = 1;
                o.diameter = r.uniform(0.28, std::min(largest, maxD));
            } else if (maxD >= smallest + 0.01) { // people rarely draw at 6%: weighted towards 20%
                o.size = 0;
                o.diameter = smallest + (std::min(0.20, maxD) - smallest) * std::sqrt(r.uniform());
            } else {
                ok = false;
            }
        }
        if (ok || tries > 100) break;
    }
    std::sort(s.objects.begin(), s.objects.end(), [](auto &a, auto &b) { return a.cell < b.cell; });
    return s;
}

int DemoGenerator::randomShortSide() {
    const int u = rng_.below(20);
    return u < 8 ? 96 + rng_.below(40) : u < 15 ? 136 + rng_.below(120) : 256 + rng_.below(145);
}

#ifdef MGD_WITH_OPENCV
namespace {

double colorDistance(const cv::Vec3d &a, const cv::Vec3d &b) {
    return cv::norm(a - b);
}

// A background as people's pictures have them: a paint program's white or black canvas, any
// flat colour, a light gradient, or a texture (stripes, ruled paper, blotches, grain).
cv::Mat background(DemoRng &r, int W, int H, const std::vector<cv::Vec3d> &avoid) {
    auto rnd = [&](double lo, double hi) {
        return cv::Vec3d(r.uniform(lo, hi), r.uniform(lo, hi), r.uniform(lo, hi));
    };
    const auto farEnough = [&](const cv::Vec3d &c) {
        for (const auto &a : avoid)
            if (colorDistance(a, c) < 110) return false;
        return true;
    };
    cv::Vec3d c0, c1;
    int kind = 0;
    for (int tries = 0;; ++tries) {
        const int u = r.below(100);
        kind = u < 28 ? 0 : u < 38 ? 1 : u < 60 ? 2 : u < 72 ? 3 : u < 86 ? 4 : 5;
        if (kind == 0) c0 = cv::Vec3d::all(255 - r.uniform(0, 14));
        if (kind == 1) c0 = cv::Vec3d::all(r.uniform(0, 28));
        if (kind == 2 || kind == 5) c0 = rnd(0, 255);
        if (kind == 3) c0 = rnd(170, 255);
        c1 = kind == 4 ? rnd(150, 255) : c0;
        if (kind == 4) c0 = rnd(150, 255);
        if (farEnough(c0) && farEnough(c1)) break;
        if (tries > 40) { // e.g. a white and a black shape: a mid grey canvas
            c0 = c1 = cv::Vec3d::all(128 + r.uniform(-20, 20));
            kind = 2;
            break;
        }
    }
    cv::Mat img(H, W, CV_32FC3, cv::Scalar(c0[0], c0[1], c0[2]));
    if (kind == 4) { // linear gradient in any direction
        const double a = r.uniform(0, 2 * kPi), ca = std::cos(a), sa = std::sin(a);
        const double span = std::abs(ca) * W + std::abs(sa) * H;
        for (int y = 0; y < H; ++y) {
            auto *row = img.ptr<cv::Vec3f>(y);
            for (int x = 0; x < W; ++x) {
                const double t = std::clamp(((x - W / 2.0) * ca + (y - H / 2.0) * sa) / span + 0.5, 0.0, 1.0);
                const cv::Vec3d c = c0 * (1 - t) + c1 * t;
                row[x] = cv::Vec3f(float(c[0]), float(c[1]), float(c[2]));
            }
        }
    } else if (kind == 5) {
        const int tex = r.below(4);
        const double amp = r.uniform(8, 24);
        if (tex == 0) { // soft stripes
            const double a = r.uniform(0, 2 * kPi), f = r.uniform(2, 9) / std::max(W, H);
            for (int y = 0; y < H; ++y) {
                auto *row = img.ptr<cv::Vec3f>(y);
                for (int x = 0; x < W; ++x) {
                    const float t = float(amp * std::sin(2 * kPi * f * (x * std::cos(a) + y * std::sin(a))));
                    row[x] += cv::Vec3f(t, t, t);
                }
            }
        } else if (tex == 1) { // ruled or squared paper
            const int step = std::max(4, int(std::min(W, H) * r.uniform(0.04, 0.12)));
            const cv::Scalar line(c0[0] - amp * 2, c0[1] - amp * 1.5, c0[2] - amp * 0.5);
            const bool grid = r.below(2);
            for (int y = step; y < H; y += step) cv::line(img, {0, y}, {W - 1, y}, line, 1, cv::LINE_AA);
            if (grid)
                for (int x = step; x < W; x += step) cv::line(img, {x, 0}, {x, H - 1}, line, 1, cv::LINE_AA);
        } else { // blotches (low-frequency noise) or grain
            const int n = tex == 2 ? 3 + r.below(6) : std::max(8, std::min(W, H) / 2);
            cv::Mat small(n, n, CV_32FC3);
            cv::RNG rng(r.next());
            rng.fill(small, cv::RNG::NORMAL, 0.0, amp);
            if (r.below(2)) { // the same field in every channel: light and shade, not colour
                std::vector<cv::Mat> ch(3);
                cv::split(small, ch);
                ch[1] = ch[0].clone();
                ch[2] = ch[0].clone();
                cv::merge(ch, small);
            }
            cv::Mat big;
            cv::resize(small, big, cv::Size(W, H), 0, 0, cv::INTER_CUBIC);
            img += big;
        }
    }
    return img;
}

// The outline of a shape of bounding radius R about (cx, cy) turned by th, as points; with
// wobble > 0 its edges bend a little, as a hand draws them.
std::vector<cv::Point2d> outline(DemoRng &r, int shape, double cx, double cy, double R, double th,
                                 double wobble) {
    std::vector<cv::Point2d> corners;
    if (shape == 0) {
        for (int i = 0; i < 48; ++i)
            corners.emplace_back(0.92 * R * std::cos(th + i * kPi / 24),
                                 0.92 * R * std::sin(th + i * kPi / 24));
    } else {
        const int n = shape == 1 ? 4 : shape == 2 ? 3 : 10;
        for (int i = 0; i < n; ++i) {
            const double a = shape == 1   ? th + i * kPi / 2 + kPi / 4
                             : shape == 2 ? th + i * 2 * kPi / 3
                                          : th + i * kPi / 5;
            const double rr = shape == 3 && i % 2 ? 0.4 * R : R;
            corners.emplace_back(rr * std::cos(a), rr * std::sin(a));
        }
    }
    std::vector<cv::Point2d> pts;
    const int sub = wobble > 0 && shape != 0 ? 6 : 1;
    for (size_t i = 0; i < corners.size(); ++i)
        for (int k = 0; k < sub; ++k) {
            const double t = double(k) / sub;
            pts.push_back(corners[i] * (1 - t) + corners[(i + 1) % corners.size()] * t);
        }
    if (wobble > 0) { // two slow radial waves plus a little jitter of each corner
        const double p1 = r.uniform(0, 2 * kPi), p2 = r.uniform(0, 2 * kPi);
        const int f1 = 2 + r.below(2), f2 = 3 + r.below(3);
        for (auto &p : pts) {
            const double a = std::atan2(p.y, p.x);
            const double k = 1 + wobble * (std::sin(f1 * a + p1) + 0.5 * std::sin(f2 * a + p2)) +
                             r.uniform(-0.3, 0.3) * wobble;
            p *= k;
        }
    }
    for (auto &p : pts) p += cv::Point2d(cx, cy);
    return pts;
}

} // namespace
#endif

RgbImage DemoGenerator::render(const Scene &scene, int shortSide) {
#ifndef MGD_WITH_OPENCV
    throw Error("demo scenes: this build has no OpenCV");
#else
    DemoRng &r = rng_;
    const int S = shortSide;
    const int W = scene.aspect >= 1 ? int(std::lround(S * scene.aspect)) : S;
    const int H = scene.aspect >= 1 ? S : int(std::lround(S / scene.aspect));
    std::vector<cv::Vec3d> colors;
    for (const auto &o : scene.objects) {
        const int *c = kShades[o.color][r.below(6)];
        colors.emplace_back(std::clamp(c[0] + r.uniform(-14, 14), 0.0, 255.0),
                            std::clamp(c[1] + r.uniform(-14, 14), 0.0, 255.0),
                            std::clamp(c[2] + r.uniform(-14, 14), 0.0, 255.0));
    }
    cv::Mat img = background(r, W, H, colors);
    // One style per picture, as one person draws it with one tool.
    const int lineType = r.below(10) < 7 ? cv::LINE_AA : cv::LINE_8;
    const double d = difficulty_;
    const double wobble = r.uniform() < 0.3 * d ? r.uniform(0.015, 0.05) : 0.0;
    const bool outlines = r.uniform() < 0.3 * d, mixed = r.uniform() < 0.25 * d;
    const double stroke = r.uniform(0.018, 0.05) * S, minStroke = 1.8 * S / 96.0;
    const bool upright = r.uniform() >= 0.4 * d;
    constexpr int shift = 4;
    const double scale = 1 << shift;
    for (size_t i = 0; i < scene.objects.size(); ++i) {
        const SceneObject &o = scene.objects[i];
        const double cx = o.x * W, cy = o.y * H, R = o.diameter / 2 * S;
        const double th =
            upright ? (o.shape == 1 ? 0.0 : -kPi / 2) + r.uniform(-0.2, 0.2) : r.uniform(0, 2 * kPi);
        const cv::Scalar color(colors[i][0], colors[i][1], colors[i][2]);
        // Small shapes are drawn filled: a thin outline at 6% of the canvas is a blob at 96 px.
        const bool outlined = (mixed ? r.below(2) == 0 : outlines) && o.diameter >= 0.16;
        std::vector<cv::Point> pts;
        for (const auto &p : outline(r, o.shape, cx, cy, R, th, wobble))
            pts.emplace_back(int(std::lround(p.x * scale)), int(std::lround(p.y * scale)));
        if (outlined) {
            const int t = int(std::lround(std::clamp(stroke, minStroke, 0.3 * R)));
            cv::polylines(img, std::vector<std::vector<cv::Point>>{pts}, true, color, std::max(1, t),
                          lineType, shift);
        } else {
            cv::fillPoly(img, std::vector<std::vector<cv::Point>>{pts}, color, lineType, shift);
        }
    }
    if (r.below(7) == 0) {
        const double sigma = r.uniform(0.4, 1.1) * S / 96.0;
        cv::GaussianBlur(img, img, cv::Size(0, 0), sigma);
    }
    if (r.below(2)) { // sensor-like noise on about half of them
        cv::Mat noise(H, W, CV_32FC3);
        cv::RNG cvRng(r.next());
        cvRng.fill(noise, cv::RNG::NORMAL, 0.0, r.uniform(2, 9));
        img += noise;
    }
    cv::Mat u8;
    img.convertTo(u8, CV_8UC3); // rounds and saturates
    RgbImage out;
    out.width = W;
    out.height = H;
    out.rgb.assign(u8.data, u8.data + size_t(W) * H * 3);
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
        const int many = r.below(3) == 0 ? pluralShape(scene, r) : -1;
        if (many >= 0) { // "What color are the squares?" -> "They are red and blue."
            std::vector<int> cs;
            for (const auto &o : objs)
                if (o.shape == many && std::find(cs.begin(), cs.end(), o.color) == cs.end())
                    cs.push_back(o.color);
            std::string list;
            for (size_t i = 0; i < cs.size(); ++i)
                list += std::string(i == 0 ? "" : i + 1 == cs.size() ? " and " : ", ") + kColorNames[cs[i]];
            ask(std::string(r.below(2) ? "What color are the " : "What colors are the ") +
                    kShapePlural[many] + "?",
                "They are " + list + ".");
        } else if (r.below(2) == 0) {
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
    s.image = render(s.scene, renderSize == 0 ? randomShortSide() : renderSize);
    return s;
}

} // namespace mgd::demo
