package libswitch

import "testing"

// BenchmarkForwardTinySmall: the per-call cost of Model.Forward through the Go binding on
// the input tests/bench/capi_bench.cc's CApiForward/tiny_small times through the C ABI.
// Run by scripts/bench-bindings.
func BenchmarkForwardTinySmall(b *testing.B) {
	c, err := Preset("tiny")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	m, err := NewModel(c, "cpu", 0)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	batch := &Batch{Batch: 1, InputLen: 16, TargetLen: 4}
	for i := int64(0); i < 16; i++ {
		batch.InputIDs = append(batch.InputIDs, int32(i*7919%384))
	}
	for i := int64(0); i < 4; i++ {
		batch.DecoderInputIDs = append(batch.DecoderInputIDs, int32(i*104729%384))
	}
	batch.Labels = batch.DecoderInputIDs
	for i := 0; i < 50; i++ {
		m.Forward(batch, false)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := m.Forward(batch, false); err != nil {
			b.Fatal(err)
		}
	}
}
