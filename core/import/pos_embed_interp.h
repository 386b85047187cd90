#pragma once
// The original's interpolate_pos_embed (minigpt4/models/eva_vit.py): a checkpoint's position
// embedding grid resized to the model's (MiniGPT-v2: 16x16 from the 224-px ViT -> 32x32 at
// 448 px). The CLS position is kept; the grid goes through bicubic interpolation
// (align_corners false) in fp32.
#include <ATen/core/Tensor.h>

namespace mgd {

// posEmbed [1, 1 + g*g, W] (any float dtype) -> fp32 [1, 1 + newGrid^2, W]. Throws mgd::Error
// when the token count is not 1 + a square.
at::Tensor interpolatePosEmbed(const at::Tensor &posEmbed, int64_t newGrid);

} // namespace mgd
