#pragma once
// Generated shape scenes and template Q&A for the built-in demo model (issue 5): 1-4 objects
// (4 shapes, 8 colours, 2 sizes) on a 3x3 grid, drawn with OpenCV; deterministic by seed.
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

struct SceneObject {
    int shape = 0, color = 0, size = 0, cell = 0; // cell: row-major 0..8
};

struct Scene {
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
    Scene randomScene(int count);
    // Draws `scene` at size x size (anti-aliased, jittered, with pixel noise).
    RgbImage render(const Scene &scene, int size);
    // A sample of the given type; renderSize 0 picks one of 96/192/288 px so that training
    // also sees the downsampling path a large user image takes.
    DemoSample sample(QType type, int renderSize = 0);
    // Appends a question of `type` about `scene` (two turns for FollowUp); false, with
    // nothing appended, when the scene cannot pose it (e.g. the colour of "the circle" of two).
    bool ask(const Scene &scene, QType type, std::vector<QaTurn> &turns);
    // Training mix (describe and follow-ups weigh more: longer answers).
    QType randomType();
    DemoRng &rng() { return rng_; }

private:
    DemoRng rng_;
};

} // namespace mgd::demo
