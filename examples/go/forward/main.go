// A Go program over libswitch: loads a checkpoint (or builds the `tiny` preset when none
// is given), runs a forward pass and greedy generation, and prints the losses and where
// each sparse layer sent its tokens.
//
//	go run ./examples/forward [CHECKPOINT_DIR]
package main

import (
	"fmt"
	"os"

	"libswitch"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run() error {
	var model *libswitch.Model
	var err error
	if len(os.Args) > 1 {
		model, err = libswitch.LoadModel(os.Args[1], "cpu")
	} else {
		config, cerr := libswitch.Preset("tiny")
		if cerr != nil {
			return cerr
		}
		defer config.Close()
		model, err = libswitch.NewModel(config, "cpu", 42)
	}
	if err != nil {
		return err
	}
	defer model.Close()
	n, _ := model.NumParameters()
	fmt.Printf("libswitch %s: %d parameters\n", libswitch.Version(), n)

	batch := &libswitch.Batch{Batch: 2, InputLen: 6, TargetLen: 3,
		InputIDs:        []int32{72, 101, 108, 108, 111, 1, 87, 111, 114, 108, 100, 1},
		DecoderInputIDs: []int32{0, 33, 34, 0, 35, 36},
		Labels:          []int32{33, 34, 1, 35, 36, 1}}
	out, err := model.Forward(batch, false)
	if err != nil {
		return err
	}
	fmt.Printf("logits %v, loss %.4f (ce %.4f, aux %.5f, z %.5f)\n", out.LogitsShape, out.Loss,
		out.CE, out.AuxLoss, out.ZLoss)
	for _, r := range out.Routing {
		fmt.Printf("%s block %d: tokens per expert %v\n", r.Stack, r.Block, r.TokensPerExpert)
	}
	generated, err := model.Generate(batch.InputIDs, batch.Batch, batch.InputLen, 8)
	if err != nil {
		return err
	}
	fmt.Printf("greedy: %v\n", generated)
	return nil
}
