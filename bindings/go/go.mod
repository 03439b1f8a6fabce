module libswitch

go 1.19
