"""Rewrites a CUDA kernel source (engine/backend/cuda/*.cu) into C++ for the host SIMT emulator (emu.h).

    python3 cu2cpp.py <kernel.cu> [> gen_<name>.cpp]

- `kernel<<<grid, block[, smem[, stream]]>>>(args);` becomes `emu_launch(grid, block, smem, stream, [=] { kernel(args); });`
- `extern __shared__ [__align__(n)] T name[];` becomes a pointer into the emulator's dynamic shared memory.
- `cudaFuncSetAttribute(...)` becomes a no-op.
Everything else is compiled as is; emu.h, inc/mma.h and inc/.../cuda_check.h supply the device built-ins. The
#line directive names the .cu as given on the command line, so pass it relative to the source root (diagnostics
point into the real file, and the generated text does not depend on where the checkout lives).
"""
import re
import sys

path = sys.argv[1]
src = open(path).read()


def launch(m):
    name, cfg, args = m.group(1), m.group(2), m.group(3)
    parts = [c.strip() for c in re.split(r',(?![^()]*\))', cfg)]
    while len(parts) < 4:
        parts.append({2: '0', 3: 'nullptr'}[len(parts)])
    return 'emu_launch(%s, [=] { %s(%s); });' % (', '.join(parts), name, args)


launches = len(re.findall(r'<<<', src))
src, n = re.subn(r'([\w:]+(?:<[\w, ]+>)?)\s*<<<(.*?)>>>\s*\((.*?)\);', launch, src, flags=re.S)
if n != launches:
    sys.exit('cu2cpp: %s: rewrote %d of %d kernel launches' % (path, n, launches))
src = re.sub(r'extern __shared__ (?:__align__\(\d+\) )?([\w ]+?) (\w+)\[\];',
             r'\1* \2 = reinterpret_cast<\1*>(g_dyn_smem);', src)
if 'extern __shared__' in src:
    sys.exit('cu2cpp: %s: an extern __shared__ declaration was not rewritten' % path)
src = src.replace('cudaFuncSetAttribute(', 'emu_noop(')
sys.stdout.write('#include "emu.h"\ninline int emu_noop(...) { return 0; }\n#line 1 "%s"\n' % path + src)
