"""Generate the software platform's boundary bridge from edl/mesatee.edl.

The EDL is the one statement of the enclave boundary. On SGX, Open Enclave's
oeedger8r turns it into the bridges; on the software platform this script
does, keeping oeedger8r's copy rules: every [in] buffer is copied into enclave
memory before the call, every [out] buffer is allocated (zeroed) in the enclave
and copied out after it, sizes are checked on both sides, and the enclave keeps
no host pointer. (It does not check that host pointers lie outside enclave
memory: on the software platform there is no enclave memory to protect, and
on SGX oeedger8r's bridge, which does, is used instead.) It accepts the subset of EDL that mesatee uses and refuses
anything else, so the bridge can never silently drop an attribute.

Outputs (into --out): mesatee_args.h (shared: function ids, argument structs),
mesatee_u.h / mesatee_u.c (host proxies), mesatee_t.h / mesatee_t.c (trusted
dispatch and the ecall prototypes trusted code implements).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

SCALARS = {"size_t", "uint8_t", "uint16_t", "uint32_t", "uint64_t", "int32_t", "int64_t", "int"}
BUFFER_ELEMENTS = {"uint8_t", "char"}


class EdlError(Exception):
    pass


@dataclass
class Param:
    name: str
    base: str
    const: bool = False
    pointer: bool = False
    direction: str | None = None  # "in" or "out" for pointers
    size: str | None = None  # a size_t parameter's name or a literal

    @property
    def c_type(self) -> str:
        return f"{'const ' if self.const else ''}{self.base}{'*' if self.pointer else ''}"


@dataclass
class Function:
    name: str
    params: list[Param] = field(default_factory=list)


@dataclass
class Edl:
    includes: list[str]
    trusted: list[Function]
    untrusted: list[Function]


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _split_top(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        depth += ch in "[("
        depth -= ch in "])"
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _parse_param(fn: str, text: str) -> Param:
    attrs: dict[str, str | None] = {}
    m = re.fullmatch(r"(?:\[([^\]]*)\])?\s*(.+)", text, flags=re.S)
    assert m is not None
    if m.group(1) is not None:
        for attr in _split_top(m.group(1)):
            key, _, value = (s.strip() for s in attr.partition("="))
            if key not in {"in", "out", "size"} or (key == "size") != bool(value):
                raise EdlError(f"{fn}: unsupported attribute [{attr}]")
            attrs[key] = value or None
    decl = re.fullmatch(r"(const\s+)?(\w+)\s*(\*)?\s*(\w+)", m.group(2).strip())
    if decl is None:
        raise EdlError(f"{fn}: cannot parse parameter {text!r}")
    p = Param(name=decl.group(4), base=decl.group(2), const=bool(decl.group(1)), pointer=bool(decl.group(3)))
    if "in" in attrs and "out" in attrs:
        raise EdlError(f"{fn}.{p.name}: [in, out] is not supported")
    p.direction = "in" if "in" in attrs else "out" if "out" in attrs else None
    p.size = attrs.get("size")
    if not p.pointer:
        if p.direction or p.size or p.base not in SCALARS:
            raise EdlError(f"{fn}.{p.name}: a value parameter takes a scalar type and no attributes")
    elif p.direction is None:
        raise EdlError(f"{fn}.{p.name}: a pointer needs [in] or [out] (user_check is not supported)")
    elif p.size is None:
        if p.direction != "out" or p.base != "size_t":
            raise EdlError(f"{fn}.{p.name}: only [out] size_t* may omit size=")
    elif p.base not in BUFFER_ELEMENTS:
        raise EdlError(f"{fn}.{p.name}: buffers are uint8_t or char arrays")
    elif p.direction == "in" and not p.const:
        raise EdlError(f"{fn}.{p.name}: an [in] buffer must be const")
    return p


def _parse_functions(section: str, body: str) -> list[Function]:
    functions = []
    for decl in (d.strip() for d in body.split(";")):
        if not decl:
            continue
        prefix = r"public\s+" if section == "trusted" else ""
        m = re.fullmatch(prefix + r"int\s+(\w+)\s*\((.*)\)", decl, flags=re.S)
        if m is None:
            raise EdlError(f"{section}: cannot parse {decl!r} (expected '{prefix}int name(...)')")
        fn = Function(m.group(1))
        params = m.group(2).strip()
        if params not in ("", "void"):
            fn.params = [_parse_param(fn.name, p) for p in _split_top(params)]
        names = {p.name: p for p in fn.params}
        if len(names) != len(fn.params):
            raise EdlError(f"{fn.name}: duplicate parameter names")
        for p in fn.params:
            if p.size is not None and not p.size.isdigit():
                sized = names.get(p.size)
                if sized is None or sized.pointer or sized.base != "size_t":
                    raise EdlError(f"{fn.name}.{p.name}: size={p.size} must name a size_t parameter")
        functions.append(fn)
    return functions


def parse(text: str) -> Edl:
    text = _strip_comments(text)
    m = re.fullmatch(r"\s*enclave\s*\{(.*)\}\s*;\s*", text, flags=re.S)
    if m is None:
        raise EdlError("expected 'enclave { ... };'")
    body = m.group(1)
    includes = re.findall(r'include\s+"([^"]+)"', body)
    body = re.sub(r'include\s+"[^"]+"', "", body)
    sections = dict(re.findall(r"(trusted|untrusted)\s*\{(.*?)\}\s*;", body, flags=re.S))
    rest = re.sub(r"(trusted|untrusted)\s*\{.*?\}\s*;", "", body, flags=re.S).strip()
    if rest or set(sections) != {"trusted", "untrusted"}:
        raise EdlError("expected exactly one trusted and one untrusted section and nothing else")
    edl = Edl(includes, _parse_functions("trusted", sections["trusted"]), [])
    edl.untrusted = _parse_functions("untrusted", sections["untrusted"])
    if edl.untrusted:
        raise EdlError("ocalls are not supported by the software bridge yet")
    if len({f.name for f in edl.trusted}) != len(edl.trusted):
        raise EdlError("duplicate ecall names")
    return edl


def _signature(fn: Function, first: str) -> str:
    params = [first, *(f"{p.c_type} {p.name}" for p in fn.params)]
    return f"int {fn.name}({', '.join(params)})"


def _size_expr(p: Param, prefix: str) -> str:
    assert p.size is not None
    return p.size if p.size.isdigit() else f"{prefix}{p.size}"


def _checks(fn: Function, prefix: str) -> list[str]:
    """The size and null checks both sides make before a call crosses."""
    lines = []
    for p in fn.params:
        if not p.pointer:
            continue
        if p.size is None:
            lines.append(f"if (!{prefix}{p.name}) return MESATEE_ERROR_BOUNDARY;")
            continue
        size = _size_expr(p, prefix)
        lines.append(f"if ((unsigned long long){size} > MESATEE_MAX_BOUNDARY_BUFFER) return MESATEE_ERROR_BOUNDARY;")
        lines.append(f"if ({size} && !{prefix}{p.name}) return MESATEE_ERROR_BOUNDARY;")
    return lines


def generate(edl: Edl) -> dict[str, str]:
    header = "/* Generated by tools/edger.py from edl/mesatee.edl. Do not edit. */\n"
    args = [header, "#ifndef MESATEE_ARGS_H\n#define MESATEE_ARGS_H\n#include <stddef.h>\n#include <stdint.h>"]
    args += [f'#include "{inc}"' for inc in edl.includes]
    for index, fn in enumerate(edl.trusted, start=1):
        args.append(f"#define MESATEE_ECALL_{fn.name.upper()} {index}u")
        fields = "".join(f"    {p.c_type} {p.name};\n" for p in fn.params)
        args.append(f"typedef struct {fn.name}_args {{\n{fields}    int retval;\n}} {fn.name}_args;")
    args.append("#endif")

    u_h = [
        header,
        '#ifndef MESATEE_U_H\n#define MESATEE_U_H\n#include "mesatee_args.h"',
        '#ifdef __cplusplus\nextern "C" {\n#endif',
        "typedef struct mesatee_bridge mesatee_bridge;",
        "/* Implemented by the platform backend: run one ecall on an enclave. */",
        "int mesatee_bridge_call(mesatee_bridge* bridge, uint32_t function_id, void* args, size_t args_size);",
    ]
    u_c = [header, '#include "mesatee_u.h"']
    t_h = [
        header,
        '#ifndef MESATEE_T_H\n#define MESATEE_T_H\n#include "mesatee_args.h"',
        '#ifdef __cplusplus\nextern "C" {\n#endif',
        "/* Called by the platform runtime for each ecall; host_args points to host memory. */",
        "int mesatee_t_dispatch(uint32_t function_id, void* host_args, size_t args_size);",
        "/* Enclave memory for boundary buffers ([out] ones zeroed), from the trusted runtime. */",
        "void* mesatee_t_alloc(size_t size, int zero);",
        "void mesatee_t_free(void* data);",
        "/* Implemented by trusted code: */",
    ]
    t_c = [header, '#include "mesatee_t.h"\n#include <stdlib.h>\n#include <string.h>']
    cases = []
    for fn in edl.trusted:
        u_h.append(_signature(fn, "mesatee_bridge* bridge, int* retval") + ";")
        t_h.append(_signature(fn, "void").replace("(void, ", "(").replace("(void)", "(void)") + ";")
        # host proxy
        body = ["    if (!retval) return MESATEE_ERROR_BOUNDARY;"]
        body += [f"    {line}" for line in _checks(fn, "")]
        body.append(f"    {fn.name}_args args;\n    memset(&args, 0, sizeof args);")
        body += [f"    args.{p.name} = {'(' + p.c_type + ')' if p.pointer else ''}{p.name};" for p in fn.params]
        body.append(
            f"    int status = mesatee_bridge_call(bridge, MESATEE_ECALL_{fn.name.upper()}, &args, sizeof args);"
        )
        body.append("    if (status == MESATEE_OK) *retval = args.retval;\n    return status;")
        u_c.append(_signature(fn, "mesatee_bridge* bridge, int* retval") + " {\n" + "\n".join(body) + "\n}")
        # trusted side: copy the argument struct first, so the host cannot change it mid-call
        tb = [
            f"    if (args_size != sizeof({fn.name}_args)) return MESATEE_ERROR_BOUNDARY;",
            f"    {fn.name}_args a;\n    memcpy(&a, host_args, sizeof a);",
        ]
        tb += [f"    {line}" for line in _checks(fn, "a.")]
        call_args, cleanup, copy_out = [], [], []
        tb.append("    int status = MESATEE_OK;")
        for p in fn.params:
            if not p.pointer:
                call_args.append(f"a.{p.name}")
            elif p.size is None:
                tb.append(f"    {p.base} local_{p.name} = 0;")
                call_args.append(f"&local_{p.name}")
                copy_out.append(f"        *a.{p.name} = local_{p.name};")
            else:
                size = _size_expr(p, "a.")
                tb.append(f"    {p.base}* local_{p.name} = NULL;")
                zero = 1 if p.direction == "out" else 0
                alloc = f"({p.base}*)mesatee_t_alloc({size}, {zero})"
                tb.append(f"    if ({size} && !(local_{p.name} = {alloc})) status = MESATEE_ERROR_OUT_OF_MEMORY;")
                if p.direction == "in":
                    tb.append(f"    if (local_{p.name}) memcpy(local_{p.name}, a.{p.name}, {size});")
                else:
                    copy_out.append(f"        if (local_{p.name}) memcpy(a.{p.name}, local_{p.name}, {size});")
                call_args.append(f"local_{p.name}")
                cleanup.append(f"    mesatee_t_free(local_{p.name});")
        tb.append("    if (status == MESATEE_OK) {")
        tb.append(f"        int ret = {fn.name}({', '.join(call_args)});")
        tb += copy_out
        tb.append(f"        (({fn.name}_args*)host_args)->retval = ret;")
        tb.append("    }")
        tb += cleanup
        tb.append("    return status;")
        t_c.append(f"static int dispatch_{fn.name}(void* host_args, size_t args_size) {{\n" + "\n".join(tb) + "\n}")
        cases.append(f"    case MESATEE_ECALL_{fn.name.upper()}: return dispatch_{fn.name}(host_args, args_size);")
    t_c.append(
        "int mesatee_t_dispatch(uint32_t function_id, void* host_args, size_t args_size) {\n"
        "    if (!host_args) return MESATEE_ERROR_BOUNDARY;\n    switch (function_id) {\n"
        + "\n".join(cases)
        + "\n    default: return MESATEE_ERROR_BOUNDARY;\n    }\n}"
    )
    u_c[1] += "\n#include <string.h>"
    for part in (u_h, t_h):
        part.append("#ifdef __cplusplus\n}\n#endif\n#endif")
    return {
        name: "\n\n".join(lines) + "\n"
        for name, lines in {
            "mesatee_args.h": args,
            "mesatee_u.h": u_h,
            "mesatee_u.c": u_c,
            "mesatee_t.h": t_h,
            "mesatee_t.c": t_c,
        }.items()
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("edl", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ns = ap.parse_args(argv)
    try:
        files = generate(parse(ns.edl.read_text()))
    except EdlError as exc:
        print(f"{ns.edl}: {exc}", file=sys.stderr)
        return 1
    ns.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = ns.out / name
        if not path.exists() or path.read_text() != text:  # keep timestamps for incremental builds
            path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
