// train_tiny.cc: train_tiny.c through the C++ wrapper (libswitch.hpp): the `tiny` preset
// trained for 50 steps on the demo's data, saved, loaded back, and the same forward pass
// through both models. Errors are exceptions.
//
//   train_tiny_cpp [TRAIN_CONFIG [OUT_DIR]]
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <libswitch.hpp>
#include <sstream>
#include <string>

int main(int argc, char** argv) try {
  const std::string config_path = argc > 1 ? argv[1] : "examples/train/demo-switch.textproto";
  std::string out_dir;
  if (argc > 2) {
    out_dir = argv[2];
  } else {
    char dir[] = "/tmp/train_tiny_cpp_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    out_dir = dir;
  }
  std::cout << "libswitch " << libswitch::version() << "\n";

  std::ifstream file(config_path);
  if (!file) throw std::runtime_error("cannot open " + config_path);
  std::stringstream text;
  text << file.rdbuf();
  libswitch::Config train = libswitch::Config::from_text(SW_CONFIG_TRAIN, text.str());
  train.set("steps", 50).set("batch_size", 8).set("warmup_steps", 10).set("eval_batches", 2);
  libswitch::Config config = libswitch::Config::preset("tiny");
  config.set("vocab_size", 2176).set("routing_group", "GROUP_BATCH");

  libswitch::Model model(config, "cpu", /*seed=*/0);
  std::cout << "tiny: " << model.parameter_count() << " parameters\n";
  libswitch::Trainer trainer(model, train);
  for (int step = 1; step <= 50; ++step) {
    const sw_metrics m = trainer.step();
    if (step == 1 || step % 10 == 0)
      std::printf("step %3lld  loss %.4f  ce %.4f  aux %.5f\n", static_cast<long long>(m.step),
                  m.loss, m.ce, m.aux);
  }
  std::printf("held-out loss %.4f\n", trainer.evaluate().loss);
  const std::string checkpoint = trainer.save(out_dir);
  std::cout << "saved " << checkpoint << "\n";
  libswitch::Model loaded = libswitch::Model::load(checkpoint);

  libswitch::Batch batch;
  batch.batch = 2;
  batch.input_len = 6;
  batch.target_len = 3;
  batch.input_ids = {72, 101, 108, 108, 111, 1, 87, 111, 114, 108, 100, 1};
  batch.decoder_input_ids = {0, 33, 34, 0, 35, 36};
  batch.labels = {33, 34, 1, 35, 36, 1};
  const libswitch::Result a = model.forward(batch), b = loaded.forward(batch);
  const bool same = a.logits() == b.logits();
  std::printf("forward: loss %.4f; reloaded model: %s\n", a.losses().loss,
              same ? "same logits" : "DIFFERENT logits");
  for (const libswitch::LayerRouting& layer : a.routing()) {
    std::printf("%s block %lld:", layer.stats.stack == SW_ENCODER ? "encoder" : "decoder",
                static_cast<long long>(layer.stats.block));
    for (int64_t n : layer.tokens_per_expert) std::printf(" %lld", static_cast<long long>(n));
    std::printf("\n");
  }
  return same ? 0 : 1;
} catch (const libswitch::Error& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
