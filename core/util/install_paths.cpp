#include "core/util/install_paths.h"

#include <filesystem>

namespace mgd {

namespace fs = std::filesystem;

std::string defaultModelDir(const std::string &compiledIn) {
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        const fs::path installed = exe.parent_path().parent_path() / "share" / "minigpt-desk" / "demo-model";
        if (fs::exists(installed / "config.json", ec)) return installed.lexically_normal().string();
    }
    return compiledIn;
}

} // namespace mgd
