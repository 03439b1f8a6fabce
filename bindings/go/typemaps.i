/* Go: arrays cross as slices ([]float32, []int32, []int64), passed to C for the duration
 * of the call (cgo's rules allow it: the slices hold no Go pointers); nil or empty is an
 * absent array. */
%define SWB_GO_SLICE(CTYPE, NAME, GOTYPE)
%typemap(gotype) (CTYPE* NAME, size_t LEN) "[]GOTYPE"
%typemap(in) (CTYPE* NAME, size_t LEN) {
  $1 = ($1_ltype)$input.array;
  $2 = (size_t)$input.len;
}
%enddef

SWB_GO_SLICE(float, OUT_F32, float32)
SWB_GO_SLICE(const float, IN_F32, float32)
SWB_GO_SLICE(const int32_t, IN_I32, int32)
SWB_GO_SLICE(int32_t, OUT_I32, int32)
SWB_GO_SLICE(int64_t, OUT_I64, int64)

/* cgo finds libswitch through pkg-config (PKG_CONFIG_PATH=<prefix>/lib/pkgconfig). */
%insert(cgo_comment_typedefs) %{
#cgo pkg-config: libswitch
%}
