"""The README's optimizer table is the registry's: `train --list-optimizers` prints it (Markdown) and
the README holds it verbatim; `train --help` names every optimizer in it.
Usage: test_readme_optimizers.py BLOCKSHARP WORKDIR README"""
import re
import subprocess
import sys

blocksharp, _, readme = sys.argv[1], sys.argv[2], sys.argv[3]
table = subprocess.run([blocksharp, "train", "--list-optimizers"], capture_output=True, text=True, check=True).stdout
rows = [l for l in table.splitlines() if l.startswith("| `") and not l.startswith("| `--optimizer`")]
names = [re.match(r"\| `([^`]+)`", l).group(1) for l in rows]
assert len(names) >= 11 and "adamw" in names and "adam-mini" in names, table
with open(readme) as f:
    text = f.read()
assert table in text, "README.md's optimizer table differs from `blocksharp train --list-optimizers`:\n" + table
help_text = subprocess.run([blocksharp, "train", "--help"], capture_output=True, text=True, check=True).stdout
missing = [n for n in names if n not in help_text]
assert not missing, f"train --help does not name {missing}"
print(f"README table == registry ({len(names)} optimizers)")
