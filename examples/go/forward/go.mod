module libswitch-example-forward

go 1.19

require libswitch v0.0.0

// The module in the repository (bindings/go); an installed copy works the same way.
replace libswitch => ../../../bindings/go
