"""The library never spells a command-line flag: no string literal in src/, diagnostics/, partitioners/,
optimizers/ and flows/ holds "--name"; errors name parameters
with param("name") and the front ends spell them. Oracle: the source text.
Usage: test_library_names_no_flags.py BLOCKSHARP WORKDIR SOURCE_DIR"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[3])
files = [p for d in ("src", "diagnostics", "partitioners", "optimizers", "flows") for p in (root / d).rglob("*")
         if p.suffix in (".h", ".cpp", ".cu")]
literal = re.compile(r'"(?:[^"\\\n]|\\.)*"')
failures = []
for p in files:
    for n, line in enumerate(p.read_text().splitlines(), 1):
        code = line.split("//")[0] if not line.lstrip().startswith("//") else ""
        for lit in literal.findall(code):
            if re.search(r"--[a-z]", lit):
                failures.append(f"{p.relative_to(root)}:{n}: {lit}")
for f in failures:
    print("FAIL:", f)
print(f"{len(files)} files read; {len(failures)} flag literals")
sys.exit(1 if failures else 0)
