/* forward_dump: the reference every binding's test compares with, bit for bit. Builds
 * `tiny` (dropout off) from a seed, runs one eval forward on the fixed batch below through
 * the C ABI and writes the logits (float32, native order) to a file, then prints the
 * losses. The bindings run the same batch and must get the same bytes.
 *
 *   forward_dump SEED OUT_FILE */
#include <libswitch.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                                       \
  do {                                                                                    \
    sw_status status_ = (call);                                                           \
    if (status_ != SW_OK) {                                                               \
      fprintf(stderr, "%s: %s: %s\n", #call, sw_status_string(status_), sw_last_error()); \
      return 1;                                                                           \
    }                                                                                     \
  } while (0)

int main(int argc, char** argv) {
  /* input_ids[i] = 3 + (7 i) mod 300 over [2, 8]; decoder [2, 4]; labels shifted. */
  int32_t input_ids[16], decoder_input_ids[8] = {0, 10, 11, 12, 0, 20, 21, 22};
  int32_t labels[8] = {10, 11, 12, 1, 20, 21, 22, 1};
  int32_t attention_mask[16];
  sw_config* config = NULL;
  sw_model* model = NULL;
  sw_result* result = NULL;
  sw_batch batch;
  int64_t dims[3];
  float* logits;
  size_t n;
  double loss, ce, aux, z;
  FILE* out;
  int i;
  if (argc != 3) {
    fprintf(stderr, "usage: forward_dump SEED OUT_FILE\n");
    return 2;
  }
  for (i = 0; i < 16; ++i) {
    input_ids[i] = 3 + (7 * i) % 300;
    attention_mask[i] = i % 8 < 7 ? 1 : 0; /* the last token of each row is padding */
  }
  CHECK(sw_config_preset("tiny", &config));
  CHECK(sw_config_set_double(config, "dropout_rate", 0.0));
  CHECK(sw_model_create(config, "cpu", (uint64_t)strtoull(argv[1], NULL, 10), &model));
  SW_INIT_STRUCT(&batch);
  batch.batch = 2;
  batch.input_len = 8;
  batch.target_len = 4;
  batch.input_ids = input_ids;
  batch.attention_mask = attention_mask;
  batch.decoder_input_ids = decoder_input_ids;
  batch.labels = labels;
  CHECK(sw_model_forward(model, &batch, 0, 0, &result));
  CHECK(sw_result_logits_shape(result, dims));
  n = (size_t)(dims[0] * dims[1] * dims[2]);
  logits = (float*)malloc(n * sizeof(float));
  if (!logits) return 1;
  CHECK(sw_result_logits(result, logits, n));
  CHECK(sw_result_losses(result, &loss, &ce, &aux, &z));
  out = fopen(argv[2], "wb");
  if (!out || fwrite(logits, sizeof(float), n, out) != n || fclose(out) != 0) {
    fprintf(stderr, "cannot write %s\n", argv[2]);
    return 1;
  }
  printf("%.17g %.17g %.17g %.17g\n", loss, ce, aux, z);
  free(logits);
  sw_result_destroy(result);
  sw_model_destroy(model);
  sw_config_destroy(config);
  return 0;
}
