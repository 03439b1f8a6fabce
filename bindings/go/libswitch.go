// Package libswitch runs and trains Switch Transformers (sparse mixture-of-experts, top-1
// routing) from Go: a thin layer over the library's C ABI (SWIG package libswitch/raw).
//
// Every failing call returns an *Error carrying the C ABI's status and a message naming
// the bad argument. Objects own native memory: Close them (defer m.Close()); a finalizer
// releases forgotten ones as a backstop only.
package libswitch

import (
	"fmt"
	"runtime"

	raw "libswitch/raw"
)

// Status is the C ABI's sw_status.
type Status int

const (
	OK              Status = 0
	InvalidArgument Status = 1
	OutOfRange      Status = 2
	NotFound        Status = 3
	IO              Status = 4
	Corrupt         Status = 5
	Unsupported     Status = 6
	Device          Status = 7
	OutOfMemory     Status = 8
	Distributed     Status = 9
	Numeric         Status = 10
	Internal        Status = 11
	Cancelled       Status = 12 // stopped by Cancel.Request before it finished
)

// Error is a failed libswitch call.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string { return e.Message }

func errorOf(status int) error {
	if status == 0 {
		return nil
	}
	message := raw.Sw_last_error()
	if message == "" {
		message = raw.Sw_status_string(raw.Enum_SS_sw_status(status))
	}
	return &Error{Status(status), message}
}

// call runs f and reads the status it left, on one OS thread: the C ABI's error state
// is per thread, and a goroutine may otherwise move between the two.
func call[T any](f func() T) (T, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	v := f()
	return v, errorOf(raw.Swb_status())
}

// check runs a call that returns an sw_status itself.
func check(f func() int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return errorOf(f())
}

func invalid(format string, args ...any) error {
	return &Error{InvalidArgument, fmt.Sprintf(format, args...)}
}

// Version is the library's version ("0.1.0").
func Version() string { return raw.Sw_version() }

// ABIVersion is the C ABI's version (the N of libswitch.so.N).
func ABIVersion() int { return int(raw.Sw_abi_version()) }

// CUDADeviceCount is the number of CUDA devices (0 without CUDA or without a device).
func CUDADeviceCount() (int, error) { return call(raw.Swb_cuda_device_count) }

// CUDABuilt says whether the library was built with CUDA.
func CUDABuilt() bool { return raw.Sw_cuda_built() != 0 }

// Presets lists the model presets compiled into the library.
func Presets() ([]string, error) {
	n, err := call(raw.Swb_preset_count)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, n)
	for i := int64(0); i < n; i++ {
		name, err := call(func() string { return raw.Swb_preset_name(i) })
		if err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	return names, nil
}

// LatestCheckpoint is the checkpoint directory `latest` names under root.
func LatestCheckpoint(root string) (string, error) {
	return call(func() string { return raw.Swb_checkpoint_latest(root) })
}

// Plan is how a model trains on a cluster (`switch plan`): request is a PlanRequest in
// protobuf text ("" for the defaults); format "table" (what `switch plan` prints) or
// "proto" (the Plan message as protobuf text).
func Plan(request, format string) (string, error) {
	return call(func() string { return raw.Swb_plan(request, format) })
}

// ---------------------------------------------------------------------------- configs

// Config is a model config (ModelConfig) or a training config (TrainConfig), with typed
// fields by name or dotted path ("model.num_experts"); enums as their value names.
type Config struct{ ptr raw.Struct_SS_sw_config }

func newConfig(ptr raw.Struct_SS_sw_config, err error) (*Config, error) {
	if err != nil {
		return nil, err
	}
	c := &Config{ptr}
	runtime.SetFinalizer(c, (*Config).Close)
	return c, nil
}

// Preset is a model config compiled into the library ("tiny", "switch-base-8", ...).
func Preset(name string) (*Config, error) {
	return newConfig(call(func() raw.Struct_SS_sw_config { return raw.Swb_config_preset(name) }))
}

// ModelConfigFromText parses a ModelConfig in protobuf text format.
func ModelConfigFromText(text string) (*Config, error) {
	return newConfig(call(func() raw.Struct_SS_sw_config {
		return raw.Swb_config_from_text(int(raw.SW_CONFIG_MODEL), text)
	}))
}

// TrainConfigFromText parses a TrainConfig in protobuf text format.
func TrainConfigFromText(text string) (*Config, error) {
	return newConfig(call(func() raw.Struct_SS_sw_config {
		return raw.Swb_config_from_text(int(raw.SW_CONFIG_TRAIN), text)
	}))
}

// DefaultTrainConfig is a TrainConfig with every default (the tiny model, the built-in data).
func DefaultTrainConfig() (*Config, error) {
	return newConfig(call(raw.Swb_config_train_default))
}

// Clone is an independent copy.
func (c *Config) Clone() (*Config, error) {
	return newConfig(call(func() raw.Struct_SS_sw_config { return raw.Swb_config_clone(c.ptr) }))
}

// IsTrain says whether c is a TrainConfig (else a ModelConfig).
func (c *Config) IsTrain() (bool, error) {
	kind, err := call(func() int { return raw.Swb_config_kind(c.ptr) })
	return kind == int(raw.SW_CONFIG_TRAIN), err
}

// FieldType is what a config field holds (the C ABI's sw_field_type).
type FieldType int

const (
	FieldInt     FieldType = 0
	FieldFloat   FieldType = 1
	FieldString  FieldType = 2
	FieldBool    FieldType = 3
	FieldEnum    FieldType = 4 // read and set as its value name
	FieldMessage FieldType = 5
)

// FieldType says what a field holds; an unknown field is an error naming it.
func (c *Config) FieldType(field string) (FieldType, error) {
	t, err := call(func() int { return raw.Swb_config_field_type(c.ptr, field) })
	return FieldType(t), err
}

// Validate checks every rule the library checks before building from the config.
func (c *Config) Validate() error {
	return check(func() int { return int(raw.Sw_config_validate(c.ptr)) })
}

// Close releases the config; later calls on it fail.
func (c *Config) Close() {
	if c.ptr != nil {
		raw.Sw_config_destroy(c.ptr)
		c.ptr = nil
	}
}

func (c *Config) Int(field string) (int64, error) {
	return call(func() int64 { return raw.Swb_config_get_int(c.ptr, field) })
}

func (c *Config) Bool(field string) (bool, error) {
	b, err := call(func() int { return raw.Swb_config_get_bool(c.ptr, field) })
	return b != 0, err
}

func (c *Config) Float(field string) (float64, error) {
	return call(func() float64 { return raw.Swb_config_get_double(c.ptr, field) })
}

// String reads a string field, or an enum field's value name.
func (c *Config) String(field string) (string, error) {
	return call(func() string { return raw.Swb_config_get_string(c.ptr, field) })
}

// Set sets a field from an int, int64, float64, bool or string (enums by name); a bad
// name, type or value changes nothing.
func (c *Config) Set(field string, value any) error {
	switch v := value.(type) {
	case int:
		return check(func() int { return int(raw.Sw_config_set_int(c.ptr, field, int64(v))) })
	case int64:
		return check(func() int { return int(raw.Sw_config_set_int(c.ptr, field, v)) })
	case float64:
		return check(func() int { return int(raw.Sw_config_set_double(c.ptr, field, v)) })
	case bool:
		b := 0
		if v {
			b = 1
		}
		return check(func() int { return int(raw.Sw_config_set_bool(c.ptr, field, b)) })
	case string:
		return check(func() int { return int(raw.Sw_config_set_string(c.ptr, field, v)) })
	}
	return invalid("config field %q: cannot set a %T", field, value)
}

// Text is the config in protobuf text format, defaults included.
func (c *Config) Text() (string, error) {
	return call(func() string { return raw.Swb_config_to_text(c.ptr) })
}

// ---------------------------------------------------------------------------- batches

// Batch holds row-major [Batch, length] token ids; masks and labels may be nil.
type Batch struct {
	Batch, InputLen, TargetLen                    int64
	InputIDs, AttentionMask                       []int32
	DecoderInputIDs, DecoderAttentionMask, Labels []int32
}

func (b *Batch) check() error {
	in, out := b.Batch*b.InputLen, b.Batch*b.TargetLen
	for _, a := range []struct {
		name     string
		ids      []int32
		n        int64
		required bool
	}{
		{"InputIDs", b.InputIDs, in, true}, {"AttentionMask", b.AttentionMask, in, false},
		{"DecoderInputIDs", b.DecoderInputIDs, out, true},
		{"DecoderAttentionMask", b.DecoderAttentionMask, out, false}, {"Labels", b.Labels, out, false},
	} {
		if (a.required || len(a.ids) > 0) && int64(len(a.ids)) != a.n {
			return invalid("batch: %s holds %d ids, expected %d", a.name, len(a.ids), a.n)
		}
	}
	return nil
}

// ---------------------------------------------------------------------------- models

// Model is a Switch Transformer on a device ("cpu", "cuda:N"). Its methods may be called
// from several goroutines at once.
type Model struct{ ptr raw.Struct_SS_sw_model }

func newModel(ptr raw.Struct_SS_sw_model, err error) (*Model, error) {
	if err != nil {
		return nil, err
	}
	m := &Model{ptr}
	runtime.SetFinalizer(m, (*Model).Close)
	return m, nil
}

// NewModel builds a model of config with parameters initialised from seed.
func NewModel(config *Config, device string, seed uint64) (*Model, error) {
	return newModel(call(func() raw.Struct_SS_sw_model { return raw.Swb_model_create(config.ptr, device, seed) }))
}

// NewModelWithDType is NewModel in dtype: "f32", "f64" (cpu) or "bf16" (GPU, inference).
func NewModelWithDType(config *Config, device, dtype string, seed uint64) (*Model, error) {
	return newModel(call(func() raw.Struct_SS_sw_model {
		return raw.Swb_model_create_with_dtype(config.ptr, device, dtype, seed)
	}))
}

// CopyTo is a new model with these weights on device in dtype (a GPU-trained model's cpu
// copy, a bf16 copy for inference).
func (m *Model) CopyTo(device, dtype string) (*Model, error) {
	return newModel(call(func() raw.Struct_SS_sw_model { return raw.Swb_model_copy_to(m.ptr, device, dtype) }))
}

// LoadModel loads whatever path holds: a checkpoint directory (or the latest under a
// root), verified; a `switch train --out` run directory (its latest checkpoint); or an HF
// model directory (config.json with model.safetensors or a sharded index).
func LoadModel(path, device string) (*Model, error) {
	return newModel(call(func() raw.Struct_SS_sw_model { return raw.Swb_model_from_pretrained(path, device) }))
}

// ImportHF loads a HuggingFace SwitchTransformers checkpoint (config.json + safetensors).
func ImportHF(configJSON, weights, device string) (*Model, error) {
	return ImportHFWith(configJSON, weights, device, "")
}

// ImportHFWith is ImportHF with ModelConfig fields in protobuf text that replace the HF
// config's, e.g. "aux_loss_mode: AUX_PER_LAYER" to train the imported model.
func ImportHFWith(configJSON, weights, device, overrides string) (*Model, error) {
	return newModel(call(func() raw.Struct_SS_sw_model {
		return raw.Swb_model_import_hf_with(configJSON, weights, device, overrides)
	}))
}

// Close releases the model; later calls on it fail.
func (m *Model) Close() {
	if m.ptr != nil {
		raw.Sw_model_destroy(m.ptr)
		m.ptr = nil
	}
}

// ExportHF writes config.json and model.safetensors into dir. A model transformers would
// route otherwise (a capacity factor, batch routing groups) is refused naming the setting
// unless allowRoutingChange.
func (m *Model) ExportHF(dir string, allowRoutingChange bool) error {
	allow := 0
	if allowRoutingChange {
		allow = 1
	}
	return check(func() int { return int(raw.Sw_model_export_hf_with(m.ptr, dir, allow)) })
}

// Save writes the parameters as a checkpoint under root and returns its directory.
func (m *Model) Save(root string) (string, error) {
	if err := check(func() int { return int(raw.Sw_model_save(m.ptr, root)) }); err != nil {
		return "", err
	}
	return LatestCheckpoint(root)
}

// LoadParameters restores parameters from a checkpoint: strict refuses missing and
// unexpected names; otherwise what matches by name is copied. Nothing changes on error.
func (m *Model) LoadParameters(path string, strict bool) error {
	s := 0
	if strict {
		s = 1
	}
	return check(func() int { return int(raw.Sw_model_load_parameters(m.ptr, path, s)) })
}

// Config is a copy of the model's config.
func (m *Model) Config() (*Config, error) {
	return newConfig(call(func() raw.Struct_SS_sw_config { return raw.Swb_model_config(m.ptr) }))
}

// Device is where the model lives ("cpu", "cuda:0").
func (m *Model) Device() (string, error) {
	return call(func() string { return raw.Swb_model_device(m.ptr) })
}

// DType is the model's element type ("f32", "f64", "bf16").
func (m *Model) DType() (string, error) {
	return call(func() string { return raw.Swb_model_dtype(m.ptr) })
}

// Seed is the seed its parameters were initialised from.
func (m *Model) Seed() (uint64, error) {
	return call(func() uint64 { return raw.Swb_model_seed(m.ptr) })
}

// Threads is the thread count each call uses (0: OpenMP's default).
func (m *Model) Threads() (int, error) {
	return call(func() int { return raw.Swb_model_threads(m.ptr) })
}

// SetThreads sets the thread count of later calls (0: OpenMP's default).
func (m *Model) SetThreads(n int) error {
	return check(func() int { return int(raw.Sw_model_set_threads(m.ptr, n)) })
}

// ParameterNames lists the parameters in the model's order (HF names).
func (m *Model) ParameterNames() ([]string, error) {
	n, err := call(func() int64 { return raw.Swb_model_num_parameters(m.ptr) })
	if err != nil {
		return nil, err
	}
	names := make([]string, n)
	for i := range names {
		if names[i], err = call(func() string { return raw.Swb_parameter_name(m.ptr, int64(i)) }); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// NumParameters is the number of scalars in all parameters.
func (m *Model) NumParameters() (int64, error) {
	return call(func() int64 { return raw.Swb_model_parameter_count(m.ptr) })
}

func (m *Model) ParameterShape(name string) ([]int64, error) {
	ndim, err := call(func() int64 { return raw.Swb_parameter_dim(m.ptr, name, -1) })
	if err != nil {
		return nil, err
	}
	shape := make([]int64, ndim)
	for i := range shape {
		if shape[i], err = call(func() int64 { return raw.Swb_parameter_dim(m.ptr, name, i) }); err != nil {
			return nil, err
		}
	}
	return shape, nil
}

// Parameter is a copy of a parameter as float32, row-major.
func (m *Model) Parameter(name string) ([]float32, error) {
	shape, err := m.ParameterShape(name)
	if err != nil {
		return nil, err
	}
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	values := make([]float32, n)
	_, err = call(func() int { return raw.Swb_get_parameter(m.ptr, name, values) })
	return values, err
}

// SetParameter overwrites a parameter from float32 values of its size.
func (m *Model) SetParameter(name string, values []float32) error {
	_, err := call(func() int { return raw.Swb_set_parameter(m.ptr, name, values) })
	return err
}

// LayerRouting is one sparse layer's routing in a forward pass.
type LayerRouting struct {
	Stack                                          string // "encoder" or "decoder"
	Block, NumExperts, Capacity, GroupSize, Tokens int64
	DroppedFraction, RouterEntropy, AuxLoss, ZLoss float64
	TokensPerExpert                                []int64 // argmax counts before capacity
}

// ForwardOutput is one forward pass: logits [batch, target_len, vocab] row-major, the
// losses (Loss = CE + Aux + Z) and each sparse layer's routing, encoder first.
type ForwardOutput struct {
	Logits                   []float32
	LogitsShape              [3]int64
	Loss, CE, AuxLoss, ZLoss float64
	Routing                  []LayerRouting
}

// Forward runs one forward pass (train: dropout and jitter).
func (m *Model) Forward(b *Batch, train bool) (*ForwardOutput, error) {
	return m.forward(b, train, 0)
}

// ForwardGradients runs one forward pass and its backward (labels required): the
// gradient of the loss (CE + aux + z) is then read with Gradient until the next one.
func (m *Model) ForwardGradients(b *Batch, train bool) (*ForwardOutput, error) {
	return m.forward(b, train, 1)
}

// Gradient is a copy of a parameter's gradient from the last ForwardGradients, as float32.
func (m *Model) Gradient(name string) ([]float32, error) {
	shape, err := m.ParameterShape(name)
	if err != nil {
		return nil, err
	}
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	values := make([]float32, n)
	_, err = call(func() int { return raw.Swb_get_gradient(m.ptr, name, values) })
	return values, err
}

// Validate runs b through the CPU f32 reference and device ("cuda:0") in dtype ("f32" or
// "bf16") with this model's parameters: the per-block report, and whether every block is
// within tolerance (0: 1e-4 for f32, 2e-2 for bf16) with identical routing.
func (m *Model) Validate(b *Batch, device, dtype string, tolerance float64) (string, bool, error) {
	if err := b.check(); err != nil {
		return "", false, err
	}
	var within int
	report, err := call(func() string {
		r := raw.Swb_model_validate(m.ptr, b.Batch, b.InputLen, b.TargetLen, b.InputIDs,
			b.AttentionMask, b.DecoderInputIDs, b.DecoderAttentionMask, b.Labels, device, dtype,
			tolerance)
		within = raw.Swb_validate_within()
		return r
	})
	return report, within != 0, err
}

func (m *Model) forward(b *Batch, train bool, gradients int) (*ForwardOutput, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	t := 0
	if train {
		t = 1
	}
	result, err := call(func() raw.Struct_SS_sw_result {
		return raw.Swb_model_forward(m.ptr, b.Batch, b.InputLen, b.TargetLen, b.InputIDs,
			b.AttentionMask, b.DecoderInputIDs, b.DecoderAttentionMask, b.Labels, t, gradients)
	})
	if err != nil {
		return nil, err
	}
	defer raw.Sw_result_destroy(result)
	out := &ForwardOutput{}
	for i := range out.LogitsShape {
		if out.LogitsShape[i], err = call(func() int64 { return raw.Swb_result_logits_dim(result, i) }); err != nil {
			return nil, err
		}
	}
	out.Logits = make([]float32, out.LogitsShape[0]*out.LogitsShape[1]*out.LogitsShape[2])
	if _, err = call(func() int { return raw.Swb_result_logits(result, out.Logits) }); err != nil {
		return nil, err
	}
	losses := [4]*float64{&out.Loss, &out.CE, &out.AuxLoss, &out.ZLoss}
	for i, l := range losses {
		if *l, err = call(func() float64 { return raw.Swb_result_loss(result, i) }); err != nil {
			return nil, err
		}
	}
	layers, err := call(func() int64 { return raw.Swb_result_num_routing_layers(result) })
	if err != nil {
		return nil, err
	}
	for l := int64(0); l < layers; l++ {
		first, err := call(func() raw.Sw_routing_stats { return raw.Swb_result_routing(result, l, nil) })
		if err != nil {
			return nil, err
		}
		counts := make([]int64, first.GetNum_experts())
		raw.DeleteSw_routing_stats(first)
		s, err := call(func() raw.Sw_routing_stats { return raw.Swb_result_routing(result, l, counts) })
		if err != nil {
			return nil, err
		}
		stack := "decoder"
		if s.GetStack() == int(raw.SW_ENCODER) {
			stack = "encoder"
		}
		out.Routing = append(out.Routing, LayerRouting{stack, s.GetBlock(), s.GetNum_experts(),
			s.GetCapacity(), s.GetGroup_size(), s.GetTokens(), s.GetDropped_fraction(),
			s.GetRouter_entropy(), s.GetAux_loss(), s.GetZ_loss(), counts})
		raw.DeleteSw_routing_stats(s)
	}
	return out, nil
}

// GenerateOptions are sw_generate_options. Zero values mean: greedy decoding (NumBeams
// 0 or 1, Temperature 0), no top-k, top-p 1, length penalty 1, the whole vocabulary, no
// minimum length, capacity-limited routing.
type GenerateOptions struct {
	MaxNewTokens  int64   // new ids per row at most (> 0)
	NumBeams      int64   // > 1: beam search
	LengthPenalty float64 // beam search: scores divided by length^LengthPenalty
	Temperature   float64 // > 0: sampling from the seeded Philox stream
	TopK          int64   // sampling: the K most likely ids only (0: all)
	TopP          float64 // sampling: the smallest set holding this probability (0 taken as 1)
	Seed          uint64  // sampling: the same seed, the same samples
	MinNewTokens  int64   // eos is not taken before this many ids
	VocabLimit    int32   // ids >= VocabLimit are never produced (0: the model's vocabulary)
	Dropless      bool    // no token is dropped by capacity at inference
	EarlyStopping bool    // beam search: end once NumBeams hypotheses are finished
	AttentionMask []int32 // [batch, inputLen] (nil: no padding)
	Cancel        *Cancel // once requested, the call ends with Cancelled before its next step
}

// Cancel is a flag that stops a running GenerateWith (GenerateOptions.Cancel) before its
// next decoding step. Request may be called from any goroutine; the flag stays requested
// until Reset.
type Cancel struct{ ptr raw.Struct_SS_sw_cancel }

// NewCancel makes a flag, not requested.
func NewCancel() (*Cancel, error) {
	ptr, err := call(func() raw.Struct_SS_sw_cancel { return raw.Swb_cancel_create() })
	if err != nil {
		return nil, err
	}
	c := &Cancel{ptr}
	runtime.SetFinalizer(c, (*Cancel).Close)
	return c, nil
}

// Close releases the flag; no call may still be using it.
func (c *Cancel) Close() {
	if c.ptr != nil {
		raw.Sw_cancel_destroy(c.ptr)
		c.ptr = nil
	}
}

func (c *Cancel) handle() (raw.Struct_SS_sw_cancel, error) {
	if c.ptr == nil {
		return nil, invalid("this Cancel is closed")
	}
	return c.ptr, nil
}

// Request asks the calls using the flag to stop.
func (c *Cancel) Request() error {
	ptr, err := c.handle()
	if err != nil {
		return err
	}
	return check(func() int { return int(raw.Sw_cancel_request(ptr)) })
}

// Reset clears a request.
func (c *Cancel) Reset() error {
	ptr, err := c.handle()
	if err != nil {
		return err
	}
	return check(func() int { return int(raw.Sw_cancel_reset(ptr)) })
}

// Requested says whether a request is pending.
func (c *Cancel) Requested() (bool, error) {
	ptr, err := c.handle()
	if err != nil {
		return false, err
	}
	r, err := call(func() int { return raw.Swb_cancel_is_requested(ptr) })
	return r != 0, err
}

// Generate decodes greedily: up to maxNewTokens new ids per input row of
// inputIDs ([batch, inputLen] row-major); eos ends a row and is not included.
func (m *Model) Generate(inputIDs []int32, batch, inputLen, maxNewTokens int64) ([][]int32, error) {
	return m.GenerateWith(inputIDs, batch, inputLen, GenerateOptions{MaxNewTokens: maxNewTokens})
}

// GenerateWith decodes with the KV cache under o: greedy, beam search or sampling.
func (m *Model) GenerateWith(inputIDs []int32, batch, inputLen int64, o GenerateOptions) ([][]int32, error) {
	if batch < 1 || inputLen < 1 || int64(len(inputIDs)) != batch*inputLen {
		return nil, invalid("generate: %d ids for %d x %d", len(inputIDs), batch, inputLen)
	}
	if o.MaxNewTokens < 1 {
		return nil, invalid("generate: MaxNewTokens must be >= 1, got %d", o.MaxNewTokens)
	}
	if o.AttentionMask != nil && int64(len(o.AttentionMask)) != batch*inputLen {
		return nil, invalid("generate: AttentionMask holds %d values for %d x %d", len(o.AttentionMask), batch, inputLen)
	}
	beams, topP, penalty, dropless := o.NumBeams, o.TopP, o.LengthPenalty, 0
	if beams == 0 {
		beams = 1
	}
	if topP == 0 {
		topP = 1
	}
	if penalty == 0 {
		penalty = 1
	}
	if o.Dropless {
		dropless = 1
	}
	earlyStopping := 0
	if o.EarlyStopping {
		earlyStopping = 1
	}
	var cancel raw.Struct_SS_sw_cancel = raw.SwigcptrStruct_SS_sw_cancel(0) // NULL: none
	if o.Cancel != nil {
		var err error
		if cancel, err = o.Cancel.handle(); err != nil {
			return nil, err
		}
	}
	out := make([]int32, batch*o.MaxNewTokens)
	lengths := make([]int64, batch)
	if _, err := call(func() int {
		return raw.Swb_model_generate(m.ptr, batch, inputLen, inputIDs, o.AttentionMask, o.MaxNewTokens,
			int(o.VocabLimit), out, lengths, beams, o.Temperature, o.TopK, topP, o.Seed, o.MinNewTokens,
			penalty, dropless, earlyStopping, cancel)
	}); err != nil {
		return nil, err
	}
	rows := make([][]int32, batch)
	for i := range rows {
		rows[i] = out[int64(i)*o.MaxNewTokens : int64(i)*o.MaxNewTokens+lengths[i]]
	}
	return rows, nil
}

// ---------------------------------------------------------------------------- training

// Metrics are one training step's (or an evaluation's) numbers.
type Metrics struct {
	Step                                     int64
	Loss, CE, Aux, Z, GradNorm, LearningRate float64
	DroppedFraction                          float64
	Tokens                                   int64
	Seconds, TokensPerSecond                 float64
}

// Trainer runs optimizer steps on batches or on the built-in span-corruption data.
type Trainer struct{ ptr raw.Struct_SS_sw_trainer }

// NewTrainer makes a trainer for model with a training config.
func NewTrainer(model *Model, config *Config) (*Trainer, error) {
	return newTrainer(call(func() raw.Struct_SS_sw_trainer { return raw.Swb_trainer_create(model.ptr, config.ptr) }))
}

func newTrainer(ptr raw.Struct_SS_sw_trainer, err error) (*Trainer, error) {
	if err != nil {
		return nil, err
	}
	t := &Trainer{ptr}
	runtime.SetFinalizer(t, (*Trainer).Close)
	return t, nil
}

// Close releases the trainer (the model stays usable through its own handle).
func (t *Trainer) Close() {
	if t.ptr != nil {
		raw.Sw_trainer_destroy(t.ptr)
		t.ptr = nil
	}
}

func (t *Trainer) run(evaluate int, b *Batch) (Metrics, error) {
	var empty Batch
	if b == nil {
		b = &empty
	} else if err := b.check(); err != nil {
		return Metrics{}, err
	}
	m, err := call(func() raw.Sw_metrics {
		return raw.Swb_trainer_run(t.ptr, evaluate, b.Batch, b.InputLen, b.TargetLen, b.InputIDs,
			b.AttentionMask, b.DecoderInputIDs, b.DecoderAttentionMask, b.Labels)
	})
	defer raw.DeleteSw_metrics(m)
	if err != nil {
		return Metrics{}, err
	}
	return Metrics{m.GetStep(), m.GetLoss(), m.GetCe(), m.GetAux(), m.GetZ(), m.GetGrad_norm(),
		m.GetLearning_rate(), m.GetDropped_fraction(), m.GetTokens(), m.GetSeconds(),
		m.GetTokens_per_second()}, nil
}

// RestoreTrainer continues a checkpoint written by Trainer.Save (or `switch train`): its
// model, optimizer state, step and data position. device: "cpu".
func RestoreTrainer(path, device string) (*Trainer, error) {
	return newTrainer(call(func() raw.Struct_SS_sw_trainer { return raw.Swb_trainer_restore(path, device) }))
}

// Model is another handle to the model being trained (close it too).
func (t *Trainer) Model() (*Model, error) {
	return newModel(call(func() raw.Struct_SS_sw_model { return raw.Swb_trainer_model(t.ptr) }))
}

// SetDataParallel makes this trainer one data-parallel replica over comm's ranks (before
// its first step, on every rank): each rank steps on its own batches, the gradients are
// summed in rank order, and the run equals one process with as many micro-batches.
func (t *Trainer) SetDataParallel(comm *Communicator) error {
	return check(func() int { return int(raw.Sw_trainer_set_data_parallel(t.ptr, comm.ptr)) })
}

// SetParallel lays this trainer out over comm's ranks (collective, before its first step):
// "dp=N", "dp=N,ep=M" (experts split over groups of M ranks), "dp=N,mp=M" (heads and
// d_ff split) or both, "dp=N,ep=M,mp=K". Under ep or mp each rank trains its share of a copy of the model (Model is
// then refused); steps take this replica's shard; Save writes the whole model.
func (t *Trainer) SetParallel(comm *Communicator, layout string) error {
	return check(func() int { return int(raw.Sw_trainer_set_parallel(t.ptr, comm.ptr, layout)) })
}

// Step takes one optimizer step on b (labels required), or on the next built-in batch
// when b is nil.
func (t *Trainer) Step(b *Batch) (Metrics, error) { return t.run(0, b) }

// Evaluate is the loss on b, or on the built-in held-out batches when b is nil.
func (t *Trainer) Evaluate(b *Batch) (Metrics, error) { return t.run(1, b) }

// Save writes a checkpoint under root and returns its directory.
func (t *Trainer) Save(root string) (string, error) {
	if err := check(func() int { return int(raw.Sw_trainer_save(t.ptr, root)) }); err != nil {
		return "", err
	}
	return LatestCheckpoint(root)
}

// LogTo writes, from now on, each step and evaluation to a TensorBoard event file in dir
// (losses, learning rate, gradient norm, tokens/s, dropped fraction, each layer's router
// entropy and expert-load histogram); "" stops.
func (t *Trainer) LogTo(dir string) error {
	return check(func() int { return int(raw.Sw_trainer_log_to(t.ptr, dir)) })
}

// ---------------------------------------------------------------------------- distributed

// Communicator is the ranks of a launch (mpirun -np N ./prog): MPI's world when started
// by an MPI launcher, else a single rank.
type Communicator struct{ ptr raw.Struct_SS_sw_communicator }

// CommunicatorFromEnv is the launch's world.
func CommunicatorFromEnv() (*Communicator, error) {
	return newCommunicator(call(raw.Swb_communicator_from_env))
}

// Close releases the communicator.
func (c *Communicator) Close() {
	if c.ptr != nil {
		raw.Sw_communicator_destroy(c.ptr)
		c.ptr = nil
	}
}

// CommunicatorFromMPI is the ranks of an MPI communicator of the caller's, from the
// address of its MPI_Comm (duplicated; the caller initialises MPI, with the MPI libswitch
// was built with).
func CommunicatorFromMPI(mpiCommAddress uintptr) (*Communicator, error) {
	return newCommunicator(call(func() raw.Struct_SS_sw_communicator {
		return raw.Swb_communicator_from_mpi(uint64(mpiCommAddress))
	}))
}

// Split is the ranks passing the same color (>= 0), ordered by key (collective).
func (c *Communicator) Split(color, key int) (*Communicator, error) {
	return newCommunicator(call(func() raw.Struct_SS_sw_communicator {
		return raw.Swb_communicator_split(c.ptr, color, key)
	}))
}

func newCommunicator(ptr raw.Struct_SS_sw_communicator, err error) (*Communicator, error) {
	if err != nil {
		return nil, err
	}
	c := &Communicator{ptr}
	runtime.SetFinalizer(c, (*Communicator).Close)
	return c, nil
}

func (c *Communicator) Rank() (int, error) {
	return call(func() int { return raw.Swb_communicator_rank(c.ptr) })
}

func (c *Communicator) Size() (int, error) {
	return call(func() int { return raw.Swb_communicator_size(c.ptr) })
}

// Abort ends every rank's process (after an error on this one); it does not return.
func (c *Communicator) Abort(code int) { raw.Sw_communicator_abort(c.ptr, code) }
