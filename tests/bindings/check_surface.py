"""Every C ABI function is reached by each binding: for Python, Java and Go, each symbol of
capi/libswitch.symbols must be called by that language's layer directly (SWIG wraps it as
it is) or through a swb_ helper of bindings/libswitch.i that uses it, unless
bindings/surface_exceptions.txt says why not. An exception that is no longer needed is an
error too, so the list stays true. Exit status 1 names what is missing."""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
path = lambda *p: os.path.join(root, *p)  # noqa: E731

symbols = [line.strip() for line in open(path("capi", "libswitch.symbols"))
           if line.strip() and not line.startswith("#") and not line.startswith("LIBSWITCH")]

# The swb_ helpers and the names each one uses, followed through helpers that call helpers.
interface = open(path("bindings", "libswitch.i")).read()
uses = {m.group(1): set(re.findall(r"\b(swb?_\w+)\b", m.group(2)))
        for m in re.finditer(r"^[A-Za-z_][\w \*]*?\b(swb_\w+)\s*\([^)]*\)\s*\{(.*?)^\}", interface,
                             re.S | re.M)}


def reached_from(name, seen):
    for used in uses.get(name, ()):
        if used not in seen:
            seen.add(used)
            reached_from(used, seen)
    return seen


reaches = {helper: reached_from(helper, set()) for helper in uses}

# Each language's thin layer, and how it names a raw function.
languages = {
    "python": (path("bindings", "python", "libswitch"), r"_raw\.(swb?_\w+)"),
    "java": (path("bindings", "java", "src", "org", "libswitch"), r"libswitch_raw(?:\.|::)(swb?_\w+)"),
    "go": (path("bindings", "go"), r"\braw\.(Swb?_\w+)"),
}
suffix = {"python": ".py", "java": ".java", "go": ".go"}

exceptions = {}
for line in open(path("bindings", "surface_exceptions.txt")):
    if line.strip() and not line.startswith("#"):
        function, langs, why = line.split(None, 2)
        for lang in langs.split(","):
            exceptions[(function, lang)] = why.strip()

problems = []
for (function, lang) in exceptions:
    if function not in symbols:
        problems.append(f"surface_exceptions.txt: {function} is not in libswitch.symbols")
    if lang not in languages:
        problems.append(f"surface_exceptions.txt: unknown language {lang}")
for lang, (folder, pattern) in languages.items():
    called = set()
    for name in sorted(os.listdir(folder)):
        if name.endswith(suffix[lang]) and not name.endswith("_test.go"):
            for raw in re.findall(pattern, open(os.path.join(folder, name)).read()):
                called.add(raw[0].lower() + raw[1:])  # Go exports Sw_x as sw_x
    reached = set(called)
    for helper in called & reaches.keys():
        reached |= reaches[helper]
    for function in symbols:
        excused = (function, lang) in exceptions
        if function not in reached and not excused:
            problems.append(f"{lang}: {function} has no wrapper (call it, or say why in "
                            "bindings/surface_exceptions.txt)")
        if function in reached and excused:
            problems.append(f"{lang}: {function} is wrapped now; drop its exception")
    print(f"{lang}: {len(symbols)} C ABI functions, "
          f"{sum((f, lang) in exceptions for f in symbols)} excused")
for problem in problems:
    print(problem)
sys.exit(1 if problems else 0)
