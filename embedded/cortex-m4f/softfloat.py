#!/usr/bin/env python3
"""Fails when a double-precision soft-float routine is reachable from the f32 update.

The Cortex-M4F has a single-precision FPU only: a double on it is a call into compiler-builtins
(__aeabi_dadd, __muldf3, __aeabi_f2d, ...). Reads `llvm-objdump -d` of the firmware on stdin,
builds the call graph from its direct calls and branches to other functions, and walks it from
every function whose name matches ROOT (default: recadam-core's update). Prints what it reaches.

    llvm-objdump -d --no-show-raw-insn FIRMWARE | python3 softfloat.py [ROOT_REGEX]
"""
import re
import sys

root = re.compile(sys.argv[1] if len(sys.argv) > 1 else r"recadam_core6update6update")
double = re.compile(r"^(__aeabi_(d[a-z0-9]*|f2d|[lu]*l2d|[iu]2d)|__[a-z]*df[0-9]|__extendsfdf2|__truncdfsf2|__(fix|float)[a-z]*df[a-z]*)$")
header = re.compile(r"^[0-9a-f]+ <(.+)>:$")
call = re.compile(r"\s(?:bl|blx|b|b\.w)\s+0x[0-9a-f]+ <([^>+]+)>")

calls, current = {}, None
for line in sys.stdin:
    m = header.match(line.strip())
    if m:
        current = m.group(1)
        calls.setdefault(current, set())
        continue
    m = call.search(line)
    if m and current and m.group(1) != current:
        calls[current].add(m.group(1))

roots = [f for f in calls if root.search(f)]
if not roots:
    sys.exit(f"no function matching {root.pattern} in the disassembly")
seen, todo = set(roots), list(roots)
while todo:
    for callee in calls.get(todo.pop(), ()):
        if callee not in seen:
            seen.add(callee)
            todo.append(callee)
reached = sorted(seen - set(roots))
bad = [f for f in reached if double.match(f)]
print(f"from {', '.join(roots)}: {len(reached)} functions reached: {', '.join(reached) or 'none'}")
if bad:
    sys.exit(f"double-precision soft-float reachable from the f32 update: {', '.join(bad)}")
print("no double-precision soft-float reachable")
