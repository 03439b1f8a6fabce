/* train_tiny.c: libswitch's C ABI end to end. The `tiny` preset is trained for 50 steps
 * on the demo's data (T5 span corruption over the fortunes corpus, its own SentencePiece
 * tokenizer), saved, loaded back into a new model, and both models run the same forward
 * pass, which must give the same logits.
 *
 *   train_tiny [TRAIN_CONFIG [OUT_DIR]]
 * TRAIN_CONFIG defaults to examples/train/demo-switch.textproto; OUT_DIR to a new
 * temporary directory. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */

#include <libswitch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                              \
  do {                                                                                           \
    sw_status status_ = (call);                                                                  \
    if (status_ != SW_OK) {                                                                      \
      fprintf(stderr, "%s failed: %s: %s\n", #call, sw_status_string(status_), sw_last_error()); \
      exit(1);                                                                                   \
    }                                                                                            \
  } while (0)

static char* read_file(const char* path) {
  FILE* f = fopen(path, "rb");
  char* text;
  long size;
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(1);
  }
  fseek(f, 0, SEEK_END);
  size = ftell(f);
  fseek(f, 0, SEEK_SET);
  text = (char*)calloc((size_t)size + 1, 1);
  if (!text || fread(text, 1, (size_t)size, f) != (size_t)size) {
    fprintf(stderr, "cannot read %s\n", path);
    exit(1);
  }
  fclose(f);
  return text;
}

/* Logits of a fixed batch: two short sequences. */
static float* forward_logits(sw_model* model, size_t* count) {
  static const int32_t input_ids[2 * 6] = {72, 101, 108, 108, 111, 1, 87, 111, 114, 108, 100, 1};
  static const int32_t decoder_input_ids[2 * 3] = {0, 33, 34, 0, 35, 36};
  static const int32_t labels[2 * 3] = {33, 34, 1, 35, 36, 1};
  sw_batch batch;
  sw_result* result = NULL;
  int64_t dims[3];
  double loss, ce, aux, z;
  float* logits;
  SW_INIT_STRUCT(&batch);
  batch.batch = 2;
  batch.input_len = 6;
  batch.target_len = 3;
  batch.input_ids = input_ids;
  batch.decoder_input_ids = decoder_input_ids;
  batch.labels = labels;
  CHECK(sw_model_forward(model, &batch, 0, 0, &result));
  CHECK(sw_result_logits_shape(result, dims));
  *count = (size_t)(dims[0] * dims[1] * dims[2]);
  logits = (float*)malloc(*count * sizeof(float));
  if (!logits) exit(1);
  CHECK(sw_result_logits(result, logits, *count));
  CHECK(sw_result_losses(result, &loss, &ce, &aux, &z));
  printf("forward: logits [%lld, %lld, %lld], loss %.4f (ce %.4f, aux %.5f, z %.5f)\n",
         (long long)dims[0], (long long)dims[1], (long long)dims[2], loss, ce, aux, z);
  sw_result_destroy(result);
  return logits;
}

int main(int argc, char** argv) {
  const char* config_path = argc > 1 ? argv[1] : "examples/train/demo-switch.textproto";
  char out_dir[4096], checkpoint[4096];
  char* text;
  sw_config *model_config = NULL, *train_config = NULL;
  sw_model *model = NULL, *loaded = NULL;
  sw_trainer* trainer = NULL;
  sw_metrics metrics, eval;
  float *before, *after;
  size_t count, count2, i;
  int step;

  if (argc > 2) {
    snprintf(out_dir, sizeof out_dir, "%s", argv[2]);
  } else {
    char template_dir[] = "/tmp/train_tiny_XXXXXX";
    if (!mkdtemp(template_dir)) return 1;
    snprintf(out_dir, sizeof out_dir, "%s", template_dir);
  }
  printf("libswitch %s (ABI %d), CUDA %s\n", sw_version(), sw_abi_version(),
         sw_cuda_built() ? "built in" : "not built in");

  /* The demo's training settings, shortened; the model is the tiny preset with room for
   * the demo tokenizer's 2000 pieces and 100 sentinels. */
  text = read_file(config_path);
  CHECK(sw_config_from_text(SW_CONFIG_TRAIN, text, &train_config));
  free(text);
  CHECK(sw_config_set_int(train_config, "steps", 50));
  CHECK(sw_config_set_int(train_config, "batch_size", 8));
  CHECK(sw_config_set_int(train_config, "warmup_steps", 10));
  CHECK(sw_config_set_int(train_config, "eval_batches", 2));
  CHECK(sw_config_preset("tiny", &model_config));
  CHECK(sw_config_set_int(model_config, "vocab_size", 2176));
  CHECK(sw_config_set_string(model_config, "routing_group", "GROUP_BATCH"));

  CHECK(sw_model_create(model_config, "cpu", 0, &model));
  CHECK(sw_trainer_create(model, train_config, &trainer));
  SW_INIT_STRUCT(&metrics);
  for (step = 1; step <= 50; ++step) {
    CHECK(sw_trainer_step(trainer, NULL, &metrics));
    if (step == 1 || step % 10 == 0)
      printf("step %3lld  loss %.4f  ce %.4f  aux %.5f  lr %.4f  %.0f tokens/s\n",
             (long long)metrics.step, metrics.loss, metrics.ce, metrics.aux, metrics.learning_rate,
             metrics.tokens_per_second);
  }
  SW_INIT_STRUCT(&eval);
  CHECK(sw_trainer_evaluate(trainer, NULL, &eval));
  printf("held-out loss %.4f (ce %.4f)\n", eval.loss, eval.ce);

  CHECK(sw_trainer_save(trainer, out_dir));
  CHECK(sw_checkpoint_latest(out_dir, checkpoint, sizeof checkpoint, NULL));
  printf("saved %s\n", checkpoint);
  CHECK(sw_model_load(checkpoint, "cpu", &loaded));

  before = forward_logits(model, &count);
  after = forward_logits(loaded, &count2);
  for (i = 0; i < count && count == count2; ++i)
    if (before[i] != after[i] || !isfinite(before[i])) break;
  printf("reloaded model: %s\n", i == count ? "same logits" : "DIFFERENT logits");

  free(before);
  free(after);
  sw_model_destroy(loaded);
  sw_trainer_destroy(trainer);
  sw_model_destroy(model);
  sw_config_destroy(model_config);
  sw_config_destroy(train_config);
  return i == count && count == count2 ? 0 : 1;
}
