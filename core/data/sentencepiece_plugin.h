// The C interface of libswitch_spm.so, the plugin that holds every SentencePiece call.
// Debian 12's libsentencepiece0 carries its own protobuf-lite 3.14 and exports it; in one
// process with the system's libprotobuf (3.21, which libswitch links) the two collide and
// crash at load. The plugin is therefore opened with RTLD_LOCAL | RTLD_DEEPBIND, so
// SentencePiece binds to its own copy, and only plain C types cross this interface.
#pragma once

#include <stddef.h>
#include <stdint.h>

extern "C" {

// Every function returns 0 on success; on failure a nonzero value and, in *error, a
// message the caller frees with release(). Buffers returned in out params are freed
// with release() too.
struct SwSentencePieceApi {
  uint32_t version;  // kSwSentencePieceApiVersion
  // Trains a model on documents (each one piece of text; lines are SentencePiece's
  // sentences) with trainer flags given as key/value pairs; the serialized ModelProto.
  int (*train)(const char* const* documents, const size_t* document_lengths, size_t count,
               const char* const* keys, const char* const* values, size_t flag_count, char** model,
               size_t* model_length, char** error);
  // A processor over a serialized model; destroy() frees it.
  int (*load)(const char* model, size_t model_length, void** processor, char** error);
  void (*destroy)(void* processor);
  int (*piece_count)(void* processor);
  int (*encode)(void* processor, const char* text, size_t text_length, int32_t** ids, size_t* count,
                char** error);
  int (*decode)(void* processor, const int32_t* ids, size_t count, char** text, size_t* text_length,
                char** error);
  // The piece of one id ("" when out of range).
  int (*id_to_piece)(void* processor, int32_t id, char** piece, size_t* length);
  void (*release)(void* buffer);
};

#define SW_SENTENCEPIECE_API_VERSION 1u

// The plugin's one exported symbol.
const SwSentencePieceApi* sw_sentencepiece_api(void);
}
