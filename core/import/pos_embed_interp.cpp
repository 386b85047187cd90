#include "core/import/pos_embed_interp.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/util/error.h"

namespace mgd {

at::Tensor interpolatePosEmbed(const at::Tensor &posEmbed, int64_t newGrid) {
    if (posEmbed.dim() != 3 || posEmbed.size(0) != 1) throw Error("pos_embed must be [1, 1 + grid^2, width]");
    const int64_t tokens = posEmbed.size(1) - 1, width = posEmbed.size(2);
    const auto grid = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(tokens))));
    if (grid * grid != tokens)
        throw Error("pos_embed has " + std::to_string(tokens) + " patch positions, not a square grid");
    at::Tensor p = posEmbed.to(at::kFloat); // the original upcasts first
    if (grid == newGrid) return p;
    at::Tensor cls = p.narrow(1, 0, 1);
    at::Tensor g = p.narrow(1, 1, tokens).reshape({1, grid, grid, width}).permute({0, 3, 1, 2}).contiguous();
    at::Tensor r = at::upsample_bicubic2d(g, {newGrid, newGrid}, false);
    r = r.permute({0, 2, 3, 1}).reshape({1, newGrid * newGrid, width});
    return at::cat({cls, r}, 1).contiguous();
}

} // namespace mgd
