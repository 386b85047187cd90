#pragma once
// Generated shape scenes and template Q&A for the built-in demo model: 1-4 objects (4 shapes,
// 8 colours, 2 sizes) whose centres lie in distinct cells of a 3x3 grid, drawn with OpenCV the
// many ways people draw them (any canvas from 1:2 to 2:1, any background, 6-90% of the shorter
// side, filled or outlined, hand-drawn wobble, rotated); deterministic by seed.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/image/image_decode.h"

namespace mgd::demo {

constexpr int kShapes = 4, kColors = 8, kSizes = 2, kCells = 9, kTypes = 7;
enum class QType { Shape, Color, Count, Position, Exist, Describe, FollowUp };
const char *typeName(QType t);

const char *shapeName(int s);   // "circle", ...; -1: "shape"
const char *shapePlural(int s); // "circles", ...; -1: "shapes"
const char *colorName(int c);
const char *sizeName(int s);
const char *cellPhrase(int cell); // "at the top left", "in the center", ...
// Whether a pixel is within `tolerance` (RGB distance) of one of the shades drawn for `color`.
bool isShadeOf(int color, const uint8_t *rgb, double tolerance);

struct SceneObject {
    int shape = 0, color = 0, size = 0, cell = 0; // cell: row-major 0..8
    // Layout: centre as fractions of the canvas's width and height (inside `cell`, away from
    // its borders), and the diameter of the shape's bounding circle as a fraction of the
    // canvas's shorter side (small: 0.06-0.20, large: 0.28-0.90).
    double x = 0.5, y = 0.5, diameter = 0.3;
};

struct Scene {
    double aspect = 1;                // canvas width / height, 0.5..2
    std::vector<SceneObject> objects; // in reading order (by cell)
    const SceneObject *at(int cell) const;
};
// "a small red circle at the top left and a large blue star in the center"
std::string sceneText(const Scene &scene);

struct QaTurn {
    std::string question, answer;
};

struct DemoSample {
    QType type = QType::Shape;
    Scene scene;
    RgbImage image;
    std::vector<QaTurn> turns; // FollowUp has two, every other type one
};

// splitmix64: the same numbers on every platform, unlike std:: distributions.
class DemoRng {
public:
    explicit DemoRng(uint64_t seed) : s_(seed) {}
    uint64_t next();
    double uniform(); // [0, 1)
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }
    double normal(); // N(0, 1)
private:
    uint64_t s_;
};

class DemoGenerator {
public:
    explicit DemoGenerator(uint64_t seed) : rng_(seed) {}
    // `count` objects in distinct cells, sized so that none overlaps another or the canvas edge;
    // aspect 0 draws the canvas's aspect ratio (a third square, the rest 1:2..2:1).
    Scene randomScene(int count, double aspect = 0);
    // Draws `scene` on a canvas whose shorter side is `shortSide` px, in a randomly drawn
    // style (background, shade, fill or outline, edges, wobble, rotation, noise).
    RgbImage render(const Scene &scene, int shortSide);
    // A canvas size as users' images come: 96..400 px on the shorter side.
    int randomShortSide();
    // A sample of the given type; renderSize 0 draws randomShortSide(), -1 draws no image.
    DemoSample sample(QType type, int renderSize = 0);
    // Appends a question of `type` about `scene` (two turns for FollowUp); false, with
    // nothing appended, when the scene cannot pose it (e.g. the colour of "the circle" of two).
    bool ask(const Scene &scene, QType type, std::vector<QaTurn> &turns);
    // Training mix (describe and follow-ups weigh more: longer answers).
    QType randomType();
    DemoRng &rng() { return rng_; }
    // 1: the whole distribution. Lower: fewer of its hard cases (any rotation, outlines, wobble,
    // the extreme sizes), for a curriculum: a ViT that meets them all at once never learns
    // shape (measured: 0.31 after 400 s, chance 0.25).
    void setDifficulty(double d) { difficulty_ = std::clamp(d, 0.0, 1.0); }

private:
    DemoRng rng_;
    double difficulty_ = 1;
};

} // namespace mgd::demo
