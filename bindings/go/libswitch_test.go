package libswitch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The batch tests/capi/forward_dump.c runs through the C ABI.
func testBatch() *Batch {
	b := &Batch{Batch: 2, InputLen: 8, TargetLen: 4,
		DecoderInputIDs: []int32{0, 10, 11, 12, 0, 20, 21, 22},
		Labels:          []int32{10, 11, 12, 1, 20, 21, 22, 1}}
	for i := 0; i < 16; i++ {
		b.InputIDs = append(b.InputIDs, int32(3+(7*i)%300))
		mask := int32(1)
		if i%8 == 7 {
			mask = 0
		}
		b.AttentionMask = append(b.AttentionMask, mask)
	}
	return b
}

func tiny(t *testing.T, seed uint64) *Model {
	t.Helper()
	c, err := Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set("dropout_rate", 0.0); err != nil {
		t.Fatal(err)
	}
	m, err := NewModel(c, "cpu", seed)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func wantError(t *testing.T, err error, status Status, fragment string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("expected a libswitch error (%s), got %v", fragment, err)
	}
	if e.Status != status || !strings.Contains(e.Message, fragment) {
		t.Fatalf("expected status %d mentioning %q, got %d: %s", status, fragment, e.Status, e.Message)
	}
}

func TestConfigRoundTrip(t *testing.T) {
	c, err := Preset("switch-base-8")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n, _ := c.Int("num_experts"); n != 8 {
		t.Fatalf("num_experts %d", n)
	}
	if err := c.Set("num_experts", 16); err != nil {
		t.Fatal(err)
	}
	if err := c.Set("capacity_mode", "CAPACITY_FIXED"); err != nil {
		t.Fatal(err)
	}
	text, _ := c.Text()
	back, err := ModelConfigFromText(text)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if again, _ := back.Text(); again != text {
		t.Fatal("text round trip differs")
	}
	wantError(t, c.Set("nope", 1), InvalidArgument, `no field "nope"`)
	wantError(t, c.Set("activation", "SWISH"), OutOfRange, `"SWISH" is not a value`)
	wantError(t, c.Set("num_experts", []int{1}), InvalidArgument, "cannot set")
	if after, _ := c.Text(); after != text {
		t.Fatal("a failed Set changed the config")
	}
	_, err = Preset("no-such-model")
	wantError(t, err, NotFound, "no-such-model")
	names, err := Presets()
	if err != nil || len(names) < 2 {
		t.Fatal(names, err)
	}
}

func TestPlan(t *testing.T) {
	table, err := Plan("gpus: 16 model_preset: 'switch-base-8'", "table")
	if err != nil || !strings.HasPrefix(table, "switch-base-8 (") ||
		!strings.Contains(table, "ep=16 does not divide the 8 experts") {
		t.Fatal(table, err)
	}
	proto, err := Plan("gpus: 2 layout: 'ep=2'", "proto")
	if err != nil || !strings.Contains(proto, "layouts {") || !strings.Contains(proto, "ep: 2") {
		t.Fatal(proto, err)
	}
	_, err = Plan("gpus: 0", "table")
	wantError(t, err, InvalidArgument, "gpus must be >= 1")
	_, err = Plan("gpu: 'v100'", "table")
	wantError(t, err, NotFound, "no built-in rates")
}

func TestForwardEqualsTheCABIBitForBit(t *testing.T) {
	dump := os.Getenv("SW_FORWARD_DUMP")
	if dump == "" {
		t.Skip("SW_FORWARD_DUMP not given")
	}
	file := filepath.Join(t.TempDir(), "logits")
	text, err := exec.Command(dump, "5", file).Output()
	if err != nil {
		t.Fatal(err)
	}
	m := tiny(t, 5)
	defer m.Close()
	out, err := m.Forward(testBatch(), false)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(file)
	expected := make([]float32, len(out.Logits))
	if err := binary.Read(bytes.NewReader(data), binary.LittleEndian, expected); err != nil {
		t.Fatal(err)
	}
	for i := range expected {
		if math.Float32bits(expected[i]) != math.Float32bits(out.Logits[i]) {
			t.Fatalf("logit %d: %v through Go, %v through C", i, out.Logits[i], expected[i])
		}
	}
	losses := strings.Fields(string(text))
	if want, _ := strconv.ParseFloat(losses[0], 64); want != out.Loss {
		t.Fatalf("loss %v, C says %v", out.Loss, want)
	}
}

func TestForwardRoutingAndBadInput(t *testing.T) {
	m := tiny(t, 0)
	defer m.Close()
	out, err := m.Forward(testBatch(), false)
	if err != nil {
		t.Fatal(err)
	}
	if out.LogitsShape != [3]int64{2, 4, 384} || len(out.Routing) != 4 {
		t.Fatal(out.LogitsShape, len(out.Routing))
	}
	for _, r := range out.Routing {
		sum := int64(0)
		for _, n := range r.TokensPerExpert {
			sum += n
		}
		if sum != r.Tokens {
			t.Fatal("routing counts do not cover the tokens")
		}
	}
	bad := testBatch()
	bad.InputIDs[3] = 384
	_, err = m.Forward(bad, false)
	wantError(t, err, OutOfRange, "input_ids: token id 384")
	short := testBatch()
	short.Labels = short.Labels[:3]
	_, err = m.Forward(short, false)
	wantError(t, err, InvalidArgument, "Labels holds 3 ids")
	_, err = m.Parameter("no.such.weight")
	wantError(t, err, NotFound, "no.such.weight")
	wantError(t, m.SetParameter("shared.weight", make([]float32, 3)), InvalidArgument, "length 3 given")
	if !CUDABuilt() {
		c, _ := Preset("tiny")
		defer c.Close()
		_, err = NewModel(c, "cuda:0", 0)
		wantError(t, err, Unsupported, "built without CUDA")
	}
}

// A tiny model and a trainer for it with the TrainConfig text, closed when the test ends.
func tinyTrainer(t *testing.T, text string) (*Model, *Trainer) {
	t.Helper()
	m := tiny(t, 0)
	t.Cleanup(func() { m.Close() })
	config, err := TrainConfigFromText(text)
	if err != nil {
		t.Fatal(err)
	}
	defer config.Close()
	trainer, err := NewTrainer(m, config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trainer.Close() })
	return m, trainer
}

func TestTrainerLogsToTensorBoard(t *testing.T) {
	_, trainer := tinyTrainer(t, "batch_size: 2")
	dir := t.TempDir()
	if err := trainer.LogTo(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := trainer.Step(testBatch()); err != nil {
		t.Fatal(err)
	}
	if err := trainer.LogTo(""); err != nil {
		t.Fatal(err)
	}
	// One event file: the version record, then the step's (TensorBoard's own reader
	// checks the values in the Python tests).
	files, err := filepath.Glob(filepath.Join(dir, "events.out.tfevents.*"))
	if err != nil || len(files) != 1 {
		t.Fatalf("event files %v, %v", files, err)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"brain.Event:2", "train/loss", "load/encoder.1"} {
		if !strings.Contains(string(data), want) {
			t.Fatalf("the event file lacks %q", want)
		}
	}
}

func TestTrainingAndCheckpoints(t *testing.T) {
	m, trainer := tinyTrainer(t, "optimizer: ADAMW learning_rate: 0.003 batch_size: 2")
	first, err := trainer.Step(testBatch())
	if err != nil {
		t.Fatal(err)
	}
	last := first
	for i := 0; i < 9; i++ {
		if last, err = trainer.Step(testBatch()); err != nil {
			t.Fatal(err)
		}
	}
	if last.Step != 10 || last.Loss > first.Loss-0.5 {
		t.Fatalf("10 steps: loss %v -> %v", first.Loss, last.Loss)
	}
	dir := t.TempDir()
	path, err := m.Save(dir)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadModel(path, "cpu")
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	a, _ := m.Forward(testBatch(), false)
	b, _ := loaded.Forward(testBatch(), false)
	for i := range a.Logits {
		if a.Logits[i] != b.Logits[i] {
			t.Fatal("a reloaded model gives other logits")
		}
	}
	_, err = LoadModel(filepath.Join(dir, "nothing-here"), "cpu")
	wantError(t, err, NotFound, "nothing-here")
	// HF export: tiny's capacity factor is refused by name, then written when allowed.
	hf := t.TempDir()
	wantError(t, m.ExportHF(hf, false), Unsupported, "capacity_mode CAPACITY_FACTOR")
	if err := m.ExportHF(hf, true); err != nil {
		t.Fatal(err)
	}
	imported, err := ImportHF(filepath.Join(hf, "config.json"), hf, "cpu")
	if err != nil {
		t.Fatal(err)
	}
	defer imported.Close()
	// LoadModel takes the HF directory as well, as the same model.
	viaLoad, err := LoadModel(hf, "cpu")
	if err != nil {
		t.Fatal(err)
	}
	defer viaLoad.Close()
	a, errA := imported.Forward(testBatch(), false)
	b, errB := viaLoad.Forward(testBatch(), false)
	if errA != nil || errB != nil || a.Loss != b.Loss {
		t.Fatalf("ImportHF loss %v (%v), LoadModel %v (%v)", a.Loss, errA, b.Loss, errB)
	}
}

func TestConcurrentForwards(t *testing.T) {
	m := tiny(t, 0)
	defer m.Close()
	want, _ := m.Forward(testBatch(), false)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			out, err := m.Forward(testBatch(), false)
			if err == nil && out.Loss != want.Loss {
				err = errors.New("a concurrent forward differs")
			}
			errs[g] = err
		}(g)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func residentMiB() float64 {
	data, _ := os.ReadFile("/proc/self/statm")
	pages, _ := strconv.ParseFloat(strings.Fields(string(data))[1], 64)
	return pages * float64(os.Getpagesize()) / (1 << 20)
}

func TestCreateDestroy1000TimesDoesNotGrow(t *testing.T) {
	c, _ := Preset("tiny")
	defer c.Close()
	c.Set("num_encoder_layers", 1)
	c.Set("num_decoder_layers", 1)
	for i := 0; i < 100; i++ {
		m, _ := NewModel(c, "cpu", 0)
		m.Close()
	}
	before := residentMiB()
	for i := 0; i < 1000; i++ {
		m, err := NewModel(c, "cpu", 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Forward(testBatch(), false); err != nil {
			t.Fatal(err)
		}
		m.Close()
	}
	if growth := residentMiB() - before; growth > 16 {
		t.Fatalf("resident memory grew %.1f MiB over 1000 models", growth)
	}
}

func TestDamagedCheckpointsAndEmptyBatchesAreRefused(t *testing.T) {
	m := tiny(t, 0)
	defer m.Close()
	path, err := m.Save(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// One flipped byte in the manifest or a shard: a corrupt-data error naming the file;
	// the files are as they were once the byte is back.
	for _, name := range []string{"manifest.pb", "shard-00000.bin"} {
		file := filepath.Join(path, name)
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0x20
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = LoadModel(path, "cpu")
		wantError(t, err, Corrupt, name)
		data[len(data)/2] ^= 0x20
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if loaded, err := LoadModel(path, "cpu"); err != nil {
		t.Fatal(err)
	} else {
		loaded.Close()
	}
	// An empty batch and negative ids.
	_, err = m.Forward(&Batch{Batch: 0, InputLen: 8, TargetLen: 4}, false)
	wantError(t, err, InvalidArgument, "batch must be >= 1")
	negative := testBatch()
	negative.DecoderInputIDs[1] = -5
	_, err = m.Forward(negative, false)
	wantError(t, err, OutOfRange, "decoder_input_ids")
}

func TestGenerateIsCancelledFromAnotherGoroutine(t *testing.T) {
	m := tiny(t, 0)
	defer m.Close()
	cancel, err := NewCancel()
	if err != nil {
		t.Fatal(err)
	}
	defer cancel.Close()
	go func() {
		time.Sleep(200 * time.Millisecond)
		if err := cancel.Request(); err != nil {
			t.Error(err)
		}
	}()
	// eos cannot end a row before 65536 tokens: only the cancel stops this call
	_, err = m.GenerateWith(testBatch().InputIDs, 2, 8,
		GenerateOptions{MaxNewTokens: 65536, MinNewTokens: 65536, Cancel: cancel})
	var e *Error
	if !errors.As(err, &e) || e.Status != Cancelled || !strings.Contains(e.Message, "generate: cancelled after") {
		t.Fatal("not cancelled:", err)
	}
	if requested, err := cancel.Requested(); err != nil || !requested {
		t.Fatal("the request did not stay:", requested, err)
	}
	if err := cancel.Reset(); err != nil {
		t.Fatal(err)
	}
	rows, err := m.GenerateWith(testBatch().InputIDs, 2, 8,
		GenerateOptions{MaxNewTokens: 3, MinNewTokens: 3, Cancel: cancel})
	if err != nil || len(rows[0]) != 3 {
		t.Fatal("after reset:", rows, err)
	}
}

func TestGenerateOptions(t *testing.T) {
	m := tiny(t, 0)
	defer m.Close()
	ids := testBatch().InputIDs
	greedy, err := m.Generate(ids, 2, 8, 5)
	if err != nil {
		t.Fatal(err)
	}
	// One beam is greedy decoding.
	beam1, err := m.GenerateWith(ids, 2, 8, GenerateOptions{MaxNewTokens: 5, NumBeams: 1, MinNewTokens: 0})
	if err != nil {
		t.Fatal(err)
	}
	for i := range greedy {
		if len(greedy[i]) != len(beam1[i]) {
			t.Fatal("one beam differs from greedy", greedy, beam1)
		}
		for j := range greedy[i] {
			if greedy[i][j] != beam1[i][j] {
				t.Fatal("one beam differs from greedy", greedy, beam1)
			}
		}
	}
	// Sampling: the same seed gives the same ids; a minimum length holds.
	sample := GenerateOptions{MaxNewTokens: 6, Temperature: 0.9, TopK: 50, TopP: 0.95, Seed: 7, MinNewTokens: 6}
	a, err := m.GenerateWith(ids, 2, 8, sample)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.GenerateWith(ids, 2, 8, sample)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if len(a[i]) != 6 || len(b[i]) != 6 {
			t.Fatal("min_new_tokens 6 not held", a, b)
		}
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				t.Fatal("the same seed sampled other ids", a, b)
			}
		}
	}
	if _, err := m.GenerateWith(ids, 2, 8, GenerateOptions{MaxNewTokens: 4, NumBeams: 3, LengthPenalty: 0.6, Dropless: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.GenerateWith(ids, 2, 8, GenerateOptions{MaxNewTokens: 4, NumBeams: 3, EarlyStopping: true}); err != nil {
		t.Fatal(err)
	}
	_, err = m.GenerateWith(ids, 2, 8, GenerateOptions{MaxNewTokens: 4, Temperature: 1, TopP: 2})
	wantError(t, err, InvalidArgument, "top_p")
	_, err = m.GenerateWith(ids, 2, 8, GenerateOptions{})
	wantError(t, err, InvalidArgument, "MaxNewTokens")
}

// must(f())(t) is f's value, failing the test on its error.
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// The calls the C ABI offers that the other tests do not reach: configs, model state,
// gradients, validation, a restored trainer, the communicator.
func TestRestOfTheSurface(t *testing.T) {
	if ABIVersion() != 1 {
		t.Fatal("ABI version", ABIVersion())
	}
	devices := must(CUDADeviceCount())(t)
	m := tiny(t, 3)
	defer m.Close()
	config := must(m.Config())(t)
	defer config.Close()
	clone := must(config.Clone())(t)
	defer clone.Close()
	if must(clone.Int("d_model"))(t) != must(config.Int("d_model"))(t) || must(clone.IsTrain())(t) {
		t.Fatal("clone differs")
	}
	if must(config.FieldType("activation"))(t) != FieldEnum || must(config.FieldType("d_model"))(t) != FieldInt {
		t.Fatal("field types")
	}
	if _, err := config.FieldType("nope"); err == nil {
		t.Fatal("unknown field accepted")
	}
	if must(config.Bool("tie_word_embeddings"))(t) != true || config.Validate() != nil {
		t.Fatal("bool field or validate")
	}
	defaults := must(DefaultTrainConfig())(t)
	defer defaults.Close()
	if !must(defaults.IsTrain())(t) {
		t.Fatal("DefaultTrainConfig is not a TrainConfig")
	}
	if must(m.Seed())(t) != 3 || must(m.Device())(t) != "cpu" || must(m.DType())(t) != "f32" {
		t.Fatal("seed, device or dtype")
	}
	wide := must(NewModelWithDType(config, "cpu", "f64", 3))(t)
	defer wide.Close()
	narrow := must(wide.CopyTo("cpu", "f32"))(t)
	defer narrow.Close()
	if must(wide.DType())(t) != "f64" || must(narrow.DType())(t) != "f32" {
		t.Fatal("NewModelWithDType or CopyTo")
	}
	if _, err := NewModelWithDType(config, "cpu", "fp16", 3); err == nil ||
		!strings.Contains(err.Error(), "dtype: expected") {
		t.Fatal("a bad dtype was accepted:", err)
	}
	if err := m.SetThreads(2); err != nil || must(m.Threads())(t) != 2 {
		t.Fatal("threads", err)
	}
	names := must(m.ParameterNames())(t)
	if len(names) == 0 || names[0] != "shared.weight" {
		t.Fatal("parameter names", names)
	}
	// Gradients: none before a forward that keeps them, then one per parameter.
	if _, err := m.Gradient(names[0]); err == nil {
		t.Fatal("a gradient before any backward")
	}
	must(m.ForwardGradients(testBatch(), false))(t)
	nonzero := 0
	for _, name := range names {
		for _, g := range must(m.Gradient(name))(t) {
			if math.IsNaN(float64(g)) || math.IsInf(float64(g), 0) {
				t.Fatal("non-finite gradient in", name)
			}
			if g != 0 {
				nonzero++
			}
		}
	}
	if nonzero == 0 {
		t.Fatal("every gradient is zero")
	}
	// Validation: the CPU is not a device to compare with; without a device, an error.
	if _, _, err := m.Validate(testBatch(), "cpu", "f32", 0); err == nil || !strings.Contains(err.Error(), "must not be the cpu") {
		t.Fatal("validate on the cpu:", err)
	}
	if report, within, err := m.Validate(testBatch(), "cuda:0", "f32", 0); devices == 0 && err == nil {
		t.Fatal("validated without a device")
	} else if devices > 0 && (err != nil || !within) {
		t.Fatal("validate:", err, report)
	}
	// A saved trainer continues in a restored one; data parallel over a world of one.
	trainConfig := must(TrainConfigFromText("batch_size: 2"))(t)
	defer trainConfig.Close()
	trainer := must(NewTrainer(m, trainConfig))(t)
	defer trainer.Close()
	world := must(CommunicatorFromEnv())(t)
	defer world.Close()
	if must(world.Rank())(t) != 0 || must(world.Size())(t) != 1 {
		t.Fatal("world of one")
	}
	alone := must(world.Split(0, 0))(t)
	defer alone.Close()
	if must(alone.Size())(t) != 1 {
		t.Fatal("a split of one rank")
	}
	if err := trainer.SetParallel(world, "ep=2"); err == nil {
		t.Fatal("ep=2 over one rank accepted")
	}
	if err := trainer.SetDataParallel(world); err != nil {
		t.Fatal(err)
	}
	must(trainer.Step(testBatch()))(t)
	dir := t.TempDir()
	must(trainer.Save(dir))(t)
	restored := must(RestoreTrainer(dir, "cpu"))(t)
	defer restored.Close()
	if metrics := must(restored.Step(testBatch()))(t); metrics.Step != 2 {
		t.Fatal("restored trainer step", metrics.Step)
	}
	trained := must(restored.Model())(t)
	defer trained.Close()
	if must(trained.NumParameters())(t) != must(m.NumParameters())(t) {
		t.Fatal("restored model")
	}
}
