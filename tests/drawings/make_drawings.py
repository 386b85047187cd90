#!/usr/bin/env python3
"""Writes the drawing test set of the demo model (tests/data/drawings/): pictures drawn with
ImageMagick's `convert -draw`, not by the model's generator, each with questions and the
answers accepted. The layouts are drawn by this script's own random numbers (seeded); the
pictures are made the way a person makes them in a paint program: canvases of many sizes
and aspect ratios, white / black / coloured / gradient / textured backgrounds, shapes filled
or outlined, upright or turned, palette colours.

Run: python3 tests/drawings/make_drawings.py [OUT_DIR]   (needs ImageMagick's `convert`)
The PNGs and drawings.json it writes are committed; tests read them, nothing runs this at
build or test time.
"""
import json
import math
import os
import random
import subprocess
import sys

SHAPES = ["circle", "square", "triangle", "star"]
PLURALS = ["circles", "squares", "triangles", "stars"]
COLORS = ["red", "green", "blue", "yellow", "orange", "purple", "white", "black"]
# ImageMagick colour names and palette values people pick for each name.
SHADES = {
    "red": ["red", "#e81123", "crimson", "#d62828", "#c00000"],
    "green": ["green", "#22b14c", "limegreen", "forestgreen", "#00c853"],
    "blue": ["blue", "#3f48cc", "royalblue", "dodgerblue", "#1565c0"],
    "yellow": ["yellow", "gold", "#fff200", "#ffeb3b"],
    "orange": ["orange", "darkorange", "#ff7f27", "#f57c00"],
    "purple": ["purple", "#a349a4", "darkviolet", "#7b1fa2", "#663399"],
    "white": ["white", "snow", "#f2f2f2"],
    "black": ["black", "#1e1e1e", "#333333"],
}
RGB = {"white": (255, 255, 255), "black": (0, 0, 0)}
CELLS = ["at the top left", "at the top", "at the top right", "on the left", "in the center",
         "on the right", "at the bottom left", "at the bottom", "at the bottom right"]
NUMBERS = ["no", "one", "two", "three", "four"]
CANVASES = [(400, 400), (640, 480), (480, 640), (800, 400), (300, 600), (500, 300), (256, 256),
            (1024, 768), (600, 450), (350, 700), (720, 360), (512, 512)]
# (convert canvas argument, lightness: 'light' | 'dark' | 'mid')
BACKGROUNDS = [
    ("xc:white", "light"), ("xc:white", "light"), ("xc:white", "light"), ("xc:black", "dark"),
    ("xc:#f0f0f0", "light"), ("xc:lightyellow", "light"), ("xc:lightblue", "light"),
    ("xc:#dcdcdc", "light"), ("xc:gray50", "mid"), ("xc:navy", "dark"), ("xc:darkgreen", "dark"),
    ("xc:#ffe4c4", "light"), ("gradient:white-lightblue", "light"), ("gradient:#fff8dc-#ffd0d0", "light"),
    ("radial-gradient:white-lightgray", "light"), ("plasma:white-lightgray", "light"),
    ("plasma:gray30-gray50", "dark"), ("pattern:checkerboard", "light"),
]
# Textures as a paint program's paper has them: faint, not a colourful noise.
SOFTEN = {"plasma:white-lightgray": ["-blur", "0x3", "-modulate", "100,20"],
          "plasma:gray30-gray50": ["-blur", "0x3", "-modulate", "100,20"],
          "pattern:checkerboard": ["-fill", "white", "-colorize", "70%"]}


def article(noun):
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def count_answer(k, shape):
    one, many = (SHAPES[shape], PLURALS[shape]) if shape >= 0 else ("shape", "shapes")
    return f"There is one {one}." if k == 1 else f"There are {NUMBERS[k]} {many}."


def usable(color, tone):
    # No white shape on a light canvas, no black one on a dark one: they would not be seen.
    return not (color == "white" and tone == "light") and not (color == "black" and tone == "dark")


def layout(rnd, w, h, count, tone, max_d=0.8):
    s = min(w, h)
    for _ in range(1000):
        cells = rnd.sample(range(9), count)
        objs = []
        for c in cells:
            # The centre in the middle half of its cell: the place is never in doubt.
            x = (c % 3 + 0.5 + rnd.uniform(-0.25, 0.25)) / 3 * w
            y = (c // 3 + 0.5 + rnd.uniform(-0.25, 0.25)) / 3 * h
            color = rnd.choice([k for k in COLORS if usable(k, tone)])
            objs.append({"cell": c, "x": x, "y": y, "shape": rnd.randrange(4), "color": color})
        ok = True
        for i, o in enumerate(objs):
            room = min(o["x"], w - o["x"], o["y"], h - o["y"])
            for p in objs[:i]:
                room = min(room, 0.85 * math.hypot(o["x"] - p["x"], o["y"] - p["y"]) - p["r"])
            big = rnd.random() < 0.5 and 2 * room >= 0.32 * s
            if big:
                o["size"], o["r"] = "large", rnd.uniform(0.3 * s, min(max_d * s, 2 * room)) / 2
            elif 2 * room >= 0.09 * s:
                o["size"], o["r"] = "small", rnd.uniform(0.08 * s, min(0.18 * s, 2 * room)) / 2
            else:
                ok = False
                break
        if ok:
            return sorted(objs, key=lambda o: o["cell"])
    raise RuntimeError("no layout")


def points(shape, x, y, r, turn):
    if shape == 1:
        return [(x + r * math.cos(turn + math.pi / 4 + i * math.pi / 2), y + r * math.sin(turn + math.pi / 4 + i * math.pi / 2)) for i in range(4)]
    if shape == 2:
        return [(x + r * math.cos(turn - math.pi / 2 + i * 2 * math.pi / 3), y + r * math.sin(turn - math.pi / 2 + i * 2 * math.pi / 3)) for i in range(3)]
    inner = 0.42
    return [(x + (r if i % 2 == 0 else inner * r) * math.cos(turn - math.pi / 2 + i * math.pi / 5),
             y + (r if i % 2 == 0 else inner * r) * math.sin(turn - math.pi / 2 + i * math.pi / 5)) for i in range(10)]


def draw_args(o, rnd, style):
    shade = rnd.choice(SHADES[o["color"]])
    x, y, r = o["x"], o["y"], o["r"]
    args = []
    if style["outline"] and o["size"] == "large":
        width = max(3, round(r * rnd.uniform(0.08, 0.18)))
        args += ["-fill", "none", "-stroke", shade, "-strokewidth", str(width)]
    else:
        args += ["-fill", shade, "-stroke", "none"]
    turn = rnd.uniform(-0.15, 0.15) if style["upright"] else rnd.uniform(0, 2 * math.pi)
    if o["shape"] == 0:
        rr = 0.92 * r
        if style["ellipse"]:  # a hand's circle is a little oval
            args += ["-draw", f"ellipse {x:.1f},{y:.1f} {rr:.1f},{rr * rnd.uniform(0.88, 1.0):.1f} 0,360"]
        else:
            args += ["-draw", f"circle {x:.1f},{y:.1f} {x + rr:.1f},{y:.1f}"]
    elif o["shape"] == 1 and style["upright"] and rnd.random() < 0.6:
        h = r / math.sqrt(2)
        args += ["-draw", f"rectangle {x - h:.1f},{y - h:.1f} {x + h:.1f},{y + h:.1f}"]
    else:
        pts = " ".join(f"{px:.1f},{py:.1f}" for px, py in points(o["shape"], x, y, r, turn))
        args += ["-draw", f"polygon {pts}"]
    return args


def describe(objs):
    parts = [article(f"{o['size']} {o['color']} {SHAPES[o['shape']]}") + " " + CELLS[o["cell"]] for o in objs]
    if len(parts) == 1:
        return f"There is {parts[0]}."
    return "There is " + ", ".join(parts[:-1]) + " and " + parts[-1] + "."


def questions(objs, rnd):
    qs = []
    name = lambda o: f"{o['color']} {SHAPES[o['shape']]}"
    shapes = [o["shape"] for o in objs]
    kinds = [(o["shape"], o["color"]) for o in objs]
    if len(objs) == 1:
        qs.append(("What shape is in the image?", f"It is a {SHAPES[objs[0]['shape']]}."))
    o = rnd.choice(objs)
    qs.append((f"What shape is {CELLS[o['cell']]}?", f"It is a {SHAPES[o['shape']]}."))
    empty = [c for c in range(9) if c not in [p["cell"] for p in objs]]
    if rnd.random() < 0.3 and empty:
        c = rnd.choice(empty)
        qs.append((f"What shape is {CELLS[c]}?", f"There is nothing {CELLS[c]}."))
    o = rnd.choice(objs)
    if shapes.count(o["shape"]) == 1:
        qs.append((f"What color is the {SHAPES[o['shape']]}?", f"It is {o['color']}."))
    else:
        cols = []
        for p in objs:
            if p["shape"] == o["shape"] and p["color"] not in cols:
                cols.append(p["color"])
        listed = cols[0] if len(cols) == 1 else ", ".join(cols[:-1]) + " and " + cols[-1]
        qs.append((f"What color are the {PLURALS[o['shape']]}?", f"They are {listed}."))
    qs.append(("How many shapes are there?", count_answer(len(objs), -1)))
    sh = rnd.randrange(4)
    qs.append((f"How many {PLURALS[sh]} are there?", count_answer(shapes.count(sh), sh)))
    o = rnd.choice(objs)
    if kinds.count((o["shape"], o["color"])) == 1:
        qs.append((f"Where is the {name(o)}?", f"The {name(o)} is {CELLS[o['cell']]}."))
    o = rnd.choice(objs)
    qs.append((f"Is there {article(name(o))}?", f"There is {article(name(o))}."))
    absent = [(s, c) for s in range(4) for c in COLORS if (s, c) not in kinds]
    s, c = rnd.choice(absent)
    qs.append((f"Is there {article(c + ' ' + SHAPES[s])}?", f"There is no {c} {SHAPES[s]}."))
    if rnd.random() < 0.5:
        qs.append(("Describe the image.", describe(objs)))
    return qs


def convert(out, w, h, canvas, draws, antialias, seed):
    cmd = ["convert", "-seed", str(seed), "-size", f"{w}x{h}", canvas] + SOFTEN.get(canvas, [])
    if not antialias:
        cmd.append("+antialias")
    cmd += draws + ["-depth", "8", "-strip"]  # -strip: no timestamps, the same bytes every run
    if out.endswith(".jpg"):
        cmd += ["-quality", "88"]
    subprocess.run(cmd + [out], check=True)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "data", "drawings")
    os.makedirs(out, exist_ok=True)
    rnd = random.Random(2026)
    entries = []
    for i in range(64):
        w, h = rnd.choice(CANVASES)
        canvas, tone = rnd.choice(BACKGROUNDS)
        count = rnd.choice([1, 1, 2, 2, 3, 3, 4])
        objs = layout(rnd, w, h, count, tone)
        style = {"outline": rnd.random() < 0.3, "upright": rnd.random() < 0.7, "ellipse": rnd.random() < 0.3}
        draws = []
        for o in objs:
            draws += draw_args(o, rnd, style)
        # Some as JPEG, as photos of a screen and web pictures come (textured ones always: a
        # PNG of paper grain is a megabyte).
        jpeg = canvas.startswith("plasma") or rnd.random() < 0.2
        name = f"drawing{i + 1:02d}." + ("jpg" if jpeg else "png")
        convert(os.path.join(out, name), w, h, canvas, draws, rnd.random() < 0.75, 100 + i)
        entries.append({"image": name, "set": "generated-by-script", "scene": describe(objs),
                        "questions": [{"q": q, "accept": [a]} for q, a in questions(objs, rnd)]})
    # The pictures of earlier reports, drawn again from their descriptions: the four
    # (a big red circle on white, two blue squares on 4:3, a white square on black, an
    # outlined triangle) and the six of the first demo model's closing note (hand1-hand6).
    fixed = [
        ("issue-red-circle.png", 500, 500, "xc:white", [(4, 0, "red", 0.40, "large", False)]),
        ("issue-two-blue-squares.png", 640, 480, "xc:white", [(3, 1, "blue", 0.08, "small", False), (5, 1, "blue", 0.08, "small", False)]),
        ("issue-white-square-on-black.png", 400, 400, "xc:black", [(4, 1, "white", 0.22, "large", False)]),
        ("issue-outlined-triangle.png", 500, 400, "xc:white", [(4, 2, "black", 0.38, "large", True)]),
        ("hand1.png", 300, 300, "xc:gray50", [(0, 0, "red", 0.16, "large", False), (4, 2, "blue", 0.16, "large", False), (8, 1, "yellow", 0.16, "large", False)]),
        ("hand2.png", 300, 300, "xc:white", [(4, 1, "green", 0.2, "large", False)]),
        ("hand3.png", 300, 300, "xc:lightblue", [(2, 3, "purple", 0.16, "large", False), (6, 0, "black", 0.16, "large", False)]),
        ("hand4.png", 300, 300, "xc:white", [(2, 0, "orange", 0.16, "large", False), (4, 1, "green", 0.16, "large", False)]),
        ("hand5.png", 300, 300, "xc:gray50", [(0, 1, "purple", 0.16, "large", False), (2, 1, "purple", 0.16, "large", False), (7, 2, "white", 0.16, "large", False)]),
        ("hand6.png", 300, 300, "xc:#dcdcdc", [(2, 1, "red", 0.16, "large", False), (3, 2, "yellow", 0.16, "large", False), (4, 3, "green", 0.16, "large", False), (6, 0, "blue", 0.16, "large", False)]),
    ]
    for name, w, h, canvas, spec in fixed:
        s = min(w, h)
        objs = [{"cell": c, "x": (c % 3 + 0.5) / 3 * w, "y": (c // 3 + 0.5) / 3 * h, "shape": sh, "color": col,
                 "r": rf * s, "size": size} for c, sh, col, rf, size, _ in spec]
        style = {"outline": spec[0][5], "upright": True, "ellipse": False}
        draws = []
        for o in objs:
            d = draw_args(o, random.Random(7), style)
            if style["outline"]:
                d[d.index("-strokewidth") + 1] = "8"
            draws += d
        convert(os.path.join(out, name), w, h, canvas, draws, True, 1)
        entries.append({"image": name, "set": "earlier-reports", "scene": describe(objs),
                        "questions": [{"q": q, "accept": [a]} for q, a in questions(objs, rnd)]})
    with open(os.path.join(out, "drawings.json"), "w") as f:
        json.dump(entries, f, indent=1)
        f.write("\n")
    print(f"{len(entries)} drawings, {sum(len(e['questions']) for e in entries)} questions in {out}")


if __name__ == "__main__":
    main()
