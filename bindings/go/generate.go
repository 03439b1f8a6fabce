package libswitch

// raw/ is SWIG's cgo package for bindings/libswitch.i, checked in so that this directory
// is a module that `go get` or a `replace` directive can use as it is (cgo finds the
// library through pkg-config). After changing libswitch.i or libswitch.h, regenerate it
// here with `go generate` (SWIG 4.1, as scripts/setup installs); the test
// go.generated_current fails while it differs from what the build generates.
//go:generate swig -go -cgo -intgosize 64 -package libswitch_raw -I.. -I../../capi/include -outdir raw -o raw/libswitch_raw_wrap.c ../libswitch.i
