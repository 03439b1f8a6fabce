// Checkpoints and HuggingFace import/export for models (trainers save their own state in
// trainer.cc).
#include "core/io/checkpoint.h"

#include <filesystem>

#include "capi/internal.h"
#include "core/io/hf_checkpoint.h"

using namespace sw::capi;  // NOLINT: this file implements the namespace's C face

extern "C" {

sw_status sw_model_save(const sw_model* model, const char* root) {
  return guard(__func__, [&] {
    ModelState& s = model_state(model);
    const std::string dir = string_arg(root, "root");
    std::shared_lock lock(s.mutex);
    sw::Checkpoint c;
    c.model = s.model.config();
    c.seed = s.model.seed();
    for (const auto& e : s.model.parameters().entries())
      c.parameters.push_back({e.name, e.tensor.to(sw::Device::cpu())});
    sw::save_checkpoint(dir, c);
  });
}

sw_status sw_model_load(const char* path, const char* device, sw_model** out) {
  return guard(__func__, [&] {
    sw_model** target = &deref(out, "out");
    const std::string dir = string_arg(path, "path");
    string_arg(device, "device");
    const sw::Checkpoint c = sw::load_checkpoint(dir);
    *target = new_model_handle(make_model_state(sw::model_from_checkpoint(c), device));
  });
}

sw_status sw_model_from_pretrained(const char* path, const char* device, sw_model** out) {
  return guard(__func__, [&] {
    namespace fs = std::filesystem;
    sw_model** target = &deref(out, "out");
    const fs::path dir = string_arg(path, "path");
    string_arg(device, "device");
    if (fs::is_regular_file(dir / "config.json")) {
      *target = new_model_handle(make_model_state(
          sw::import_hf((dir / "config.json").string(), dir.string(), {}), device));
      return;
    }
    fs::path checkpoint = dir;
    if (!fs::exists(dir / "manifest.pb") && !fs::exists(dir / "latest") &&
        fs::is_directory(dir / "checkpoints"))
      checkpoint = dir / "checkpoints";  // a run directory
    SW_CHECK(fs::exists(checkpoint / "manifest.pb") || fs::exists(checkpoint / "latest"),
             sw::Status::kNotFound, "from_pretrained: ", dir.string(),
             " holds no config.json (an HF model directory), no manifest.pb or latest (a "
             "libswitch checkpoint or root) and no checkpoints/ (a run directory)");
    const sw::Checkpoint c = sw::load_checkpoint(checkpoint.string());
    *target = new_model_handle(make_model_state(sw::model_from_checkpoint(c), device));
  });
}

sw_status sw_model_load_parameters(sw_model* model, const char* path, int strict) {
  return guard(__func__, [&] {
    ModelState& s = model_state(model);
    const sw::Checkpoint c = sw::load_checkpoint(string_arg(path, "path"));
    std::unique_lock lock(s.mutex);
    std::vector<std::pair<std::string, sw::Tensor>> targets;
    for (const auto& e : s.model.parameters().entries()) targets.push_back({e.name, e.tensor});
    sw::restore_tensors(c.parameters, targets, strict != 0, "parameter");
  });
}

sw_status sw_checkpoint_latest(const char* root, char* buf, size_t cap, size_t* needed) {
  return guard(__func__, [&] {
    write_string(sw::latest_checkpoint(string_arg(root, "root")), buf, cap, needed, "buf");
  });
}

sw_status sw_model_import_hf(const char* config_json_path, const char* weights_path,
                             const char* device, sw_model** out) {
  return guard(__func__, [&] {
    sw_model** target = &deref(out, "out");
    const std::string config = string_arg(config_json_path, "config_json_path");
    const std::string weights = string_arg(weights_path, "weights_path");
    string_arg(device, "device");
    *target = new_model_handle(make_model_state(sw::import_hf(config, weights), device));
  });
}

sw_status sw_model_import_hf_with(const char* config_json_path, const char* weights_path,
                                  const char* device, const char* model_overrides, sw_model** out) {
  return guard(__func__, [&] {
    sw_model** target = &deref(out, "out");
    const std::string config = string_arg(config_json_path, "config_json_path");
    const std::string weights = string_arg(weights_path, "weights_path");
    sw::ModelConfig overrides;
    sw::parse_text(string_arg(model_overrides, "model_overrides"), overrides, "model_overrides");
    string_arg(device, "device");
    *target = new_model_handle(make_model_state(sw::import_hf(config, weights, overrides), device));
  });
}

namespace {

void export_hf(const sw_model* model, const char* dir, int allow_routing_change) {
  ModelState& s = model_state(model);
  const std::string out = string_arg(dir, "dir");
  SW_CHECK_ARG(allow_routing_change == 0 || allow_routing_change == 1,
               "allow_routing_change must be 0 or 1, got ", allow_routing_change);
  std::shared_lock lock(s.mutex);
  sw::export_hf(s.model, out, allow_routing_change == 1);
}

}  // namespace

sw_status sw_model_export_hf_with(const sw_model* model, const char* dir,
                                  int allow_routing_change) {
  return guard(__func__, [&] { export_hf(model, dir, allow_routing_change); });
}

sw_status sw_model_export_hf(const sw_model* model, const char* dir) {
  return guard(__func__, [&] { export_hf(model, dir, 0); });
}

}  // extern "C"
