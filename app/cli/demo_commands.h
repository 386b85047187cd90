#pragma once
// minigpt-cli's commands for the built-in demo model: train-demo, eval-demo, eval-drawings,
// demo-samples. argv[1] is the command; options from argv[2] on.

namespace mgd::cli {

int cmdTrainDemo(int argc, char **argv);
int cmdEvalDemo(int argc, char **argv);
int cmdEvalDrawings(int argc, char **argv);
int cmdDemoSamples(int argc, char **argv);

} // namespace mgd::cli
