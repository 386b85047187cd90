#pragma once
// Where the app's read-only data is: next to the installed binary
// (<prefix>/bin/../share/minigpt-desk, as the .deb lays it out) or, when run from a build
// folder, the source tree's resources/ (the path compiled in).
#include <string>

namespace mgd {

// The built-in demo model folder: <exe dir>/../share/minigpt-desk/demo-model when it holds a
// config.json, else `compiledIn` (empty when neither is known).
std::string defaultModelDir(const std::string &compiledIn);

} // namespace mgd
