"""The enclave boundary: the EDL generator's strictness, and the compiled image refusing a hostile host.

The hostile-host tests call the image's software entry point directly with
ctypes, bypassing the host bridge and the C API, with argument structs laid out
from edl/mesatee.edl: a bridge that disagrees with the EDL fails them.
"""

from __future__ import annotations

import ctypes
import os

import edger
import pytest

from conftest import REPO
from mesatee import Status
from mesatee.core.enclave import DEFAULT_IMAGE

EDL = edger.parse((REPO / "edl" / "mesatee.edl").read_text())
ECALLS = {fn.name: (index, fn) for index, fn in enumerate(EDL.trusted, start=1)}
MAX_BUFFER = 1 << 30

# --------------------------------------------------------------------------- the generator


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("public int f([in, out, size=n] uint8_t* p, size_t n);", r"\[in, out\] is not supported"),
        ("public int f([user_check] uint8_t* p);", "unsupported attribute"),
        ("public int f(uint8_t* p);", r"needs \[in\] or \[out\]"),
        ("public int f([in] const uint8_t* p);", "may omit size"),
        ("public int f([in, size=n] const uint8_t* p, uint32_t n);", "must name a size_t parameter"),
        ("public int f([in, size=m] const uint8_t* p, size_t n);", "must name a size_t parameter"),
        ("public int f([in, size=n] uint8_t* p, size_t n);", "must be const"),
        ("public int f([in, size=n] const double* p, size_t n);", "uint8_t or char"),
        ("public int f([in] size_t n);", "value parameter"),
        ("public void f(void);", "cannot parse"),
        ("int f(void);", "cannot parse"),
        ("public int f(size_t a, size_t a);", "duplicate parameter"),
        ("public int f(void); public int f(void);", "duplicate ecall"),
    ],
)
def test_generator_refuses_what_it_cannot_bridge(body: str, message: str) -> None:
    with pytest.raises(edger.EdlError, match=message):
        edger.parse(f"enclave {{ trusted {{ {body} }}; untrusted {{ }}; }};")


def test_generator_refuses_ocalls_and_stray_text() -> None:
    with pytest.raises(edger.EdlError, match="ocalls"):
        edger.parse("enclave { trusted { }; untrusted { int o(void); }; };")
    with pytest.raises(edger.EdlError, match="exactly one trusted"):
        edger.parse("enclave { trusted { }; };")
    with pytest.raises(edger.EdlError):
        edger.parse("enclave { trusted { }; untrusted { }; stray; };")


def test_generated_bridge_checks_sizes_on_both_sides() -> None:
    files = edger.generate(EDL)
    for name in ("mesatee_u.c", "mesatee_t.c"):
        assert files[name].count("> MESATEE_MAX_BOUNDARY_BUFFER") >= 8
    assert "memcpy(&a, host_args, sizeof a)" in files["mesatee_t.c"]  # arguments copied before use
    out_buffers = [p for fn in EDL.trusted for p in fn.params if p.direction == "out" and p.size]
    for p in out_buffers:  # [out] buffers zeroed inside the enclave, [in] ones copied in
        assert f"mesatee_t_alloc({_size(p)}, 1)" in files["mesatee_t.c"]
    assert "memcpy(local_plaintext, a.plaintext, a.plaintext_size)" in files["mesatee_t.c"]


def _size(p: edger.Param) -> str:
    assert p.size is not None
    return p.size if p.size.isdigit() else f"a.{p.size}"


# --------------------------------------------------------------------------- the hostile host


class Identity(ctypes.Structure):
    _fields_ = [
        ("mrenclave", ctypes.c_uint8 * 32),
        ("mrsigner", ctypes.c_uint8 * 32),
        ("product_id", ctypes.c_uint16),
        ("security_version", ctypes.c_uint16),
        ("debug", ctypes.c_uint8),
    ]


SealKey = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint16, ctypes.POINTER(ctypes.c_uint8)
)
Evidence = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)
)


class Platform(ctypes.Structure):
    _fields_ = [
        ("abi_version", ctypes.c_uint32),
        ("context", ctypes.c_void_p),
        ("identity", Identity),
        ("seal_key", SealKey),
        ("evidence", Evidence),
    ]


def _field_type(param: edger.Param) -> type:
    if param.pointer:
        return ctypes.c_void_p
    return {"size_t": ctypes.c_size_t, "uint32_t": ctypes.c_uint32, "uint64_t": ctypes.c_uint64}[param.base]


def args_struct(name: str) -> type[ctypes.Structure]:
    _, fn = ECALLS[name]
    fields = [(p.name, _field_type(p)) for p in fn.params] + [("retval", ctypes.c_int)]
    return type(f"{name}_args", (ctypes.Structure,), {"_fields_": fields})


@ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint16, ctypes.POINTER(ctypes.c_uint8)
)
def _fixed_seal_key(context, policy, key_id, version, key):  # type: ignore[no-untyped-def]
    for i in range(32):
        key[i] = i
    return 0


@Evidence
def _no_evidence(context, report_data, out, capacity, out_size):  # type: ignore[no-untyped-def]
    return Status.INTERNAL


class RawEnclave:
    """The image's three software entry points, driven by a test acting as the host."""

    def __init__(self) -> None:
        self.image = ctypes.CDLL(str(DEFAULT_IMAGE))
        self.image.mesatee_sw_enclave_call.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_void_p,
            ctypes.c_size_t,
        ]
        self.image.mesatee_sw_enclave_create.argtypes = [ctypes.POINTER(Platform), ctypes.POINTER(ctypes.c_void_p)]
        self.image.mesatee_sw_enclave_destroy.argtypes = [ctypes.c_void_p]
        identity = Identity(security_version=1, product_id=1)
        self.platform = Platform(1, None, identity, ctypes.cast(_fixed_seal_key, SealKey), _no_evidence)
        self.instance = ctypes.c_void_p()
        assert self.image.mesatee_sw_enclave_create(ctypes.byref(self.platform), ctypes.byref(self.instance)) == 0

    def call(self, name: str, args: ctypes.Structure | None, size: int | None = None) -> int:
        index, _ = ECALLS[name]
        pointer = ctypes.byref(args) if args is not None else None
        return self.image.mesatee_sw_enclave_call(
            self.instance, index, pointer, size if size is not None else ctypes.sizeof(args)
        )

    def close(self) -> None:
        self.image.mesatee_sw_enclave_destroy(self.instance)


@pytest.fixture
def raw() -> RawEnclave:
    enclave = RawEnclave()
    yield enclave
    enclave.close()


def test_entry_point_abi_is_checked() -> None:
    image = ctypes.CDLL(str(DEFAULT_IMAGE))
    instance = ctypes.c_void_p()
    wrong_version = Platform(99, None, Identity(), ctypes.cast(_fixed_seal_key, SealKey), _no_evidence)
    assert image.mesatee_sw_enclave_create(ctypes.byref(wrong_version), ctypes.byref(instance)) == Status.BOUNDARY
    assert image.mesatee_sw_enclave_create(None, ctypes.byref(instance)) == Status.BOUNDARY
    assert image.mesatee_sw_enclave_call(None, 1, None, 0) == Status.BOUNDARY


def test_unknown_function_ids_refused(raw: RawEnclave) -> None:
    args = args_struct("ecall_ping")()
    for function_id in (0, len(ECALLS) + 1, 2**32 - 1):
        assert (
            raw.image.mesatee_sw_enclave_call(raw.instance, function_id, ctypes.byref(args), ctypes.sizeof(args))
            == Status.BOUNDARY
        )
    assert raw.call("ecall_ping", args) == Status.OK and args.retval == Status.OK
    assert raw.call("ecall_ping", None, 0) == Status.BOUNDARY


@pytest.mark.parametrize("name", list(ECALLS))
def test_every_ecall_checks_its_struct_size(raw: RawEnclave, name: str) -> None:
    args = args_struct(name)()
    for size in (0, ctypes.sizeof(args) - 1, ctypes.sizeof(args) + 8):
        assert raw.call(name, args, size) == Status.BOUNDARY


@pytest.mark.parametrize(
    ("name", "pointer", "size"),
    [(fn.name, p.name, p.size) for fn in EDL.trusted for p in fn.params if p.pointer],
)
def test_every_pointer_is_checked(raw: RawEnclave, name: str, pointer: str, size: str | None) -> None:
    """Null with a non-zero size, or a size past the bound, never reaches the ecall."""
    args_type = args_struct(name)
    if size is None or size.isdigit():
        args = args_type()  # every pointer null
        assert raw.call(name, args) == Status.BOUNDARY
        return
    buffer = ctypes.create_string_buffer(16)
    args = args_type(**{p: ctypes.addressof(buffer) for p, t in args_type._fields_ if t is ctypes.c_void_p})
    setattr(args, pointer, None)
    setattr(args, size, 1)
    assert raw.call(name, args) == Status.BOUNDARY
    setattr(args, pointer, ctypes.addressof(buffer))
    setattr(args, size, MAX_BUFFER + 1)
    assert raw.call(name, args) == Status.BOUNDARY


def _seal_args(raw: RawEnclave, plaintext: bytes, capacity: int) -> tuple[ctypes.Structure, ctypes.Array]:
    out = ctypes.create_string_buffer(capacity)
    out_size = ctypes.c_size_t()
    keep = ctypes.create_string_buffer(plaintext, len(plaintext))
    args = args_struct("ecall_seal")(
        policy=2,
        plaintext=ctypes.addressof(keep),
        plaintext_size=len(plaintext),
        aad=None,
        aad_size=0,
        out=ctypes.addressof(out),
        capacity=capacity,
        out_size=ctypes.addressof(out_size),
    )
    args._keep = (keep, out_size)  # type: ignore[attr-defined]
    return args, out


def test_calls_before_initialize_are_refused(raw: RawEnclave) -> None:
    args, _ = _seal_args(raw, b"data", 100)
    assert raw.call("ecall_seal", args) == Status.OK
    assert args.retval == Status.INVALID_ARGUMENT


def test_initialize_twice_refused(raw: RawEnclave) -> None:
    init = args_struct("ecall_initialize")()
    assert raw.call("ecall_initialize", init) == Status.OK and init.retval == Status.OK
    again = args_struct("ecall_initialize")()
    assert raw.call("ecall_initialize", again) == Status.OK and again.retval == Status.INVALID_ARGUMENT


def test_failed_unseal_hands_out_no_plaintext(raw: RawEnclave) -> None:
    assert raw.call("ecall_initialize", args_struct("ecall_initialize")()) == Status.OK
    secret = os.urandom(64)
    args, sealed = _seal_args(raw, secret, 64 + 68)
    assert raw.call("ecall_seal", args) == Status.OK and args.retval == Status.OK
    out = ctypes.create_string_buffer(64)
    out_size = ctypes.c_size_t()

    def unseal(blob: bytes) -> int:
        blob_buf = ctypes.create_string_buffer(blob, len(blob))
        ctypes.memset(out, 0xAA, 64)
        args = args_struct("ecall_unseal")(
            blob=ctypes.addressof(blob_buf),
            blob_size=len(blob),
            aad=None,
            aad_size=0,
            out=ctypes.addressof(out),
            capacity=64,
            out_size=ctypes.addressof(out_size),
        )
        assert raw.call("ecall_unseal", args) == Status.OK
        return args.retval

    assert unseal(sealed.raw) == Status.OK and out.raw == secret  # leaves the plaintext in enclave buffers
    broken = bytearray(sealed.raw)
    broken[-1] ^= 1  # break the tag: the ciphertext still decrypts, but must not come out
    assert unseal(bytes(broken)) == Status.UNSEAL_FAILED
    assert out.raw == bytes(64)


def test_too_small_output_reports_the_size_needed(raw: RawEnclave) -> None:
    assert raw.call("ecall_initialize", args_struct("ecall_initialize")()) == Status.OK
    args, _ = _seal_args(raw, b"x" * 10, 20)
    assert raw.call("ecall_seal", args) == Status.OK
    assert args.retval == Status.BUFFER_TOO_SMALL
    assert args._keep[1].value == 78  # type: ignore[attr-defined]
