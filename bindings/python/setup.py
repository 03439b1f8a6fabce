"""pip install ./bindings/python: the `libswitch` Python package, its SWIG module built
against an installed libswitch found through pkg-config (set PKG_CONFIG_PATH to
<prefix>/lib/pkgconfig for a prefix other than the system's). In the build tree, CMake
builds the same package into build/bindings/python (no pip needed)."""
import os
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

here = os.path.dirname(os.path.abspath(__file__))
bindings = os.path.dirname(here)


def pkg_config(flag):
    try:
        return subprocess.check_output(["pkg-config", flag, "libswitch"], text=True).split()
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit("libswitch not found by pkg-config: install it (cmake --install) and "
                         f"set PKG_CONFIG_PATH to <prefix>/lib/pkgconfig ({e})")


include_dirs = [f[2:] for f in pkg_config("--cflags") if f.startswith("-I")]
library_dirs = [f[2:] for f in pkg_config("--libs") if f.startswith("-L")]

class BuildPyAfterSwig(build_py):
    """SWIG writes libswitch_raw.py while building the extension: build that first."""

    def run(self):
        self.run_command("build_ext")
        super().run()


setup(
    name="libswitch",
    version=subprocess.check_output(["pkg-config", "--modversion", "libswitch"],
                                    text=True).strip(),
    description="Switch Transformers (sparse mixture-of-experts) from Python",
    packages=["libswitch"],
    install_requires=["numpy"],
    cmdclass={"build_py": BuildPyAfterSwig},
    ext_modules=[
        Extension(
            "libswitch._libswitch_raw",
            sources=[os.path.join(bindings, "libswitch.i")],
            swig_opts=["-threads", "-outdir", os.path.join(here, "libswitch"), f"-I{bindings}"]
            + [f"-I{d}" for d in include_dirs],
            include_dirs=include_dirs,
            library_dirs=library_dirs,
            runtime_library_dirs=library_dirs,
            libraries=["switch"],
        )
    ],
)
