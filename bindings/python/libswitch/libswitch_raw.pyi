# The SWIG module (generated from bindings/libswitch.i) is internal to the package: its
# names are the C ABI's, untyped here.
from typing import Any

def __getattr__(name: str) -> Any: ...
