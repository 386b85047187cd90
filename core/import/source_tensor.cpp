#include "core/import/source_tensor.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <memory>

#include "core/import/torch_file.h"
#include "core/model/safetensors.h"
#include "core/util/error.h"

namespace mgd {

namespace {

// Only what a checkpoint's weights and buffers hold; anything else is refused by name.
at::ScalarType fromTorchFile(const pth::TensorRef &t, const std::string &file, const std::string &key) {
    if (!t.dtypeKnown)
        throw Error("checkpoint '" + file + "': '" + key + "' has an unsupported storage type " +
                    t.storageType);
    switch (t.dtype) {
    case pth::ScalarKind::F16: return at::kHalf;
    case pth::ScalarKind::BF16: return at::kBFloat16;
    case pth::ScalarKind::F32: return at::kFloat;
    case pth::ScalarKind::F64: return at::kDouble;
    case pth::ScalarKind::I64: return at::kLong;
    case pth::ScalarKind::I32: return at::kInt;
    case pth::ScalarKind::I16: return at::kShort;
    case pth::ScalarKind::I8: return at::kChar;
    case pth::ScalarKind::U8: return at::kByte;
    case pth::ScalarKind::Bool: return at::kBool;
    }
    return at::kFloat;
}

std::shared_ptr<pth::TorchFile> openTorchFile(const std::string &path) {
    return std::make_shared<pth::TorchFile>(pth::TorchFile::open(path));
}

} // namespace

std::string shapeString(const std::vector<int64_t> &shape) {
    std::string out = "[";
    for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
    return out + "]";
}

const char *scalarName(at::ScalarType t) {
    return c10::toString(t);
}

SourceDict listSafetensors(const std::string &path) {
    auto file = std::make_shared<SafetensorsFile>(path);
    SourceDict d;
    for (const auto &[name, info] : file->tensors()) {
        SourceTensor s;
        s.file = path;
        s.key = name;
        s.dtype = scalarTypeOf(info.dtype);
        s.shape = info.shape;
        const std::string key = name;
        s.read = [file, key] {
            at::Tensor t = file->load(key);
            file->release(key); // the copy goes on; the mapped pages need not stay
            return t;
        };
        d.tensors.emplace_back(name, std::move(s));
    }
    return d;
}

SourceDict listTorchFile(const std::string &path, const std::string &container) {
    auto tf = openTorchFile(path);
    const pth::Value &root = tf->root();
    SourceDict d;
    const pth::Value *dict = &root;
    std::string prefix;
    if (!root.is(pth::Value::Kind::Dict))
        throw Error("checkpoint '" + path + "': the top level is a " + root.kindName() +
                    ", not a state dict");
    // {"model": state_dict, "optimizer": ..., ...} as the training runners save; a file whose
    // top level holds tensors is the state dict itself.
    const pth::Value *inner =
        container.empty() ? nullptr : root.find(container == "auto" ? "model" : container);
    bool topHasTensors = false;
    for (const auto &[k, v] : root.entries())
        topHasTensors = topHasTensors || v->is(pth::Value::Kind::Tensor);
    if (inner && inner->is(pth::Value::Kind::Dict) && !(container == "auto" && topHasTensors)) {
        dict = inner;
        prefix = (container == "auto" ? std::string("model") : container) + "/";
        for (const auto &[k, v] : root.entries())
            if (k->is(pth::Value::Kind::String) && k->text() + "/" != prefix)
                d.otherKeys.push_back(k->text() + " (top level)");
    } else if (!topHasTensors) {
        throw Error(
            "checkpoint '" + path + "': no state dict" +
            (container.empty() || container == "auto" ? std::string() : " under '" + container + "'") +
            " (it holds no tensors)");
    }
    std::vector<std::string> ignored;
    for (const auto &[key, ref] : pth::tensorsOf(*dict, &ignored, "checkpoint '" + path + "'")) {
        SourceTensor s;
        s.file = path;
        s.key = prefix + key;
        s.dtype = fromTorchFile(*ref, path, s.key);
        s.shape = ref->shape;
        const pth::TensorRef *r = ref;
        const at::ScalarType dt = s.dtype;
        s.read = [tf, r, dt] {
            at::Tensor t = at::empty(r->shape, at::TensorOptions().dtype(dt));
            tf->readContiguous(*r, t.data_ptr());
            return t;
        };
        d.tensors.emplace_back(key, std::move(s));
    }
    for (auto &k : ignored) d.otherKeys.push_back(k + " (not a tensor)");
    return d;
}

double torchFileConfigNumber(const std::string &path, const std::vector<std::string> &keys) {
    const double none = std::numeric_limits<double>::quiet_NaN();
    auto tf = openTorchFile(path);
    const pth::Value *v = tf->root().find("config");
    for (const auto &k : keys) {
        if (!v || !v->is(pth::Value::Kind::Dict)) return none;
        v = v->find(k);
    }
    if (!v) return none;
    if (v->is(pth::Value::Kind::Int)) return static_cast<double>(v->integer());
    if (v->is(pth::Value::Kind::Float)) return v->real();
    return none;
}

} // namespace mgd
